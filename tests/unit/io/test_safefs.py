"""upkeep.io.safefs against what a local user who can write a directory can plant there.

Every test runs twice: with ``openat2`` (RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH |
RESOLVE_NO_XDEV) and with the component-by-component fallback for kernels without it.
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.mounts import bind_mount
from upkeep.io import safefs
from upkeep.io.safefs import (
    TEMP_PREFIX,
    Directory,
    Identity,
    UnsafeFileError,
    glob_walk,
    open_regular,
    read_regular,
    rename_noreplace,
)


@pytest.fixture(params=["openat2", "by-parts"], autouse=True)
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "by-parts":
        monkeypatch.setattr(safefs, "_openat2_works", lambda: False)
    else:
        assert safefs._openat2_works(), "this kernel should have openat2 (Linux 5.6+)"
    return str(request.param)


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Directory]:
    """A directory others could write, opened the way upkeep opens a configured one."""
    root = tmp_path / "place"
    root.mkdir()
    with Directory.open(root) as directory:
        yield directory


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file outside the place that nothing may read, change or delete through it."""
    path = tmp_path / "victim"
    path.write_bytes(b"root's secret\n")
    path.chmod(0o600)
    return path


def test_a_link_as_the_file_is_refused_not_followed(place: Directory, victim: Path) -> None:
    (place.path / "app.log").symlink_to(victim)
    with pytest.raises(UnsafeFileError, match="symbolic link"):
        place.open_file("app.log", os.O_RDWR)
    with pytest.raises(UnsafeFileError):
        open_regular(place.path / "app.log")
    assert victim.read_bytes() == b"root's secret\n"


