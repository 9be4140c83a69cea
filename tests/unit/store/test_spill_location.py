"""Where the spill goes: a private directory (never one another user could have planted or
could write in), preferably on another file system than the store, else memory."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store import spill as spill_module
from upkeep.store.spill import (
    MEMORY,
    SPILL_DIR_ENV,
    Spill,
    SpillError,
    candidate_directories,
    private_directory,
    spill_file_name,
)

NOBODY = 65534


def cannot_run(reason: str) -> None:
    """Skip a test this machine cannot run; under ``CI=true`` fail it instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a test that cannot run is a failure)")
    pytest.skip(reason)


def test_a_new_spill_directory_is_private(tmp_path: Path) -> None:
    made = private_directory(tmp_path / "a" / "spill")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700


def test_a_link_is_never_a_spill_directory(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "spill").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpillError, match="not a directory"):
        private_directory(tmp_path / "spill")


def test_a_directory_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        cannot_run("only root can give a directory to another user")
    planted = tmp_path / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    with pytest.raises(SpillError, match="owned by uid 65534"):
        private_directory(planted)


def test_a_directory_others_may_write_in_is_refused_and_one_they_may_read_is_closed(
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(SpillError, match="others may write in it"):
        private_directory(shared)
    readable = tmp_path / "readable"
    readable.mkdir()
    readable.chmod(0o755)
    assert stat.S_IMODE(private_directory(readable).stat().st_mode) == 0o700


def test_one_spill_per_store_whatever_its_password() -> None:
    one = spill_file_name("postgresql+psycopg://u:secret1@db/upkeep", "a")
    two = spill_file_name("postgresql+psycopg://u:other22@db/upkeep", "a")
    other_schema = spill_file_name("postgresql+psycopg://u:secret1@db/upkeep", "b")
    assert one == two != other_schema
    assert "secret1" not in one


def test_the_default_schema_keeps_the_spill_of_the_store_it_was_moved_from() -> None:
    """A store an earlier version kept in public is moved to the default schema: an
    episode it spilled before the upgrade is found under the name it had then (the hash
    of the URL alone). A SQLite store has no schema, whatever is passed."""
    url = "postgresql+psycopg://u@db/upkeep"
    before = f"spill-{hashlib.sha256(url.encode()).hexdigest()[:16]}.db"
    assert spill_file_name(url) == spill_file_name(url, "upkeep") == before
    assert spill_file_name(url, "tenant_b") != before
    sqlite = "sqlite:////srv/upkeep.db"
    assert spill_file_name(sqlite, "x") == spill_file_name(sqlite)


def test_where_a_spill_may_go(tmp_path: Path) -> None:
    chosen, explicit = candidate_directories("spill", tmp_path, {})
    assert (chosen, explicit) == ([tmp_path / "spill"], True)
    from_env, explicit = candidate_directories(None, tmp_path, {SPILL_DIR_ENV: "/srv/spill"})
    assert (from_env, explicit) == ([Path("/srv/spill")], True)
    automatic, explicit = candidate_directories(None, tmp_path, {})
    assert not explicit
    if os.geteuid() == 0:
        assert automatic[0] == Path("/run/upkeep")
    assert Path("/dev/shm") / f"upkeep-{os.geteuid()}" in automatic  # noqa: S108 - a name, not a file


def test_another_file_system_than_the_store_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shm = Path("/dev/shm")  # noqa: S108 - a private directory inside it, removed below
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        cannot_run("no /dev/shm on a file system of its own")
    other = shm / f"upkeep-test-{os.getpid()}"
    same = tmp_path / "same"
    monkeypatch.setattr(
        spill_module, "candidate_directories", lambda *_args, **_kwargs: ([same, other], False)
    )
    spill = Spill.open("sqlite:///store/upkeep.db", tmp_path)
    try:
        assert spill.location.startswith(str(other))
    finally:
        spill.close()
        for leftover in other.iterdir():
            leftover.unlink()
        other.rmdir()


def test_without_a_usable_directory_the_spill_lives_in_memory(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("a file where the spill directory should be\n")
    spill = Spill.open("sqlite:///store/upkeep.db", tmp_path, "not-a-dir")
    try:
        assert spill.location == MEMORY and spill.in_memory
        episode = spill.begin("the store is full", None)
        assert spill.episode() == episode
        moment = datetime.now(UTC)
        written = spill.store.write_results(
            [CheckResult("c", "t", "p", Status.CRITICAL, {}, "down", 1.0, moment)]
        )
        assert written == 1 and spill.store.count_results() == 1
    finally:
        spill.close()
