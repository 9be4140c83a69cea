"""Faults: a full disk, a kill -9, a second destination that goes away mid-copy. Nothing
half-written is ever listed as a good backup, the failure is recorded, and the next run
succeeds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.integration.tasks.backup.conftest import EnvFactory
from tests.support.sshd import SshServer, running_sshd
from upkeep.io.safefs import TEMP_PREFIX
from upkeep.store import repository
from upkeep.tasks.backup import service


def _random_tree(root: Path, megabytes: int) -> Path:
    """Incompressible files: zstd cannot shrink them below the disk's size."""
    root.mkdir(parents=True, exist_ok=True)
    for index in range(megabytes):
        (root / f"blob-{index:03}.bin").write_bytes(os.urandom(1 << 20))
    return root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted for the test (root only; CI runs as root)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        message = f"cannot mount a tmpfs: {done.stderr.decode().strip()}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: a fault test that cannot run is a failure)")
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_cleanly_and_the_next_run_succeeds(
    tmp_path: Path, small_disk: Path, backup_env: EnvFactory
) -> None:
    data = _random_tree(tmp_path / "data", 6)
    env = backup_env({"files": {"paths": [str(data)]}})
    env.config = env.config.model_copy(update={"repository": str(small_disk / "repository")})
    with pytest.raises(service.BackupFailed, match="No space left on device"):
        service.create(env, "files")
    assert env.repository.backups() == []
    assert not list((small_disk / "repository" / "files").glob(f"{TEMP_PREFIX}*"))
    attempt = repository.read_attempt(env.repository.root, "files")
    assert attempt is not None and attempt["ok"] is False
    assert "No space left" in attempt["message"]
    failures = (
        [record for record in env.catalog.records("files") if record.status == "failed"]
        if env.catalog
        else []
    )
    assert len(failures) == 1
    # Someone makes room (here: the data shrinks); the next run succeeds.
    for blob in sorted(data.iterdir())[1:]:
        blob.unlink()
    report = service.create(env, "files")
    assert [backup.id for backup in env.repository.backups()] == [report.backup.id]
    assert service.verify(env, report.backup.id, restore=False).ok


def _upkeep(config: Path, *args: str) -> subprocess.Popen[bytes]:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    return subprocess.Popen(
        [sys.executable, "-m", "upkeep.cli.main", *args, "-c", str(config)],
        cwd=config.parent,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_backup_killed_with_sigkill_is_never_listed_and_the_next_run_cleans_up(
    tmp_path: Path,
) -> None:
    data = _random_tree(tmp_path / "data", 300)
    config = tmp_path / "upkeep.yaml"
    config.write_text(f"backups:\n  repository: repo\n  sources:\n    files: {{paths: [{data}]}}\n")
    process = _upkeep(config, "backup", "create", "files")
    source_dir = tmp_path / "repo" / "files"
    deadline = time.monotonic() + 60
    while True:
        partial = list(source_dir.glob(f"{TEMP_PREFIX}*/data.zst")) if source_dir.is_dir() else []
        if partial and partial[0].stat().st_size > (8 << 20):
            break
        assert process.poll() is None, "the backup finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdout.close() if process.stdout else None
    process.stderr.close() if process.stderr else None
    assert process.returncode == -signal.SIGKILL
    assert list(source_dir.glob(f"{TEMP_PREFIX}*"))  # what the kill left, unlisted
    listed = subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", "backup", "list", "--json", "-c", str(config)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert json.loads(listed.stdout)["backups"] == []
    for blob in sorted(data.iterdir())[5:]:
        blob.unlink()  # keep the second run short
    again = _upkeep(config, "backup", "create", "files")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, out.decode() + err.decode()
    assert not list(source_dir.glob(f"{TEMP_PREFIX}*"))
    (backup,) = [path for path in source_dir.iterdir() if path.is_dir()]
    assert (backup / "manifest.json").is_file()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    with running_sshd(tmp_path / "sshd") as server:
        yield server


def _kill_server_tree(server: SshServer) -> None:
    """Stop sshd and the per-connection processes it forked (a lost destination)."""
    parent = psutil.Process(server.process.pid)
    for child in parent.children(recursive=True):
        child.kill()
    parent.kill()


def test_a_destination_lost_mid_copy_leaves_the_local_backup_and_the_next_run_copies(
    tmp_path: Path, sshd: SshServer, backup_env: EnvFactory
) -> None:
    data = _random_tree(tmp_path / "data", 40)
    remote = tmp_path / "offsite"
    options = {"identity_file": str(sshd.identity_file), "known_hosts": str(sshd.known_hosts)}
    env = backup_env({"files": {"paths": [str(data)]}}, copy_to=sshd.url(remote), sftp=options)

    def kill_when_uploading() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if remote.is_dir() and any(
                path.name.startswith(TEMP_PREFIX) and path.stat().st_size > (1 << 20)
                for path in remote.iterdir()
            ):
                _kill_server_tree(sshd)
                return
            time.sleep(0.005)

    killer = threading.Thread(target=kill_when_uploading)
    killer.start()
    with pytest.raises(service.BackupFailed, match="is complete here, but copy to sftp://"):
        service.create(env, "files")
    killer.join()
    (local,) = env.repository.backups("files")
    assert service.verify(env, local.id, restore=False).ok
    finals = [path for path in remote.iterdir() if not path.name.startswith(TEMP_PREFIX)]
    assert not [path for path in finals if path.name.endswith("data.zst")]  # nothing half-written
    attempt = repository.read_attempt(env.repository.root, "files")
    assert attempt is not None and attempt["ok"] is False

    with running_sshd(tmp_path / "sshd-2") as second:
        options = {
            "identity_file": str(second.identity_file),
            "known_hosts": str(second.known_hosts),
        }
        env.config = env.config.model_copy(
            update={
                "copy_to": second.url(remote),
                "sftp": env.config.sftp.model_copy(update=options) if env.config.sftp else None,
            }
        )
        report = service.create(env, "files")
    assert sorted(report.copied) == sorted([local.id, report.backup.id])
    for backup in env.repository.backups("files"):
        copied = remote / f"files--{backup.id}--data.zst"
        assert copied.read_bytes() == backup.data_path.read_bytes()
        assert (remote / f"files--{backup.id}--manifest.json").is_file()
