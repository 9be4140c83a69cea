"""The ``backups:`` section checks itself through the loader's generic section hook, by the
rules of its source kinds (``tasks/backup/registry.py``): errors at their keys, paths
resolved, ``backup`` targets completed with the section's repository and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.probes.backup import BackupTarget
from upkeep.probes.registry import TARGET_KINDS
from upkeep.tasks.backup.config import BackupSourceConfig
from upkeep.tasks.backup.registry import (
    BACKUP_TARGET_KINDS,
    CONFIG_KEYS,
    SOURCE_KINDS,
    kind_for,
    source_for_store,
)
from upkeep.tasks.backup.sources import PostgresSource, SqliteSource
from upkeep.tasks.registry import TASK_KINDS


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [str(issue) for issue in caught.value.issues]


def test_the_table_names_every_key_target_kind_and_path_the_section_reads() -> None:
    fields = BackupSourceConfig.model_fields
    assert CONFIG_KEYS == ("target", "sqlite", "paths", "upkeep")
    assert BACKUP_TARGET_KINDS == ("postgres", "mysql", "redis")
    for kind in SOURCE_KINDS.values():
        assert kind.config_key in fields, kind
        assert all(key in fields for key in kind.path_keys), kind
        assert kind.target_kind is None or kind.target_kind in TARGET_KINDS, kind
    # The backup tasks take exactly the targets a source can back up.
    assert TASK_KINDS["backup.create"].target_kinds == BACKUP_TARGET_KINDS


def test_each_entry_is_the_kind_its_key_or_its_target_says() -> None:
    from upkeep.probes.host import HostTarget
    from upkeep.probes.redis import RedisTarget

    redis = RedisTarget(url="redis://127.0.0.1:6379")
    assert kind_for(BackupSourceConfig(target="cache"), redis) is SOURCE_KINDS["redis"]
    assert kind_for(BackupSourceConfig(target="box"), HostTarget()) is None
    assert kind_for(BackupSourceConfig(sqlite="a.db"), None) is SOURCE_KINDS["sqlite"]
    assert kind_for(BackupSourceConfig(paths=["/etc"]), None) is SOURCE_KINDS["files"]
    assert kind_for(BackupSourceConfig(upkeep=True), None) is SOURCE_KINDS["upkeep"]


def test_upkeeps_own_store_is_copied_by_the_kind_that_dumps_it() -> None:
    assert isinstance(source_for_store("sqlite:////var/lib/upkeep.db", "upkeep"), SqliteSource)
    found = source_for_store("postgresql+psycopg://upkeep:pw@db.internal:5432/upkeep", "ops")
    assert isinstance(found, PostgresSource) and found.options["dbname"] == "upkeep"
    assert found.schema == "ops"  # the store's schema only, not the database it shares
    assert source_for_store("mysql://db.internal/upkeep", "upkeep") is None


def test_every_source_problem_is_listed_at_its_key(tmp_path: Path) -> None:
    found = _errors(
        tmp_path,
        """\
targets:
  box: {kind: host}
  db: {kind: postgres, dsn: "postgresql://u@127.0.0.1/app"}
  shop: {kind: mysql, dsn: "mysql://root@127.0.0.1:3306"}
  app-backups: {kind: backup, source: nowhere}
backups:
  sources:
    host: {target: box}
    ghost: {target: missing}
    db: {target: db, jobs: 4}
    shop: {target: shop}
    empty: {paths: []}
    two: {sqlite: a.db, paths: [b]}
""",
    )
    expected = [
        "backups.sources.host.target: a host target cannot be backed up; use paths",
        "backups.sources.ghost.target: no target named 'missing'",
        "backups.sources.db.jobs: parallel jobs need format: directory",
        "backups.sources.shop.target: a MySQL backup needs a database in the DSN",
        "backups.sources.empty.paths: paths must list at least one file or directory",
        "backups.sources.two: a backup source has exactly one of target, sqlite, paths or upkeep",
        "targets.app-backups.source: no backup source named 'nowhere' (backup sources: db, empty,",
    ]
    for fragment in expected:
        assert any(fragment in line for line in found), (fragment, found)


def test_paths_are_resolved_and_backup_targets_read_the_sections_repository_and_key(
    tmp_path: Path,
) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(
        """\
targets:
  app-backups: {kind: backup, source: app}
  own: {kind: backup, source: etc, repository: /srv/elsewhere}
backups:
  repository: repo
  key: the-key
  sources:
    app: {sqlite: data/app.db}
    etc: {paths: [etc, /etc/nginx]}
""",
        encoding="utf-8",
    )
    config = load_config(path, environ={}).config
    base = tmp_path.resolve()
    assert config.backups.repository == str(base / "repo")
    assert config.backups.sources["app"].sqlite == str(base / "data" / "app.db")
    assert config.backups.sources["etc"].paths == [str(base / "etc"), "/etc/nginx"]
    completed = config.targets["app-backups"]
    assert isinstance(completed, BackupTarget)
    assert (completed.repository, completed.key) == (str(base / "repo"), "the-key")
    own = config.targets["own"]
    assert isinstance(own, BackupTarget)
    assert (own.repository, own.key) == ("/srv/elsewhere", "the-key")
