"""Secret masking: one place that knows every secret value and removes it from text.

Secrets are collected while the config is loaded: every value that came from a
``${ENV}`` or ``${file:...}`` reference, every field a model marks with ``SecretMarker``,
and the password part of any URL-valued secret field. ``Redactor.redact`` is applied to
everything that leaves the process: messages, stored records, logs, error output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, unquote_plus, urlsplit

MASK = "***"
# Masking a two-character "secret" would shred every message that contains those letters;
# anything this short is not a secret worth the name, so it is left alone.
MIN_SECRET_LENGTH = 4
MIN_CUT_PREFIX = 3
"""How much of a secret's beginning, left at the very end of cut-off text, is masked."""
_ARMOR = re.compile(r"^-----(?:BEGIN|END) [A-Z0-9 ]+-----$")
"""A PEM armor line (``-----BEGIN PRIVATE KEY-----``): the same in every key, not secret."""


@dataclass(frozen=True)
class SecretMarker:
    """Annotation metadata marking a model field as secret.

    ``part="whole"`` masks the whole value; ``part="password"`` masks only the password of
    a URL/DSN (``postgresql://user:PASSWORD@host/db``) so hosts stay readable in errors.
    """

    part: str = "whole"


_PASSWORD_PARAMETERS = frozenset({"password", "sslpassword"})
"""Query parameters (``?password=``) and libpq keywords that hold a password."""
_KEYWORD_PASSWORD = re.compile(r"(?:^|\s)(?:ssl)?password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_USERINFO_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*:([^@]*)@")


def url_passwords(url: str) -> list[str]:
    """Given a URL or DSN, return every password in it, as written and decoded.

    Found are the password of the userinfo (``scheme://user:PASSWORD@host``, whole even
    with an unencoded ``#``, ``/`` or ``?`` in it), the ``password`` and ``sslpassword``
    query parameters (``?password=PASSWORD``) and libpq ``password=`` / ``sslpassword=``
    keywords (``host=db password=PASSWORD``).
    """
    found: list[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None:
        if parts.password:
            found.append(parts.password)
        # libpq (and people) read "user:pa#ss@host" as password "pa#ss"; urlsplit ends the
        # netloc at the "#" ("/", "?") and sees a host and port instead. "host:80/x?a@b" is
        # a port, not a password: digits before the first "/", "?" or "#".
        whole = _USERINFO_PASSWORD.match(url)
        written = whole.group(1) if whole else ""
        if re.search(r"[/?#]", written) and not re.match(r"\d*[/?#]", written):
            found.append(written)
        if parts.query:
            for key, values in parse_qs(parts.query).items():
                if key.lower() in _PASSWORD_PARAMETERS:
                    found.extend(values)
            # parse_qs decodes; the text as written (percent-encoded) is what gets printed.
            for pair in parts.query.split("&"):
                key, _, value = pair.partition("=")
                if unquote_plus(key).lower() in _PASSWORD_PARAMETERS and value:
                    found.append(value)
    for match in _KEYWORD_PASSWORD.finditer(url):
        value = match.group(1)
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found.append(value)
    return list(dict.fromkeys(found))


def url_password(url: str) -> str | None:
    """Given a URL or DSN, return its first password (see ``url_passwords``) or None."""
    passwords = url_passwords(url)
    return passwords[0] if passwords else None


def display_url(url: str) -> str:
    """Given a URL or DSN, return it fit for a message: the userinfo password masked and the
    query and fragment (where ``?password=`` may stand) left out.

    A URL that does not parse, or whose ``@`` falls outside the host part (an unencoded
    ``#``, ``/`` or ``?`` in the password), is shown as ``scheme://***``; a libpq keyword
    DSN keeps its keywords with every password value masked.
    """
    scheme, separator, _ = url.partition("://")
    if not separator:
        return _KEYWORD_PASSWORD.sub(
            lambda match: match.group(0)[: match.start(1) - match.start(0)] + MASK, url
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        return f"{scheme}://{MASK}"
    if "@" in f"{parts.path}{parts.query}{parts.fragment}" or "#" in parts.netloc:
        return f"{scheme}://{MASK}"
    userinfo, at, host = parts.netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        userinfo = f"{user}:{MASK}" if colon else user
    return f"{scheme}://{userinfo}{at}{host}{parts.path}"


@dataclass
class Redactor:
    """Holds secret values and masks them in any text given to ``redact``."""

    _secrets: set[str] = field(default_factory=set)
    _pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        """Given a secret value, remember it (and its percent-decoded form) for masking.

        A value of several lines (a PEM key from ``${file:}``) is also remembered line by
        line: a command that prints one line of it, or its output wrapped, cut or with
        other line endings, shows no line of it. Blank lines, PEM armor lines and lines
        shorter than ``MIN_SECRET_LENGTH`` are not secrets on their own.
        """
        if not value:
            return
        candidates = {value, unquote(value)}
        if "\n" in value or "\r" in value:
            for line in re.split(r"\r\n|\r|\n", value):
                piece = line.strip()
                if not _ARMOR.match(piece):
                    candidates.add(piece)
        for candidate in candidates:
            if len(candidate) >= MIN_SECRET_LENGTH and candidate not in self._secrets:
                self._secrets.add(candidate)
                self._pattern = None

    def add_url(self, url: str | None) -> None:
        """Given a URL or DSN, remember every password in it (``url_passwords``) as a secret."""
        if url:
            self.extend(url_passwords(url))

    def extend(self, values: Iterable[str]) -> None:
        """Given several secret values, remember each."""
        for value in values:
            self.add(value)

    def merge(self, other: Redactor) -> None:
        """Given another redactor, remember its secrets too."""
        self.extend(other._secrets)

    def redact(self, text: str) -> str:
        """Given text, return it with every known secret replaced by ``***``."""
        if not self._secrets or not text:
            return text
        if self._pattern is None:
            # Longest first so a secret that contains another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(secret) for secret in ordered))
        return self._pattern.sub(MASK, text)

    def redact_cut(self, text: str) -> str:
        """Given text that was cut off (at a size limit, or where a command stopped
        writing: ``head -c``, a kill), return it redacted, also masking a secret's (or a
        secret line's) beginning left at the very end by the cut: ``MIN_CUT_PREFIX``
        characters or more, before any U+FFFD a cut inside a UTF-8 character leaves and
        before trailing whitespace (``head -c 100 key.pem; echo``)."""
        masked = self.redact(text)
        body = masked.rstrip("\ufffd \t\r\n")
        tail = masked[len(body) :]
        for secret in sorted(self._secrets, key=len, reverse=True):
            for length in range(min(len(secret) - 1, len(body)), MIN_CUT_PREFIX - 1, -1):
                if body.endswith(secret[:length]):
                    return body[:-length] + MASK + tail
        return masked

    def redact_value(self, value: object) -> object:
        """Given a JSON-like value, return a copy with secrets masked in every string."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, dict):
            return {key: self.redact_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value

    def __len__(self) -> int:
        return len(self._secrets)
