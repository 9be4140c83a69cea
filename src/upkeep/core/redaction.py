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
MIN_PUBLISHED_LENGTH = 16
"""A static text shorter than this is not registered by ``published``: a short one could
coincide with output that holds a secret."""
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


_PUBLISHED: set[str] = set()


def published(text: str) -> str:
    """Given a static text of upkeep's own (a hint or an example inside a message), register
    it as published and return it unchanged.

    ``Redactor.redact`` never rewrites a registered text where it appears whole: a secret
    that happens to be a word of it (a channel value ``slack`` and the hint ``e.g.
    mailto://, json://, slack://``) is printed the same whether or not it is a secret, so
    masking it there hides nothing and garbles the hint. Occurrences of the secret outside
    the text, or extending past it, are still masked. Raise ValueError on a text shorter
    than ``MIN_PUBLISHED_LENGTH``.
    """
    if len(text) < MIN_PUBLISHED_LENGTH:
        raise ValueError(f"a published text needs {MIN_PUBLISHED_LENGTH} characters or more")
    _PUBLISHED.add(text)
    return text


def _published_spans(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for phrase in _PUBLISHED:
        start = text.find(phrase)
        while start >= 0:
            spans.append((start, start + len(phrase)))
            start = text.find(phrase, start + 1)
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Given ``(start, end)`` spans, return them merged where they overlap or touch, sorted."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


@dataclass
class Redactor:
    """Holds secret values and masks them in any text given to ``redact``."""

    _secrets: set[str] = field(default_factory=set)

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
            if len(candidate) >= MIN_SECRET_LENGTH:
                self._secrets.add(candidate)

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
        """Given text, return it with every occurrence of a known secret replaced by ``***``.

        Occurrences that overlap or touch (two secrets sharing characters) become one
        ``***``, so no part of either shows. Every occurrence is masked, glued to other
        text or not (``-phunter22``, ``%3Dsecret``): a short secret may garble a word that
        contains it, never show. Only an occurrence inside a ``published`` text of ours
        (a fixed hint, which reveals nothing) is left as it is.
        """
        if not self._secrets or not text:
            return text
        found: list[tuple[int, int]] = []
        for secret in self._secrets:
            start = text.find(secret)
            while start >= 0:
                found.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        if not found:
            return text
        protected = _published_spans(text)
        if protected:
            found = [
                (start, end)
                for start, end in found
                if not any(low <= start and end <= high for low, high in protected)
            ]
        pieces: list[str] = []
        position = 0
        for start, end in _merged(found):
            pieces += [text[position:start], MASK]
            position = end
        pieces.append(text[position:])
        return "".join(pieces)

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