def test_a_link_as_a_directory_on_the_way_is_refused(place: Directory, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.log").write_bytes(b"outside\n")
    (place.path / "evil").symlink_to(elsewhere)
    with pytest.raises(UnsafeFileError):
        place.open_file("evil/x.log")
    with pytest.raises(UnsafeFileError):
        place.descend("evil")
    with pytest.raises(UnsafeFileError):
        place.make_path("evil/archive")
    assert not (elsewhere / "archive").exists()


def test_dot_dot_and_absolute_paths_are_refused(place: Directory) -> None:
    (place.path / "sub").mkdir()
    for bad in ("../place/x", "sub/../../x", "/etc/passwd", "", "sub//x"):
        with pytest.raises(UnsafeFileError):
            place.open_file(bad)


def test_a_fifo_in_place_of_a_file_neither_hangs_nor_opens(place: Directory) -> None:
    os.mkfifo(place.path / "app.log")
    started = time.monotonic()
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        place.open_file("app.log")
    with pytest.raises(UnsafeFileError):
        read_regular(place.path / "app.log", limit=100)
    assert time.monotonic() - started < 1


def test_another_inode_than_the_listed_one_is_refused(place: Directory) -> None:
    (place.path / "a.log").write_bytes(b"a\n")
    listed = place.entries()[0]
    # Moved aside, not deleted: a deleted file's inode number may be reused at once.
    (place.path / "a.log").rename(place.path / "a.old")
    (place.path / "a.log").write_bytes(b"planted\n")
    with pytest.raises(UnsafeFileError, match="replaced since it was listed"):
        place.open_file("a.log", expect=listed.identity)
    assert not place.unlink("a.log", expect=listed.identity)
    assert (place.path / "a.log").read_bytes() == b"planted\n"


def test_a_hard_linked_file_is_refused_where_a_single_link_is_required(
    place: Directory, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"another file's content\n")
    os.link(outside, place.path / "app.log")
    with pytest.raises(UnsafeFileError, match="hard links"):
        place.open_file("app.log", os.O_RDWR, single_link=True)
    os.close(place.open_file("app.log"))  # reading it as itself is fine


def test_temporaries_are_exclusive_unguessable_and_never_follow_a_planted_link(
    place: Directory, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [place.create_temporary("app.log").name for _ in range(50)]
    assert len(set(names)) == 50
    assert all(name.startswith(f"{TEMP_PREFIX}app.log.") for name in names)
    assert all(len(name.rsplit(".", 1)[1]) == 32 for name in names)
    # Even a guessed name is never written through: O_EXCL refuses it, a new one is drawn.
    guesses = iter(["0" * 32, "1" * 32])
    monkeypatch.setattr(secrets, "token_hex", lambda _n: next(guesses))  # safefs's names
    (place.path / f"{TEMP_PREFIX}state.{'0' * 32}").symlink_to(victim)
    temporary = place.create_temporary("state")
    temporary.write(b"upkeep's data")
    temporary.commit("state")
    assert victim.read_bytes() == b"root's secret\n"
    assert (place.path / "state").read_bytes() == b"upkeep's data"
    assert stat.S_IMODE((place.path / "state").stat().st_mode) == 0o600


def test_write_atomic_replaces_a_planted_link_instead_of_writing_through_it(
    place: Directory, victim: Path
) -> None:
    (place.path / "state.json").symlink_to(victim)
    place.write_atomic("state.json", b"{}")
    assert victim.read_bytes() == b"root's secret\n"
    assert not (place.path / "state.json").is_symlink()
    assert (place.path / "state.json").read_bytes() == b"{}"


def test_a_commit_never_replaces_an_existing_name(place: Directory) -> None:
    (place.path / "app.log-1.zst").write_bytes(b"someone else's")
    temporary = place.create_temporary("app.log")
    temporary.write(b"ours")
    with pytest.raises(FileExistsError):
        temporary.commit("app.log-1.zst")
    temporary.abort()
    assert (place.path / "app.log-1.zst").read_bytes() == b"someone else's"
    assert [entry.name for entry in place.entries()] == ["app.log-1.zst"]
    (place.path / "b").write_bytes(b"b")
    with pytest.raises(FileExistsError):
        rename_noreplace(place.fd, "b", place.fd, "app.log-1.zst")


def test_copies_take_the_source_s_mode_and_owner_not_the_umask(place: Directory) -> None:
    (place.path / "secret.log").write_bytes(b"x")
    os.chmod(place.path / "secret.log", 0o600)
    os.chown(place.path / "secret.log", 65534, 65534)
    source = os.stat(place.path / "secret.log")
    place.write_atomic("copy", b"x", like=source)
    info = os.stat(place.path / "copy")
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    os.chmod(place.path / "secret.log", 0o4755)  # noqa: S103 - set-id bits are never copied
    place.write_atomic("copy2", b"x", like=os.stat(place.path / "secret.log"))
    assert stat.S_IMODE(os.stat(place.path / "copy2").st_mode) == 0o755


def test_walks_skip_links_and_report_them(place: Directory, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.log").write_bytes(b"outside\n")
    (place.path / "evil").symlink_to(elsewhere)
    (place.path / "a").mkdir()
    (place.path / "a" / "app.log").write_bytes(b"in\n")
    (place.path / "a" / "link.log").symlink_to(elsewhere / "x.log")
    walk = glob_walk(place, "*/*.log")
    assert [found.relative for found in walk.files] == ["a/app.log"]
    assert ("a/link.log", "symbolic link, not followed") in walk.skipped
    deep = glob_walk(place, "**/*.log")
    assert [found.relative for found in deep.files] == ["a/app.log"]


def test_a_walk_stops_at_a_depth_limit_without_running_out_of_descriptors(
    place: Directory,
) -> None:
    current = place.path
    for _ in range(safefs.MAX_WALK_DEPTH + 10):
        current = current / "d"
        current.mkdir()
    (current / "deep.log").write_bytes(b"x")
    walk = glob_walk(place, "**/*.log")
    assert walk.files == []
    assert any("deeper than" in reason for _, reason in walk.skipped)


def test_mounts_are_not_crossed_unless_allowed(place: Directory, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.log").write_bytes(b"another filesystem's file\n")
    (place.path / "mnt").mkdir()
    with bind_mount(elsewhere, place.path / "mnt"):
        assert place.is_mount_point("mnt")
        with pytest.raises(UnsafeFileError, match="another mount"):
            place.open_file("mnt/data.log")
        with pytest.raises(UnsafeFileError):
            place.child("mnt")
        walk = glob_walk(place, "**/*.log")
        assert walk.files == []
        assert walk.skipped and walk.skipped[0][0] == "mnt"
        with Directory.open(place.path, cross_mounts=True) as crossing:
            os.close(crossing.open_file("mnt/data.log"))


def test_identity_is_checked_between_listing_and_unlinking_under_a_race(
    place: Directory,
) -> None:
    """A swapper replacing the file with a link as fast as it can never gets a link's
    target deleted: unlink removes names, and only the listed inode."""
    (place.path / "old.log").write_bytes(b"old\n")
    listed = Identity.of(os.lstat(place.path / "old.log"))
    target = place.path.parent / "target"
    target.write_bytes(b"keep\n")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            try:
                os.unlink(place.path / "old.log")
                os.symlink(target, place.path / "old.log")
            except OSError:
                pass

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        place.unlink("old.log", expect=listed)
    finally:
        stop.set()
        swapper.join()
    assert target.read_bytes() == b"keep\n"
