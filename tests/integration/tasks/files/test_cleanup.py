"""files.cleanup against real directory trees with controlled modification times."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.files.cleanup import (
    CleanupParams,
    FilesCleanup,
    delete_listed,
    list_candidates,
    settings_for,
)

DAY_S = 86400.0


def write(path: Path, text: str = "data\n", *, age_days: float = 0.0) -> Path:
    """Given a path, write text to it and set its mtime ``age_days`` into the past."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    age(path, age_days)
    return path


def age(path: Path, days: float) -> None:
    """Set a path's (or a symlink's own) atime and mtime ``days`` into the past."""
    stamp = time.time() - days * DAY_S
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def snapshot(base: Path) -> list[tuple[str, int, int, int]]:
    """Return every entry under base (links not followed): path, mode, size, mtime_ns."""
    entries = []
    for directory, dirs, files in os.walk(base, followlinks=False):
        for name in dirs + files:
            path = Path(directory, name)
            info = path.lstat()
            entries.append((str(path), info.st_mode, info.st_size, info.st_mtime_ns))
    return sorted(entries)


def params(**values: Any) -> CleanupParams:
    return CleanupParams.model_validate(values)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A root with old and new files, matching and not, in the root and a subdirectory."""
    root = tmp_path / "root"
    write(root / "old.log", "old log\n", age_days=10)
    write(root / "new.log", "new log\n", age_days=1)
    write(root / "old.txt", "old text\n", age_days=10)
    write(root / "sub" / "deep.log", "deep\n", age_days=10)
    return root


async def test_plan_lists_each_old_matching_file_and_changes_nothing(
    tree: Path, task_context: TaskContext
) -> None:
    before = snapshot(tree.parent)
    plan = await FilesCleanup().plan(
        None, params(root=str(tree), pattern="*.log", older_than="7d"), task_context
    )
    assert snapshot(tree.parent) == before
    assert plan.predictable
    assert [(change.action, change.subject) for change in plan.changes] == [
        ("delete", str(tree / "old.log"))
    ]
    assert plan.changes[0].detail.startswith("8 B, 10d")
    assert "1 file(s), 8 B" in plan.summary()


async def test_run_deletes_only_old_matching_files_in_the_root(
    tree: Path, task_context: TaskContext
) -> None:
    outcome = await FilesCleanup().run(
        None, params(root=str(tree), pattern="*.log", older_than="7d"), task_context
    )
    assert not (tree / "old.log").exists()
    assert (tree / "new.log").exists()
    assert (tree / "old.txt").exists()
    assert (tree / "sub" / "deep.log").exists()
    assert outcome.figures["files_deleted"] == 1
    assert outcome.figures["bytes_freed"] == len("old log\n")
    assert outcome.figures["skipped"] == 0
    assert [change.subject for change in outcome.changes] == [str(tree / "old.log")]
    assert "deleted 1 file(s), 8 B freed" in outcome.message


async def test_recursive_pattern_without_slash_matches_names_at_any_depth(
    tree: Path, task_context: TaskContext
) -> None:
    outcome = await FilesCleanup().run(
        None,
        params(root=str(tree), pattern="*.log", older_than="7d", recursive=True),
        task_context,
    )
    assert not (tree / "old.log").exists()
    assert not (tree / "sub" / "deep.log").exists()
    assert (tree / "new.log").exists()
    assert outcome.figures["files_deleted"] == 2


async def test_pattern_with_slash_is_matched_against_the_relative_path(
    tmp_path: Path, task_context: TaskContext
) -> None:
    root = tmp_path / "root"
    kept = write(root / "current" / "a.gz", age_days=30)
    gone = write(root / "archive" / "2026" / "11" / "b.gz", age_days=30)
    direct = write(root / "archive" / "c.gz", age_days=30)
    outcome = await FilesCleanup().run(
        None,
        params(root=str(root), pattern="archive/**/*.gz", older_than="7d", recursive=True),
        task_context,
    )
    assert kept.exists()
    assert not gone.exists()
    assert not direct.exists()
    assert outcome.figures["files_deleted"] == 2


async def test_symlinks_are_neither_followed_nor_deleted(
    tmp_path: Path, task_context: TaskContext
) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    secret = write(outside / "secret.log", "keep me\n", age_days=30)
    write(root / "old.log", age_days=30)
    file_link = root / "link.log"
    file_link.symlink_to(secret)
    dir_link = root / "linked-dir"
    dir_link.symlink_to(outside, target_is_directory=True)
    age(file_link, 30)
    age(dir_link, 30)
    outside_before = snapshot(outside)

    outcome = await FilesCleanup().run(
        None,
        params(root=str(root), pattern="*.log", older_than="7d", recursive=True),
        task_context,
    )

    assert snapshot(outside) == outside_before
    assert file_link.is_symlink()
    assert dir_link.is_symlink()
    assert not (root / "old.log").exists()
    assert outcome.figures["files_deleted"] == 1
    assert outcome.figures["skipped"] == 1
    assert "link.log: symbolic link, not followed" in outcome.message


async def test_files_outside_the_root_are_untouched(
    tmp_path: Path, task_context: TaskContext
) -> None:
    root = tmp_path / "logs"
    # A sibling whose name starts with the root's: a prefix check on strings would match it.
    sibling = write(tmp_path / "logs-old" / "a.log", age_days=30)
    parent_file = write(tmp_path / "b.log", age_days=30)
    write(root / "c.log", age_days=30)
    outcome = await FilesCleanup().run(
        None, params(root=str(root), pattern="**", older_than="1d", recursive=True), task_context
    )
    assert sibling.exists()
    assert parent_file.exists()
    assert not (root / "c.log").exists()
    assert outcome.figures["files_deleted"] == 1


async def test_root_given_through_a_symlink_is_cleaned_where_it_points(
    tmp_path: Path, task_context: TaskContext
) -> None:
    real = tmp_path / "real"
    write(real / "old.log", age_days=30)
    link = tmp_path / "root-link"
    link.symlink_to(real, target_is_directory=True)
    outcome = await FilesCleanup().run(
        None, params(root=str(link), pattern="*.log", older_than="1d"), task_context
    )
    assert not (real / "old.log").exists()
    assert link.is_symlink()
    assert outcome.changes[0].subject == str(real / "old.log")


async def test_other_file_types_are_skipped(tmp_path: Path, task_context: TaskContext) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fifo = root / "pipe.log"
    os.mkfifo(fifo)
    age(fifo, 30)
    outcome = await FilesCleanup().run(
        None, params(root=str(root), pattern="*.log", older_than="1d"), task_context
    )
    assert fifo.exists()
    assert outcome.figures == {
        "files_deleted": 0,
        "bytes_freed": 0,
        "skipped": 1,
        "files_vanished": 0,
        "dirs_removed": 0,
    }
    assert "pipe.log: not a regular file" in outcome.message


async def test_a_logs_target_supplies_root_and_pattern(
    tree: Path, task_context: TaskContext
) -> None:
    target = LogsTarget(path=str(tree), pattern="*.txt")
    outcome = await FilesCleanup().run(target, params(older_than="7d"), task_context)
    assert not (tree / "old.txt").exists()
    assert (tree / "old.log").exists()
    assert outcome.figures["files_deleted"] == 1


async def test_step_params_override_the_target(tree: Path, task_context: TaskContext) -> None:
    target = LogsTarget(path=str(tree / "sub"), pattern="*.txt")
    outcome = await FilesCleanup().run(
        target, params(root=str(tree), pattern="*.log", older_than="7d"), task_context
    )
    assert not (tree / "old.log").exists()
    assert (tree / "old.txt").exists()
    assert outcome.figures["files_deleted"] == 1


async def test_missing_root_fails_plan_and_run(tmp_path: Path, task_context: TaskContext) -> None:
    step = params(root=str(tmp_path / "nowhere"), older_than="1d")
    with pytest.raises(TaskFailed, match="does not exist"):
        await FilesCleanup().plan(None, step, task_context)
    with pytest.raises(TaskFailed, match="does not exist"):
        await FilesCleanup().run(None, step, task_context)


async def test_root_that_is_a_file_fails(tree: Path, task_context: TaskContext) -> None:
    with pytest.raises(TaskFailed, match="not a directory"):
        await FilesCleanup().plan(
            None, params(root=str(tree / "old.log"), older_than="1d"), task_context
        )


async def test_the_filesystem_root_is_refused(task_context: TaskContext) -> None:
    # Only the dry run, and with a pattern nothing has: even a bug here deletes nothing.
    with pytest.raises(TaskFailed, match="refusing to clean '/'"):
        await FilesCleanup().plan(
            None,
            params(root="/", pattern="upkeep-no-such-file-*", older_than="1000d"),
            task_context,
        )


async def test_more_matches_than_max_files_deletes_nothing(
    tmp_path: Path, task_context: TaskContext
) -> None:
    root = tmp_path / "root"
    for index in range(5):
        write(root / f"{index}.log", age_days=30)
    before = snapshot(root)
    step = params(root=str(root), older_than="1d", max_files=3)
    with pytest.raises(TaskFailed, match="more than 3 files"):
        await FilesCleanup().plan(None, step, task_context)
    with pytest.raises(TaskFailed, match="refusing to delete any"):
        await FilesCleanup().run(None, step, task_context)
    assert snapshot(root) == before


async def test_remove_empty_dirs_removes_emptied_and_old_empty_dirs_only(
    tmp_path: Path, task_context: TaskContext
) -> None:
    root = tmp_path / "root"
    write(root / "a" / "b" / "old.log", age_days=30)
    write(root / "mixed" / "old.log", age_days=30)
    write(root / "mixed" / "new.log", age_days=0)
    (root / "fresh-empty").mkdir()
    (root / "old-empty").mkdir()
    age(root / "old-empty", 30)
    step = params(root=str(root), older_than="7d", recursive=True, remove_empty_dirs=True)

    plan = await FilesCleanup().plan(None, step, task_context)
    assert [(change.action, change.subject) for change in plan.changes] == [
        ("delete", str(root / "a" / "b" / "old.log")),
        ("delete", str(root / "mixed" / "old.log")),
        ("remove_dir", str(root / "a" / "b")),
        ("remove_dir", str(root / "a")),
        ("remove_dir", str(root / "old-empty")),
    ]

    outcome = await FilesCleanup().run(None, step, task_context)
    assert sorted(path.name for path in root.iterdir()) == ["fresh-empty", "mixed"]
    assert [path.name for path in (root / "mixed").iterdir()] == ["new.log"]
    assert outcome.figures["dirs_removed"] == 3
    assert root.is_dir()


async def test_zero_threshold_deletes_every_matching_file(
    tree: Path, task_context: TaskContext
) -> None:
    outcome = await FilesCleanup().run(
        None, params(root=str(tree), pattern="*.log", older_than="0s"), task_context
    )
    assert not (tree / "new.log").exists()
    assert not (tree / "old.log").exists()
    assert outcome.figures["files_deleted"] == 2


def _settings(root: Path, **values: Any) -> Any:
    return settings_for(None, params(root=str(root), **values))


def test_a_file_vanishing_between_listing_and_deleting_is_counted(tree: Path) -> None:
    settings = _settings(tree, pattern="*", older_than="7d")
    listing = list_candidates(settings, time.time(), time.monotonic() + 10)
    assert [candidate.relative for candidate in listing.files] == ["old.log", "old.txt"]
    (tree / "old.log").unlink()
    done = delete_listed(settings, listing, time.monotonic() + 10)
    assert done.vanished == 1
    assert [candidate.relative for candidate in done.files] == ["old.txt"]
    assert done.errors == []


def test_a_file_replaced_after_listing_is_left_alone(tree: Path) -> None:
    settings = _settings(tree, pattern="*.log", older_than="7d")
    listing = list_candidates(settings, time.time(), time.monotonic() + 10)
    (tree / "old.log").unlink()
    write(tree / "old.log", "a new file under the old name\n", age_days=30)
    done = delete_listed(settings, listing, time.monotonic() + 10)
    assert (tree / "old.log").read_text() == "a new file under the old name\n"
    assert done.skipped == [("old.log", "changed since it was listed")]
    assert done.files == []


def test_a_file_written_to_after_listing_is_left_alone(tree: Path) -> None:
    settings = _settings(tree, pattern="*.log", older_than="7d")
    listing = list_candidates(settings, time.time(), time.monotonic() + 10)
    with (tree / "old.log").open("a") as handle:
        handle.write("appended just now\n")
    done = delete_listed(settings, listing, time.monotonic() + 10)
    assert (tree / "old.log").exists()
    assert done.skipped == [("old.log", "changed since it was listed")]


def test_a_directory_swapped_for_a_link_after_listing_cannot_redirect_deletion(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    write(root / "sub" / "old.log", age_days=30)
    outside = tmp_path / "outside"
    victim = write(outside / "old.log", "must survive\n", age_days=30)
    settings = _settings(root, pattern="*.log", older_than="7d", recursive=True)
    listing = list_candidates(settings, time.time(), time.monotonic() + 10)
    assert [candidate.relative for candidate in listing.files] == ["sub/old.log"]

    (root / "sub").rename(tmp_path / "moved")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    done = delete_listed(settings, listing, time.monotonic() + 10)

    assert victim.read_text() == "must survive\n"
    assert done.files == []
    assert done.skipped[0][0] == "sub/old.log"
    assert done.skipped[0][1].startswith("directory changed since it was listed")


def test_listing_past_its_deadline_fails(tree: Path) -> None:
    settings = _settings(tree, pattern="*", older_than="7d")
    with pytest.raises(TaskFailed, match="did not finish within the step's timeout"):
        list_candidates(settings, time.time(), time.monotonic() - 1)


async def test_a_bind_mount_under_the_root_is_never_emptied_unless_allowed(
    tree: Path, tmp_path: Path, task_context: TaskContext
) -> None:
    """Finding 4 of issue #11: a bind mount under the root was emptied."""
    from tests.support.mounts import bind_mount

    elsewhere = tmp_path / "elsewhere"
    precious = write(elsewhere / "precious.log", "keep\n", age_days=30)
    write(elsewhere / "nested" / "more.log", "keep too\n", age_days=30)
    (tree / "mnt").mkdir()
    with bind_mount(elsewhere, tree / "mnt"):
        wide = params(root=str(tree), pattern="*.log", older_than="7d", recursive=True)
        plan = await FilesCleanup().plan(None, wide, task_context)
        assert "mnt: a mount point, not crossed" in plan.note
        outcome = await FilesCleanup().run(None, wide, task_context)
        assert precious.exists() and (elsewhere / "nested" / "more.log").exists()
        assert not (tree / "old.log").exists() and not (tree / "sub" / "deep.log").exists()
        assert "a mount point, not crossed" in outcome.message
        crossing = params(
            root=str(tree), pattern="*.log", older_than="7d", recursive=True, cross_mounts=True
        )
        await FilesCleanup().run(None, crossing, task_context)
        assert not precious.exists()


