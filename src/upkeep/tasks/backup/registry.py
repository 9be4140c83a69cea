"""The one explicit table of backup source kinds.

Adding a kind means: write its ``Source`` class (``sources.py``: the key or target kind
that selects it, ``validate``, ``from_config``, dump and restore), then list it here.
Nothing is discovered implicitly; the config keys of ``backups.sources`` entries, the
target kinds the backup tasks take, and the kind that copies upkeep's own store are all
read from this table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upkeep.tasks.backup.sources import (
    FilesSource,
    MysqlSource,
    PostgresSource,
    RedisSource,
    Source,
    SqliteSource,
    UpkeepSource,
)

if TYPE_CHECKING:
    from upkeep.probes.base import TargetBase
    from upkeep.tasks.backup.config import BackupSourceConfig

SOURCE_KINDS: dict[str, type[Source]] = {
    source.kind: source
    for source in (
        PostgresSource,
        MysqlSource,
        RedisSource,
        SqliteSource,
        FilesSource,
        UpkeepSource,
    )
}

CONFIG_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(kind.config_key for kind in SOURCE_KINDS.values())
)
"""The keys that select a source's kind, of which an entry of ``backups.sources`` has one."""

BACKUP_TARGET_KINDS: tuple[str, ...] = tuple(
    kind.target_kind for kind in SOURCE_KINDS.values() if kind.target_kind is not None
)
"""The target kinds a source can back up (``target: db``)."""

PATH_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(key for kind in SOURCE_KINDS.values() for key in kind.path_keys)
)
"""The keys of an entry that hold paths as written (resolved by the loader)."""


def kind_for(config: BackupSourceConfig, target: TargetBase | None) -> type[Source] | None:
    """Given an entry of ``backups.sources`` and the target it names (None if it names
    none), return its kind, or None if no kind backs up that target."""
    for kind in SOURCE_KINDS.values():
        if getattr(config, kind.config_key) is None:
            continue
        if kind.target_kind is None or (target is not None and target.kind == kind.target_kind):
            return kind
    return None


def source_for_store(store_url: str, schema: str) -> Source | None:
    """Given upkeep's own store (a full URL and, for PostgreSQL, its schema), return the
    source that dumps it, or None."""
    for kind in SOURCE_KINDS.values():
        found = kind.for_store(store_url, schema)
        if found is not None:
            return found
    return None
