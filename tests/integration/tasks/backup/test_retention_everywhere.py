"""Retention applies to every destination: the repository and ``copy_to`` (a local
directory or an SFTP server) keep the same backups after a successful run, and what the
repository prunes leaves the copy too (issue #13, defect 7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.tasks.backup.conftest import EnvFactory
from tests.support.sshd import SshServer, running_sshd
from upkeep.tasks.backup import service


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def _data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    (root / "a.txt").write_text("a\n")
    return root


def _copied_ids(directory: Path) -> list[str]:
    """Return the backup ids with both files in a copy directory."""
    names = {path.name for path in directory.iterdir()}
    ids = {name.split("--")[1] for name in names}
    return sorted(
        backup_id
        for backup_id in ids
        if f"files--{backup_id}--manifest.json" in names
        and f"files--{backup_id}--data.zst" in names
    )


def _local_ids(env: service.BackupEnv) -> list[str]:
    return sorted(backup.id for backup in env.repository.backups("files"))


def test_a_local_copy_keeps_what_the_repository_keeps(
    tmp_path: Path, backup_env: EnvFactory
) -> None:
    second = tmp_path / "second-disk"
    env = backup_env(
        {"files": {"paths": [str(_data(tmp_path))]}},
        copy_to=str(second),
        retention={"keep_last": 3},
    )
    made = [service.create(env, "files") for _ in range(5)]
    assert len(_local_ids(env)) == 3
    assert _copied_ids(second) == _local_ids(env) == sorted(r.backup.id for r in made[-3:])
    assert made[-1].copy_retention is not None
    assert made[-1].copy_retention.removed == [made[1].backup.id]

    # A drill that takes its own backup counts it too: still 3 here and there (it left 4).
    report = service.drill(env, "files", take_backup=True)
    assert report.passed, report.problems
    assert len(_local_ids(env)) == 3 and report.backup_id in _local_ids(env)
    assert _copied_ids(second) == _local_ids(env)
    assert any(note.startswith("retention removed") for note in report.notes)


def test_copies_left_by_older_runs_are_pruned_by_the_same_rules(
    tmp_path: Path, backup_env: EnvFactory
) -> None:
    second = tmp_path / "second-disk"
    data = _data(tmp_path)
    without_rules = backup_env({"files": {"paths": [str(data)]}}, copy_to=str(second))
    for _ in range(4):
        service.create(without_rules, "files")
    assert len(_copied_ids(second)) == 4
    env = backup_env(
        {"files": {"paths": [str(data)]}}, copy_to=str(second), retention={"keep_last": 2}
    )
    dry = service.prune(env, "files", dry_run=True)
    assert dry.copy is not None and len(dry.copy.removed) == 2
    assert len(_copied_ids(second)) == 4  # a dry run removes nothing
    done = service.prune(env, "files", dry_run=False)
    assert len(done.removed) == 2
    assert _copied_ids(second) == _local_ids(env)
    assert not [path for path in second.iterdir() if path.name.startswith(".upkeep-tmp-")]


def test_a_copy_that_lacks_kept_backups_is_not_pruned(
    tmp_path: Path, backup_env: EnvFactory
) -> None:
    second = tmp_path / "second-disk"
    env = backup_env(
        {"files": {"paths": [str(_data(tmp_path))]}},
        copy_to=str(second),
        retention={"keep_last": 1},
    )
    service.create(env, "files")
    first_copy = _copied_ids(second)
    # The newest backup never reached the copy (made without copy_to): the copy keeps all.
    alone = backup_env({"files": {"paths": [str(tmp_path / "data")]}}, retention={"keep_last": 1})
    newest = service.create(alone, "files").backup
    report = service.prune(env, "files", dry_run=False)
    assert report.copy is not None and report.copy.problem is not None
    assert newest.id in report.copy.problem and report.copy.removed == []
    assert _copied_ids(second) == first_copy


def test_an_sftp_copy_keeps_what_the_repository_keeps(
    tmp_path: Path, sshd: SshServer, backup_env: EnvFactory
) -> None:
    remote = tmp_path / "offsite" / "backups"
    options = {"identity_file": str(sshd.identity_file), "known_hosts": str(sshd.known_hosts)}
    env = backup_env(
        {"files": {"paths": [str(_data(tmp_path))]}},
        copy_to=sshd.url(remote),
        sftp=options,
        retention={"keep_last": 2},
    )
    (remote.parent / "unrelated").mkdir(parents=True)
    (remote.parent / "unrelated" / "note").write_text("not a backup")
    remote.mkdir()
    (remote / "files--not-an-id--data.zst").write_text("not ours to judge")
    for _ in range(4):
        service.create(env, "files")
    assert len(_local_ids(env)) == 2
    names = {path.name for path in remote.iterdir()}
    assert names == {
        *(
            f"files--{backup_id}--{part}"
            for backup_id in _local_ids(env)
            for part in ("data.zst", "manifest.json")
        ),
        "files--not-an-id--data.zst",
    }


def test_copies_another_repository_made_of_a_source_of_the_same_name_are_never_judged(
    tmp_path: Path, backup_env: EnvFactory
) -> None:
    # Another host backs up its own "files" into the same second destination: its copies
    # counted in this repository's keep_last, and went as older than what it keeps.
    second = tmp_path / "shared-disk"
    data = _data(tmp_path)
    other = backup_env(
        {"files": {"paths": [str(data)]}},
        repository=str(tmp_path / "other-host"),
        copy_to=str(second),
    )
    theirs = sorted(service.create(other, "files").backup.id for _ in range(3))
    env = backup_env(
        {"files": {"paths": [str(data)]}}, copy_to=str(second), retention={"keep_last": 2}
    )
    made = [service.create(env, "files") for _ in range(4)]
    assert made[-1].copy_retention is not None
    assert made[-1].copy_retention.foreign == theirs
    assert made[-1].copy_retention.removed == [made[1].backup.id]
    assert _copied_ids(second) == sorted([*theirs, *_local_ids(env)])
    # A dry run and an explicit prune leave them alone as well.
    dry = service.prune(env, "files", dry_run=True)
    assert dry.copy is not None and dry.copy.removed == [] and dry.copy.foreign == theirs
    assert {d.candidate.id for d in dry.copy.decisions} == set(_local_ids(env))


def test_a_backup_removed_while_the_copy_was_left_alone_leaves_the_copy_later(
    tmp_path: Path, backup_env: EnvFactory
) -> None:
    second = tmp_path / "second-disk"
    data = _data(tmp_path)
    without_rules = backup_env({"files": {"paths": [str(data)]}}, copy_to=str(second))
    made = [service.create(without_rules, "files").backup.id for _ in range(3)]
    env = backup_env(
        {"files": {"paths": [str(data)]}}, copy_to=str(second), retention={"keep_last": 1}
    )
    # The copy was not reached (as after a failed copy): the repository remembers what it
    # removed, so the next prune still knows those copies are its own.
    service.prune(env, "files", dry_run=False, copy=False)
    assert _local_ids(env) == [made[-1]] and _copied_ids(second) == sorted(made)
    later = service.prune(env, "files", dry_run=False)
    assert later.copy is not None and sorted(later.copy.removed) == sorted(made[:2])
    assert _copied_ids(second) == [made[-1]]
    # Gone there too: nothing left to remember.
    assert env.repository.read_record("files", "removed.json") == {"ids": []}
