"""Backups of every source kind against the real services: dump, manifest, verification by
restore, drills, corruption, failures, retention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.tasks.backup.conftest import CUSTOMERS, ORDERS, EnvFactory
from upkeep.io.safefs import TEMP_PREFIX
from upkeep.probes.backup import BackupTarget, DrillProbe, FreshnessProbe
from upkeep.probes.base import TargetUnreachable
from upkeep.store import repository
from upkeep.store.backups import BackupEventKind, BackupEventStatus
from upkeep.tasks.backup import service

KEY = "backup-key-from-a-secret-store"


def _case(
    kind: str, request: pytest.FixtureRequest
) -> tuple[dict[str, Any], dict[str, Any], dict[str, int] | None, list[str]]:
    """Return (source config, targets, expected row counts, validation queries)."""
    if kind.startswith("postgres"):
        dsn = request.getfixturevalue("pg_database")
        source: dict[str, Any] = {"target": "db"}
        if kind == "postgres-directory":
            source |= {"format": "directory", "jobs": 2}
        counts = {"public.customers": CUSTOMERS, "public.orders": ORDERS, "audit.events": 2}
        queries = ["SELECT count(*) = 5000 FROM orders", "SELECT sum(total) > 0 FROM orders"]
        return source, {"db": {"kind": "postgres", "dsn": dsn}}, counts, queries
    if kind == "mysql":
        dsn = request.getfixturevalue("mysql_database")
        counts = {"items": 1200, "tags": 40}
        return (
            {"target": "db"},
            {"db": {"kind": "mysql", "dsn": dsn}},
            counts,
            ["SELECT count(*) = 1200 FROM items"],
        )
    if kind == "redis":
        import redis

        url = request.getfixturevalue("redis_url")
        client = redis.Redis.from_url(url)
        client.set("upkeep:backup:test", "1")
        client.close()
        return {"target": "cache"}, {"cache": {"kind": "redis", "url": url}}, None, []
    if kind == "sqlite":
        path = request.getfixturevalue("sqlite_database")
        counts = {"orders": 700, "notes": 1}
        return {"sqlite": str(path)}, {}, counts, ["SELECT count(*) FROM orders WHERE total >= 0"]
    tree = request.getfixturevalue("file_tree")
    return {"paths": [str(tree)]}, {}, None, []


@pytest.mark.parametrize(
    ("kind", "encrypted"),
    [
        ("postgres-custom", True),
        ("postgres-directory", False),
        ("mysql", True),
        ("redis", False),
        ("sqlite", True),
        ("files", False),
    ],
)
def test_a_backup_restores_into_a_scratch_copy_that_matches_its_manifest(
    kind: str,
    encrypted: bool,
    request: pytest.FixtureRequest,
    backup_env: EnvFactory,
    tmp_path: Path,
) -> None:
    source, targets, counts, queries = _case(kind, request)
    section = {"key": KEY} if encrypted else {}
    env = backup_env(
        {"src": {**source, "validate": queries, "rto": "5m", "rpo": "1h"}}, targets, **section
    )
    report = service.create(env, "src")
    backup = report.backup
    manifest = json.loads((backup.path / "manifest.json").read_text())
    assert manifest["data"]["encrypted"] is encrypted
    assert manifest["data"]["stored_bytes"] > 0 and manifest["data"]["raw_sha256"]
    assert manifest["source_details"]["kind"] == kind.split("-", maxsplit=1)[0]
    if counts is not None:
        assert manifest["row_counts"] == counts
    if kind == "redis":
        assert manifest["row_counts"]["db0"] >= 1
    if kind == "files":
        files = manifest["files"]
        assert {Path(name).name for name in files} >= {"nginx.conf", "app", "empty", "blob.bin"}
    if kind.startswith(("postgres", "mysql")):
        assert "server" in manifest["tool_versions"]
    assert not [path for path in backup.path.parent.iterdir() if path.name.startswith(TEMP_PREFIX)]

    verified = service.verify(env, backup.id, restore=True)
    assert verified.ok, verified.problems
    # What was compared, per kind: rows per table, keys per Redis database, files by sha256.
    compared = verified.figures["compared"]
    expected_counts = manifest.get("row_counts") or {}
    counted = {e["name"]: (e["manifest"], e["restored"]) for e in compared if e["kind"] != "file"}
    assert counted == {name: (count, count) for name, count in expected_counts.items()}
    units = {(e["kind"], e["unit"]) for e in compared}
    if kind == "redis":
        assert units == {("database", "keys")}
    elif kind == "files":
        assert units == {("file", "sha256")} and len(compared) == len(manifest["files"])
    else:
        assert units == {("table", "rows")}
    assert all(entry["ok"] for entry in compared)
    drill = service.drill(env, "src")
    assert drill.passed, drill.problems
    assert drill.rto_s is not None and 0 < drill.rto_s < 300
    assert drill.rpo_s is not None and drill.rpo_s >= 0
    assert [item["ok"] for item in drill.validations] == [True] * len(queries)
    records = env.catalog.records("src") if env.catalog else []
    assert [record.status for record in records] == ["ok"]
    assert records[0].verified_ok is True
    kinds = [event.kind for event in env.catalog.events(source="src")] if env.catalog else []
    assert kinds == ["drill", "verify"]


def test_any_changed_byte_is_detected_and_named(
    sqlite_database: Path, backup_env: EnvFactory
) -> None:
    env = backup_env({"app": {"sqlite": str(sqlite_database)}}, key=KEY)
    backup = service.create(env, "app").backup
    original = backup.data_path.read_bytes()
    for offset in (0, len(original) // 2, len(original) - 1):
        damaged = bytearray(original)
        damaged[offset] ^= 0x01
        backup.data_path.write_bytes(bytes(damaged))
        report = service.verify(env, backup.id, restore=False)
        assert not report.ok and "the stored file changed" in report.problems[0], offset
    # Damage with a manifest rewritten to match, without the key: the manifest's MAC
    # catches it, and the backup is no longer counted.
    damaged = bytearray(original)
    damaged[len(original) // 2] ^= 0x01
    backup.data_path.write_bytes(bytes(damaged))
    manifest_path = backup.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    import hashlib

    manifest["data"]["stored_sha256"] = hashlib.sha256(bytes(damaged)).hexdigest()
    manifest_path.write_text(json.dumps(manifest))
    report = service.verify(env, backup.id, restore=False)
    assert not report.ok and "manifest.json fails authentication" in report.problems[0]
    assert env.repository.backups("app") == []
    # The same, re-sealed with the key (what only the key's holder can do): the data's own
    # authenticated encryption still catches it.
    _reseal(manifest_path, manifest, backup.source, backup.id)
    report = service.verify(env, backup.id, restore=False)
    assert not report.ok and "does not decode" in report.problems[0]
    assert "fails authentication" in report.problems[0]
    # Intact data, but a restore that does not hold what the manifest says.
    backup.data_path.write_bytes(original)
    manifest["data"]["stored_sha256"] = hashlib.sha256(original).hexdigest()
    manifest["row_counts"]["orders"] = 701
    _reseal(manifest_path, manifest, backup.source, backup.id)
    report = service.verify(env, backup.id, restore=True)
    assert report.problems == ["orders: 700 rows after restore, 701 in the manifest"]


def _reseal(path: Path, manifest: dict[str, Any], source: str, backup_id: str) -> None:
    """Write ``manifest`` sealed with the key, as only the key's holder could."""
    from upkeep.store import crypto
    from upkeep.store.repository import context_of

    sealed = crypto.seal(manifest, KEY, context=context_of("manifest", source, backup_id))
    path.write_text(json.dumps(sealed))


