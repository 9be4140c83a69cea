"""``${ENV_VAR}`` and ``${file:/path}`` references, expanded once at load time.

Every expanded value is treated as a secret and handed to the redactor: whatever came
from the environment or a secret file never appears in output. ``$${`` escapes a literal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from upkeep.config.errors import KeyPath

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SecretReferenceError(Exception):
    """A ``${...}`` reference cannot be resolved; carries the key path."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path


def expand_string(
    text: str, path: KeyPath, environ: Mapping[str, str], base_dir: Path, secrets: list[str]
) -> str:
    """Given a string, return it with references replaced; append each value to ``secrets``.

    Raise ``SecretReferenceError`` if a variable is unset or a file cannot be read.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        reference = match.group(1).strip()
        if reference.startswith("file:"):
            file_path = Path(reference[5:].strip()).expanduser()
            if not file_path.is_absolute():
                file_path = base_dir / file_path
            try:
                value = file_path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as error:
                raise SecretReferenceError(
                    path, f"cannot read secret file {str(file_path)!r}: {error.strerror}"
                ) from error
        elif _ENV_NAME.match(reference):
            if reference not in environ:
                raise SecretReferenceError(
                    path,
                    f"environment variable {reference} is not set (referenced as ${{{reference}}})",
                )
            value = environ[reference]
        else:
            raise SecretReferenceError(
                path, f"${{{reference}}} is neither ${{ENV_VAR}} nor ${{file:/path}}"
            )
        secrets.append(value)
        return value

    return _REFERENCE.sub(replace, text)


def expand_tree(
    data: Any,
    *,
    environ: Mapping[str, str],
    base_dir: Path,
    secrets: list[str],
    errors: list[SecretReferenceError],
    path: KeyPath = (),
) -> Any:
    """Given parsed YAML, return a copy with every string expanded; collect errors, don't stop."""
    if isinstance(data, str):
        try:
            return expand_string(data, path, environ, base_dir, secrets)
        except SecretReferenceError as error:
            errors.append(error)
            return data
    if isinstance(data, dict):
        return {
            key: expand_tree(
                value,
                environ=environ,
                base_dir=base_dir,
                secrets=secrets,
                errors=errors,
                path=(*path, key),
            )
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [
            expand_tree(
                value,
                environ=environ,
                base_dir=base_dir,
                secrets=secrets,
                errors=errors,
                path=(*path, index),
            )
            for index, value in enumerate(data)
        ]
    return data
