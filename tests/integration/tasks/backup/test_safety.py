"""Attacks on the backup code paths on real files (issue #11): forged verifications,
damaged backups and retention, links planted in the repository, in a restore's way or
beside a SQLite database, files swapped while being read, mounts below a backed-up path."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_probe
from tests.integration.tasks.backup.conftest import EnvFactory
from upkeep.core.status import Status
from upkeep.io.safefs import Directory
from upkeep.probes.backup import BackupTarget, FreshnessProbe
from upkeep.probes.base import TargetUnreachable
from upkeep.store import repository
from upkeep.store.repository import SkippedPath
from upkeep.tasks.backup import service

KEY = "backup-key-from-a-secret-store"


def _files_env(backup_env: EnvFactory, tree: Path, **section: Any) -> service.BackupEnv:
    return backup_env({"etc": {"paths": [str(tree)]}}, **section)


def _truncate(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(10)


async def test_a_damaged_older_backup_is_a_warning_and_freshness_goes_by_the_newest_intact(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    env = _files_env(backup_env, file_tree, key=KEY)
    first = service.create(env, "etc").backup
    second = service.create(env, "etc").backup
    target = {"source": "etc", "repository": str(env.repository.root), "key": KEY}
    _truncate(first.data_path)
    outcome = await run_probe(FreshnessProbe, BackupTarget, target)
    assert outcome.status is Status.WARNING
    assert outcome.metrics["damaged"] == 1 and outcome.metrics["newest_intact"] is True
    assert f"{first.id}: data.zst.enc is 10 bytes" in outcome.message
    _truncate(second.data_path)
    with pytest.raises(TargetUnreachable, match=r"no complete backup of etc.*is damaged"):
        await run_probe(FreshnessProbe, BackupTarget, target)


async def test_a_forged_copied_or_stale_verification_does_not_count(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    env = _files_env(backup_env, file_tree, key=KEY)
    first = service.create(env, "etc").backup
    second = service.create(env, "etc").backup
    assert service.verify(env, first.id, restore=False).ok

    def verified(backup_id: str) -> dict[str, Any] | None:
        return env.repository.get(backup_id).verification()

    record = verified(first.id)
    assert record is not None and record["ok"] is True
    forged = {"at": "2099-01-01T00:00:00+00:00", "ok": True, "restored": True, "problems": []}
    (second.path / "verified.json").write_text(json.dumps(forged))
    assert verified(second.id) is None
    (second.path / "verified.json").write_bytes((first.path / "verified.json").read_bytes())
    assert verified(second.id) is None
    # The data file rewritten after its verification (same bytes, even): no longer proven.
    first.data_path.write_bytes(first.data_path.read_bytes())
    assert verified(first.id) is None
    target = {"source": "etc", "repository": str(env.repository.root), "key": KEY}
    outcome = await run_probe(FreshnessProbe, BackupTarget, target)
    assert "last_verified_age_s" not in outcome.metrics and "never verified" in outcome.message
    # A forged drill record is no drill.
    (env.repository.root / "etc" / "last-drill.json").write_text(
        json.dumps({"passed": True, "finished_at": "2099-01-01T00:00:00+00:00"})
    )
    assert repository.read_drill(env.repository.root, "etc", KEY) is None


def test_retention_never_keeps_a_damaged_backup_as_the_newest_verified(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    env = _files_env(backup_env, file_tree)
    first = service.create(env, "etc", prune_after=False).backup
    assert service.verify(env, first.id, restore=False).ok
    second = service.create(env, "etc", prune_after=False).backup
    assert service.verify(env, second.id, restore=False).ok
    _truncate(second.data_path)  # the newest verified backup is damaged since
    env.config = env.config.model_copy(
        update={"retention": env.config.retention.model_copy(update={"keep_last": 1})}
    )
    third = service.create(env, "etc").backup
    kept = [backup.id for backup in env.repository.backups("etc")]
    assert kept == [first.id, third.id], kept
    assert [backup.id for backup in env.repository.inventory("etc")] == kept


def test_a_link_planted_between_the_check_and_the_install_is_refused_not_followed(
    file_tree: Path, backup_env: EnvFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _files_env(backup_env, file_tree)
    backup = service.create(env, "etc").backup
    outside = tmp_path / "outside"
    outside.mkdir()
    real_create = service.create

    def create_then_plant(*args: Any, **kwargs: Any) -> service.CreateReport:
        # The safety backup runs after the checks and before the install: the window.
        report = real_create(*args, **kwargs)
        sites = file_tree / "nginx" / "sites"
        for child in sites.iterdir():
            child.unlink()
        sites.rmdir()
        sites.symlink_to(outside)
        return report

    monkeypatch.setattr(service, "create", create_then_plant)
    with pytest.raises(service.BackupFailed, match=r"symbolic link.*nothing was written through"):
        service.restore(env, backup.id, to=None)
    assert list(outside.iterdir()) == []


def test_a_file_swapped_for_a_link_while_it_is_backed_up_is_not_read(
    file_tree: Path, backup_env: EnvFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret\n")
    env = _files_env(backup_env, file_tree)
    real_open_file = Directory.open_file

    def swap_then_open(self: Directory, relative: str, *args: Any, **kwargs: Any) -> int:
        # Between the listing and the open, someone swaps nginx.conf for a link.
        if relative == "nginx.conf":
            os.unlink(relative, dir_fd=self.fd)
            os.symlink(secret, relative, dir_fd=self.fd)
        return real_open_file(self, relative, *args, **kwargs)

    monkeypatch.setattr(Directory, "open_file", swap_then_open)
    backup = service.create(env, "etc").backup
    monkeypatch.undo()
    name = f"{str(file_tree).lstrip('/')}/nginx/nginx.conf"
    manifest = backup.intact_manifest
    assert manifest.files is not None and name not in manifest.files
    assert SkippedPath(path=name, reason="not read: a symbolic link") in (manifest.skipped or [])
    with repository.scratch_directory(env.scratch_base(), "check") as work:
        source = env.source("etc")
        raw = repository.read_raw(env.repository, backup, None)
        with source.scratch_restore(raw, work, manifest) as restored:
            assert all("secret" not in name for name in restored.files)
        found = [path for path in work.rglob("*") if path.is_file() and not path.is_symlink()]
        assert found  # the rest was restored, so the scan below looked at something
        assert all(b"root:$6$" not in path.read_bytes() for path in found)


def test_a_mount_below_a_backed_up_path_is_left_out(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    mount = file_tree / "mounted"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        (mount / "elsewhere.txt").write_text("another filesystem\n")
        backup = service.create(_files_env(backup_env, file_tree), "etc").backup
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    name = f"{str(file_tree).lstrip('/')}/mounted"
    manifest = backup.intact_manifest
    assert not [path for path in manifest.files or {} if path.startswith(name)]
    assert SkippedPath(path=name, reason="not entered: another mount") in (manifest.skipped or [])


def test_the_repository_is_private_and_its_records_never_written_through_links(
    sqlite_database: Path, backup_env: EnvFactory, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    env = backup_env({"app": {"sqlite": str(sqlite_database)}}, key=KEY)
    first = service.create(env, "app").backup
    source_dir = env.repository.root / "app"

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.lstat().st_mode)

    assert mode(env.repository.root) == 0o700 and mode(source_dir) == 0o700
    assert mode(first.path) == 0o700
    for name in ("data.zst.enc", "manifest.json", "last-attempt.json"):
        path = first.path / name if name != "last-attempt.json" else source_dir / name
        assert mode(path) == 0o600, name
    # Links at the records' names and at the names the old code wrote them through.
    for name in (
        "last-attempt.json",
        ".upkeep-tmp-last-attempt.json",
        ".upkeep-tmp-last-drill.json",
    ):
        (source_dir / name).unlink(missing_ok=True)
        (source_dir / name).symlink_to(victim)
    (first.path / ".upkeep-tmp-verified.json").symlink_to(victim)
    assert service.verify(env, first.id, restore=False).ok
    second = service.create(env, "app").backup
    service.drill(env, "app", rpo=timedelta(days=1))
    assert victim.read_text() == "untouched\n"
    for path in (source_dir / "last-attempt.json", source_dir / "last-drill.json"):
        assert path.is_file() and not path.is_symlink() and mode(path) == 0o600
    assert mode(first.path / "verified.json") == 0o600
    attempt = repository.read_attempt(env.repository.root, "app", KEY)
    assert attempt is not None and attempt["backup_id"] == second.id


def test_a_sqlite_restore_never_writes_through_a_link_beside_the_database(
    sqlite_database: Path, backup_env: EnvFactory, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    env = backup_env({"app": {"sqlite": str(sqlite_database)}})
    backup = service.create(env, "app").backup
    # The application (which owns the database's directory) plants a link where the old
    # code wrote its temporary copy.
    (sqlite_database.parent / f".upkeep-restore-{sqlite_database.name}").symlink_to(victim)
    service.restore(env, backup.id, to=None)
    assert victim.read_text() == "untouched\n"
    import sqlite3

    connection = sqlite3.connect(sqlite_database)
    try:
        assert connection.execute("SELECT count(*) FROM orders").fetchone()[0] == 700
    finally:
        connection.close()


def test_overlapping_paths_back_up_and_restore_each_file_once(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    env = backup_env({"etc": {"paths": [str(file_tree), str(file_tree / "nginx")]}})
    backup = service.create(env, "etc").backup
    assert service.verify(env, backup.id, restore=True).ok
    (file_tree / "nginx" / "nginx.conf").write_text("changed\n")
    (file_tree / "link").unlink()
    report = service.restore(env, backup.id, to=None)
    assert (file_tree / "nginx" / "nginx.conf").read_text() == "worker_processes 2;\n"
    assert os.readlink(file_tree / "link") == "nginx/nginx.conf"
    assert report.message == "restored 4 files, 1 links, 3 directories"


@pytest.mark.parametrize("mode", [0o777, 0o775])
def test_a_scratch_directory_others_can_write_is_refused_before_anything_is_dumped(
    file_tree: Path, backup_env: EnvFactory, tmp_path: Path, mode: int
) -> None:
    """A dump, drill or restore works by path inside a fresh directory under
    ``backups.scratch``: where others can write the scratch base, one of them can rename
    that directory away and leave a link in its place, and root then writes the dump (or
    a restore's staging) wherever the link points. Such a base is refused."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    shared.chmod(mode)
    env = _files_env(backup_env, file_tree, scratch=str(shared))
    with pytest.raises(service.BackupFailed, match="others could replace"):
        service.create(env, "etc")
    assert os.listdir(shared) == []
    assert env.repository.backups("etc") == []


async def test_a_damaged_newest_backup_of_the_same_second_is_still_the_newest(
    file_tree: Path, backup_env: EnvFactory
) -> None:
    # Two backups within one second: the id alone cannot order them, the manifest can.
    env = _files_env(backup_env, file_tree, key=KEY)
    second = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)
    first, newer = (
        env.repository.write(
            "etc",
            [b"data"],
            details={"source_details": {"kind": "files"}},
            secret=KEY,
            started_at=second + timedelta(seconds=at),
        )
        for at in (0.2, 0.7)
    )
    assert first.id[:16] == newer.id[:16]
    _truncate(newer.data_path)
    assert [backup.id for backup in env.repository.inventory("etc")] == [first.id, newer.id]
    assert env.repository.inventory("etc")[-1].taken_at == second + timedelta(seconds=0.7)