def test_a_failed_backup_leaves_nothing_and_is_recorded(
    postgres_dsn: str, backup_env: EnvFactory, tmp_path: Path
) -> None:
    missing = postgres_dsn.rsplit("/", 1)[0] + "/upkeep_no_such_database"
    env = backup_env({"db": {"target": "db"}}, {"db": {"kind": "postgres", "dsn": missing}})
    with pytest.raises(service.BackupFailed, match="backup of db failed: cannot connect"):
        service.create(env, "db")
    assert env.repository.backups() == []
    assert not list((tmp_path / "repository" / "db").glob(f"{TEMP_PREFIX}*"))
    attempt = repository.read_attempt(env.repository.root, "db")
    assert attempt is not None and attempt["ok"] is False
    records = env.catalog.records("db") if env.catalog else []
    assert [record.status for record in records] == ["failed"]
    with pytest.raises(service.BackupFailed, match="nothing is pruned until a backup succeeds"):
        service.prune(env, "db", dry_run=False)


async def test_the_backup_target_probes_read_the_repository(
    sqlite_database: Path, backup_env: EnvFactory
) -> None:
    from tests.conftest import run_probe

    env = backup_env({"app": {"sqlite": str(sqlite_database), "rto": "1m"}})
    target = {"source": "app", "repository": str(env.repository.root)}
    with pytest.raises(TargetUnreachable, match="no complete backup of app"):
        await run_probe(FreshnessProbe, BackupTarget, target)
    first = service.create(env, "app").backup
    import sqlite3

    connection = sqlite3.connect(sqlite_database)
    connection.executemany("INSERT INTO orders (total) VALUES (?)", [(n,) for n in range(700)])
    connection.commit()
    connection.close()
    service.create(env, "app")
    outcome = await run_probe(FreshnessProbe, BackupTarget, target)
    assert outcome.metrics["backups"] == 2 and outcome.metrics["last_attempt_ok"] is True
    assert 0 <= float(outcome.metrics["age_s"]) < 60
    assert float(outcome.metrics["size_change_percent"]) > 0
    assert "last_verified_age_s" not in outcome.metrics and "never verified" in outcome.message
    service.verify(env, first.id, restore=True)
    outcome = await run_probe(FreshnessProbe, BackupTarget, target)
    assert 0 <= float(outcome.metrics["last_verified_age_s"]) < 60

    with pytest.raises(TargetUnreachable, match="no restore drill"):
        await run_probe(DrillProbe, BackupTarget, target)
    service.drill(env, "app", rpo=__import__("datetime").timedelta(microseconds=1))
    drill = await run_probe(DrillProbe, BackupTarget, target)
    assert drill.metrics["passed"] is False and drill.metrics["rpo_met"] is False
    assert drill.metrics["rto_met"] is True
    assert "RPO" in drill.message and "exceeds the objective" in drill.message


