"""Helpers for the rows the store writes, shared by its modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult


def inserted_id(result: CursorResult[Any]) -> int:
    """Given the result of a one-row ``INSERT`` into a table whose primary key is one
    generated integer, return the new row's id; raise RuntimeError if the driver reported
    none (a statement with ``RETURNING``, or a table without such a key)."""
    key = result.inserted_primary_key
    if key is None or len(key) != 1 or key[0] is None:
        raise RuntimeError(
            f"the database driver reported no single id for the inserted row: {key!r}"
        )
    return int(key[0])