def _nest(root: Path, depth: int) -> list[str]:
    """Make ``depth`` directories, each inside the last, below root (through descriptors:
    the path soon passes PATH_MAX); return their names from the top."""
    names = [f"d{level}" for level in range(depth)]
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        deepest = os.open("bottom.log", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.close(deepest)
        old = time.time() - 30 * DAY_S
        os.utime("bottom.log", (old, old), dir_fd=fd)
    finally:
        os.close(fd)
    return names


async def test_a_tree_nested_without_end_is_walked_to_a_bound_not_crashed_on(
    tree: Path, task_context: TaskContext
) -> None:
    """Anyone who can write the root can nest directories thousands deep: the walk goes
    a bounded depth (one descriptor and a few stack frames a level), reports where it
    stopped, and cleans the rest; it neither hits the recursion limit nor runs out of
    descriptors."""
    from upkeep.io.safefs import MAX_WALK_DEPTH

    names = _nest(tree, 600)  # deeper than the stack allowed the old recursive walk
    write(tree / "d0" / "d1" / "shallow.log", "old\n", age_days=10)
    wide = params(root=str(tree), pattern="*.log", older_than="7d", recursive=True)
    try:
        outcome = await FilesCleanup().run(None, wide, task_context)
    finally:
        bottom_left = _exists_below(tree, [*names, "bottom.log"])
        _unnest(tree, names)
    assert not (tree / "d0" / "d1" / "shallow.log").exists()
    assert not (tree / "old.log").exists()
    deepest = "/".join(names[: MAX_WALK_DEPTH + 1])
    assert f"{deepest}: deeper than {MAX_WALK_DEPTH} levels" in outcome.message
    assert outcome.figures["files_deleted"] == 3  # old.log, sub/deep.log, d0/d1/shallow.log
    assert bottom_left  # beyond the bound: left alone


def _unnest(root: Path, names: list[str]) -> None:
    """Remove what ``_nest`` made, deepest first, without recursion."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for name in names:
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        for entry in os.listdir(fds[-1]):
            os.unlink(entry, dir_fd=fds[-1])
        for name, parent in zip(reversed(names), reversed(fds[:-1]), strict=True):
            os.rmdir(name, dir_fd=parent)
    finally:
        for fd in fds:
            os.close(fd)


def _exists_below(root: Path, parts: list[str]) -> bool:
    """Return whether root/parts... exists (through descriptors, past PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        return parts[-1] in os.listdir(fd)
    finally:
        os.close(fd)
