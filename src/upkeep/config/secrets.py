"""``${ENV_VAR}`` and ``${file:/path}`` references, expanded once at load time.

Every expanded value is treated as a secret and handed to the redactor: whatever came
from the environment or a secret file never appears in output. ``$${`` escapes a literal.

Bounds: a secret file is read only if it is a regular file (links followed) of at most
``MAX_SECRET_BYTES``, as UTF-8; an environment value must be valid UTF-8 and at most as
long; a value with its references expanded is at most ``MAX_SCALAR_CHARS`` long, like
any value written out; all references of a config together may add at most
``MAX_EXPANDED_CHARS`` characters, so a short config cannot expand into a huge one. A
file named many times is read once per load.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upkeep.config.errors import KeyPath
from upkeep.config.files import FileReadError, read_text_file
from upkeep.config.yamlpos import MAX_SCALAR_CHARS
from upkeep.core.text import format_bytes

MAX_SECRET_BYTES = 64 * 1024
"""The largest secret file (and environment value) a reference may take in."""
MAX_EXPANDED_CHARS = 4 * 1024 * 1024
"""How many characters all references of one config may add together."""

_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SURROGATE = re.compile("[\ud800-\udfff]")


class SecretReferenceError(Exception):
    """A ``${...}`` reference cannot be resolved; carries the key path."""

    def __init__(self, path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.path = path


@dataclass
class _Budget:
    """What one load has expanded so far: the characters added and the files read."""

    added: int = 0
    exhausted: bool = False
    files: dict[Path, str | FileReadError] = field(default_factory=dict)


def _read_secret_file(file_path: Path, budget: _Budget) -> str:
    if file_path not in budget.files:
        try:
            budget.files[file_path] = read_text_file(file_path, MAX_SECRET_BYTES).rstrip("\r\n")
        except FileReadError as error:
            budget.files[file_path] = error
    found = budget.files[file_path]
    if isinstance(found, FileReadError):
        raise found
    return found


def _secret_path(text: str, base_dir: Path) -> Path:
    file_path = Path(text)
    with contextlib.suppress(RuntimeError):  # no home to expand "~" to: keep it as written
        file_path = file_path.expanduser()
    return file_path if file_path.is_absolute() else base_dir / file_path


def expand_string(
    text: str,
    path: KeyPath,
    environ: Mapping[str, str],
    base_dir: Path,
    secrets: list[str],
    budget: _Budget | None = None,
) -> str:
    """Given a string, return it with references replaced; append each value to ``secrets``.

    Raise ``SecretReferenceError`` if a variable is unset or not UTF-8, a file cannot be
    read (missing, not a regular file, too large, not UTF-8), or the references of this
    load add more than ``MAX_EXPANDED_CHARS`` characters.
    """
    spent = budget if budget is not None else _Budget()

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        if spent.exhausted:
            # The load fails with the one error that says so; no need to say it again.
            return match.group(0)
        reference = match.group(1).strip()
        if reference.startswith("file:"):
            file_path = _secret_path(reference[5:].strip(), base_dir)
            try:
                value = _read_secret_file(file_path, spent)
            except FileReadError as error:
                raise SecretReferenceError(
                    path, f"cannot read secret file {str(file_path)!r}: {error}"
                ) from None
        elif _ENV_NAME.match(reference):
            if reference not in environ:
                raise SecretReferenceError(
                    path,
                    f"environment variable {reference} is not set (referenced as ${{{reference}}})",
                )
            value = environ[reference]
            if _SURROGATE.search(value):
                # os.environ keeps bytes that are not UTF-8 as lone surrogates; they would
                # fail later, wherever the value is encoded (a log line, the store).
                raise SecretReferenceError(
                    path, f"environment variable {reference} is not valid UTF-8"
                )
            if len(value.encode("utf-8")) > MAX_SECRET_BYTES:
                raise SecretReferenceError(
                    path,
                    f"environment variable {reference} is longer than "
                    f"{format_bytes(MAX_SECRET_BYTES)}",
                )
        else:
            raise SecretReferenceError(
                path, f"${{{reference}}} is neither ${{ENV_VAR}} nor ${{file:/path}}"
            )
        spent.added += len(value)
        if spent.added > MAX_EXPANDED_CHARS:
            spent.exhausted = True
            raise SecretReferenceError(
                path,
                "the config's ${...} references add more than "
                f"{MAX_EXPANDED_CHARS // (1024 * 1024)} Mi characters in all",
            )
        secrets.append(value)
        return value

    expanded = _REFERENCE.sub(replace, text)
    if len(expanded) > MAX_SCALAR_CHARS and len(expanded) > len(text):
        # The YAML loader bounds every value as written; references must not stretch one.
        raise SecretReferenceError(
            path,
            f"the value is longer than {MAX_SCALAR_CHARS // 1024} Ki characters once its "
            f"${{...}} references are expanded ({len(expanded):,})",
        )
    return expanded


def expand_tree(
    data: Any,
    *,
    environ: Mapping[str, str],
    base_dir: Path,
    secrets: list[str],
    errors: list[SecretReferenceError],
    path: KeyPath = (),
    budget: _Budget | None = None,
) -> Any:
    """Given parsed YAML, return a copy with every string expanded; collect errors, don't stop.

    The recursion follows the data, whose depth the YAML loader bounds.
    """
    spent = budget if budget is not None else _Budget()
    if isinstance(data, str):
        try:
            return expand_string(data, path, environ, base_dir, secrets, spent)
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
                budget=spent,
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
                budget=spent,
            )
            for index, value in enumerate(data)
        ]
    return data
