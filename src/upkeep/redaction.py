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
from urllib.parse import unquote, urlsplit

MASK = "***"
# Masking a two-character "secret" would shred every message that contains those letters;
# anything this short is not a secret worth the name, so it is left alone.
MIN_SECRET_LENGTH = 4


@dataclass(frozen=True)
class SecretMarker:
    """Annotation metadata marking a model field as secret.

    ``part="whole"`` masks the whole value; ``part="password"`` masks only the password of
    a URL/DSN (``postgresql://user:PASSWORD@host/db``) so hosts stay readable in errors.
    """

    part: str = "whole"


def url_password(url: str) -> str | None:
    """Given a URL or DSN, return its password (raw and percent-decoded forms) or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.password:
        return parts.password
    match = re.search(r"(?:^|\s)password=(\S+)", url)
    return match.group(1) if match else None


@dataclass
class Redactor:
    """Holds secret values and masks them in any text given to ``redact``."""

    _secrets: set[str] = field(default_factory=set)
    _pattern: re.Pattern[str] | None = None

    def add(self, value: str | None) -> None:
        """Given a secret value, remember it (and its percent-decoded form) for masking."""
        if not value:
            return
        for candidate in {value, unquote(value)}:
            if len(candidate) >= MIN_SECRET_LENGTH and candidate not in self._secrets:
                self._secrets.add(candidate)
                self._pattern = None

    def add_url(self, url: str | None) -> None:
        """Given a URL or DSN, remember its password as a secret."""
        if url:
            self.add(url_password(url))

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