def test_retention_runs_after_a_successful_backup_and_keeps_the_newest_verified(
    sqlite_database: Path, backup_env: EnvFactory
) -> None:
    env = backup_env({"app": {"sqlite": str(sqlite_database)}}, retention={"keep_last": 1})
    first = service.create(env, "app").backup
    assert service.verify(env, first.id, restore=False).ok
    second = service.create(env, "app")
    third = service.create(env, "app")
    kept = [backup.id for backup in env.repository.backups("app")]
    # keep_last 1 keeps the third; the first stays as the newest verified one.
    assert kept == [first.id, third.backup.id]
    assert [d.candidate.id for d in third.pruned if not d.keep] == [second.backup.id]
    removed = env.catalog.get(second.backup.id) if env.catalog else None
    assert removed is not None and removed.status == "removed"


def test_copies_to_a_local_second_destination_are_verified_and_caught_up(
    sqlite_database: Path, backup_env: EnvFactory, tmp_path: Path
) -> None:
    second = tmp_path / "second-disk"
    env = backup_env({"app": {"sqlite": str(sqlite_database)}}, copy_to=str(second))
    first = service.create(env, "app")
    assert first.copied == [first.backup.id]
    names = sorted(path.name for path in second.iterdir())
    assert names == [
        f"app--{first.backup.id}--data.zst",
        f"app--{first.backup.id}--manifest.json",
    ]
    (second / names[0]).unlink()  # the second disk lost a file
    again = service.create(env, "app")
    assert sorted(again.copied) == sorted([first.backup.id, again.backup.id])
    assert (second / names[0]).read_bytes() == first.backup.data_path.read_bytes()


def test_a_directory_with_a_broken_manifest_is_not_a_backup(
    sqlite_database: Path, backup_env: EnvFactory
) -> None:
    env = backup_env({"app": {"sqlite": str(sqlite_database)}})
    good = service.create(env, "app").backup
    broken = service.create(env, "app").backup
    (broken.path / "manifest.json").write_text('{"id": "x", "data": {}}')
    assert [backup.id for backup in env.repository.backups("app")] == [good.id]


def test_a_redis_restore_writes_the_snapshot_out_and_says_it_did_not_load_it(
    request: pytest.FixtureRequest, backup_env: EnvFactory, tmp_path: Path
) -> None:
    # It refused and pointed at `upkeep backup export`, a command that does not exist; then
    # it wrote the file but took a safety backup for nothing and recorded a restore.
    source, targets, _, _ = _case("redis", request)
    env = backup_env({"cache": source}, targets)
    backup = service.create(env, "cache").backup
    env.config_path = tmp_path / "upkeep.yaml"
    report = service.restore(env, backup.id, to=None)  # a safety backup asked for
    written = list(tmp_path.glob("redis-restored-*/dump.rdb"))
    assert len(written) == 1, report.message
    assert written[0].read_bytes().startswith(b"REDIS")
    assert (written[0].parent.stat().st_mode & 0o777) == 0o700
    assert report.loaded is False and report.written_to == str(written[0].parent)
    assert report.message.startswith(f"written to {written[0].parent}; not loaded: ")
    assert "CONFIG GET dir/dbfilename" in report.message
    assert "upkeep backup export" not in report.message
    # Nothing on the server changes, so there is nothing to keep safe.
    assert report.safety_backup is None
    assert [b.id for b in env.repository.backups("cache")] == [backup.id]
    assert env.catalog is not None
    (event,) = env.catalog.events(source="cache", kind=BackupEventKind.RESTORE)
    assert event.status == BackupEventStatus.WRITTEN
    assert event.detail["loaded"] is False and event.message == report.message
    assert not service.loads_in_place(backup)


def test_a_loaded_restore_is_recorded_as_loaded(
    sqlite_database: Path, backup_env: EnvFactory
) -> None:
    env = backup_env({"app": {"sqlite": str(sqlite_database)}})
    backup = service.create(env, "app").backup
    report = service.restore(env, backup.id, to=None)
    assert report.loaded is True and report.written_to is None and report.safety_backup
    assert env.catalog is not None
    (event,) = env.catalog.events(source="app", kind=BackupEventKind.RESTORE)
    assert event.status == BackupEventStatus.OK and event.detail["loaded"] is True
    assert service.loads_in_place(backup)
