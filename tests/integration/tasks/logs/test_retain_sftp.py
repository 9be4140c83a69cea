"""logs.retain to an SFTP second store: a real OpenSSH sshd on loopback."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sshd import SshServer, running_sshd
from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.copies import LocalDirectoryStore
from upkeep.tasks.logs import retain
from upkeep.tasks.logs.retain import LogsRetain, RetainParams

DAY = 86400.0
# 30 days here, 90 days in the second store (seed 001's application logs).
CLASSES = [{"match": "*", "keep": "30d", "archive_keep": "90d"}]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def _archive(directory: Path, log: str, days_old: float, size: int = 3000) -> Path:
    moment = time.time() - days_old * DAY
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(moment))
    path = directory / f"{log}-{stamp}.zst"
    path.write_bytes(os.urandom(size))
    os.utime(path, (moment, moment))
    return path


def _params(server: SshServer, remote: Path, **extra: object) -> RetainParams:
    return RetainParams.model_validate(
        {
            "classes": CLASSES,
            "archive_to": server.url(remote),
            "sftp": {
                "identity_file": str(server.identity_file),
                "known_hosts": str(server.known_hosts),
                **extra,
            },
        }
    )


def _target(directory: Path) -> LogsTarget:
    return LogsTarget(kind="logs", path=str(directory))


async def test_archives_go_to_sftp_and_are_deleted_only_once_proven(
    tmp_path: Path, sshd: SshServer, task_context: TaskContext
) -> None:
    logs, remote = tmp_path / "logs", tmp_path / "offsite" / "app"
    logs.mkdir()
    old = _archive(logs, "app.log", 40, size=3 << 20)  # several SFTP chunks
    recent = _archive(logs, "app.log", 2)
    expected = {path.name: path.read_bytes() for path in (old, recent)}
    params = _params(sshd, remote)
    assert LogsRetain().validate(_target(logs), params) == []

    plan = await LogsRetain().plan(_target(logs), params, task_context)
    assert sorted((change.action, Path(change.subject).name) for change in plan.changes) == [
        ("copy", old.name),
        ("copy", recent.name),
        ("delete", old.name),  # here; its copy is kept for 90 days
    ]
    assert all(
        sshd.url(remote) in change.detail for change in plan.changes if change.action == "copy"
    )
    assert not remote.exists() and not remote.parent.exists()  # the dry run created nothing

    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert outcome.figures == {
        "archives": 2,
        "copied": 2,
        "deleted": 1,
        "kept_unproven": 0,
        "deleted_copies": 0,
    }
    assert not old.exists() and recent.exists()
    assert {path.name: path.read_bytes() for path in remote.iterdir()} == expected
    # A second run finds intact copies and copies nothing again.
    again = await LogsRetain().run(_target(logs), params, task_context)
    assert again.figures["copied"] == 0 and again.figures["deleted"] == 0
    # A copy past its class's archive_keep that an earlier run left there (its original
    # long gone) is removed by the next run; a link planted there is left alone.
    stale = _archive(remote, "app.log", 91)
    (remote / "app.log-20000101-000000.zst").symlink_to(remote / recent.name)
    third = await LogsRetain().run(_target(logs), params, task_context)
    assert third.figures["deleted_copies"] == 1 and not stale.exists()
    assert (remote / "app.log-20000101-000000.zst").is_symlink()
    assert (remote / recent.name).is_file()


async def test_a_different_remote_file_of_the_same_name_is_never_overwritten(
    tmp_path: Path, sshd: SshServer, task_context: TaskContext
) -> None:
    logs, remote = tmp_path / "logs", tmp_path / "offsite"
    logs.mkdir()
    remote.mkdir()
    old = _archive(logs, "app.log", 40)
    other = _archive(logs, "error.log", 40)
    (remote / old.name).write_bytes(b"another log's archive of that name")
    with pytest.raises(TaskFailed, match=f"a different {old.name} is already on sftp://"):
        await LogsRetain().run(_target(logs), _params(sshd, remote), task_context)
    assert (
        old.exists() and (remote / old.name).read_bytes() == b"another log's archive of that name"
    )
    # The other archive went on: copied, proven, deleted.
    assert not other.exists() and (remote / other.name).is_file()
    assert not [path for path in remote.iterdir() if path.name.startswith(".upkeep-tmp-")]


async def test_an_unknown_host_key_is_refused_and_nothing_is_deleted(
    tmp_path: Path, sshd: SshServer, task_context: TaskContext
) -> None:
    logs, remote = tmp_path / "logs", tmp_path / "offsite"
    logs.mkdir()
    old = _archive(logs, "app.log", 40)
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    params = _params(sshd, remote, known_hosts=str(empty_known_hosts))
    with pytest.raises(TaskFailed, match="not found in known_hosts"):
        await LogsRetain().run(_target(logs), params, task_context)
    assert old.exists() and not remote.exists()


async def test_an_unreachable_server_fails_the_run_and_keeps_every_archive(
    tmp_path: Path, task_context: TaskContext
) -> None:
    with running_sshd(tmp_path / "sshd") as server:
        params = _params(server, tmp_path / "offsite", connect_timeout="2s")
    # The server has stopped: its port refuses connections.
    logs = tmp_path / "logs"
    logs.mkdir()
    old = _archive(logs, "app.log", 40)
    started = time.monotonic()
    with pytest.raises(TaskFailed, match="second store sftp://"):
        await LogsRetain().run(_target(logs), params, task_context)
    assert time.monotonic() - started < 10
    assert old.exists()
    plan = await LogsRetain().plan(_target(logs), params, task_context)
    assert "could not list the second store" in plan.note
    assert [change.action for change in plan.changes] == ["copy", "delete"]


class _ForgetfulStore(LocalDirectoryStore):
    """A second store that loses its copies after writing them (a failing disk, a purge)."""

    def proven(self, name: str, expected_sha256: str) -> bool:
        (self.directory / name).unlink(missing_ok=True)
        return super().proven(name, expected_sha256)


async def test_an_archive_whose_copy_is_gone_by_deletion_time_is_kept(
    tmp_path: Path, task_context: TaskContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = _archive(logs, "app.log", 40)
    params = RetainParams.model_validate(
        {"classes": CLASSES, "archive_to": str(tmp_path / "store")}
    )

    def forgetful(destination: str, options: object) -> contextlib.closing[_ForgetfulStore]:
        del options
        return contextlib.closing(_ForgetfulStore(Path(destination)))

    # The task opens its second store through this seam; this one loses what it is given.
    monkeypatch.setattr(retain, "open_store", forgetful)
    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert outcome.figures["kept_unproven"] == 1 and outcome.figures["deleted"] == 0
    assert old.exists()
    assert "could not be proven" in outcome.message


def test_sftp_destinations_are_checked_before_anything_runs(tmp_path: Path) -> None:
    def problems(archive_to: str, sftp: dict[str, str] | None = None) -> list[str]:
        params = RetainParams.model_validate(
            {"classes": CLASSES, "archive_to": archive_to, "sftp": sftp}
        )
        return LogsRetain().validate(_target(tmp_path), params)

    assert problems("sftp://backup@127.0.0.1/srv/logs") == [
        "an sftp:// destination needs sftp.identity_file or a password"
    ]
    assert problems("sftp://127.0.0.1/srv/logs", {"identity_file": "/k"}) == [
        "an SFTP location needs a user: sftp://user@host/directory"
    ]
    assert problems("sftp://u@127.0.0.1/", {"identity_file": "/k"}) == [
        "an SFTP location needs an absolute directory other than /"
    ]
    assert problems("s3://bucket/logs") == ["unsupported destination s3://; use a path or sftp://"]
    assert problems("sftp://u:pw@127.0.0.1/srv/logs") == []
