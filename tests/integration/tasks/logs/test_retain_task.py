"""logs.retain: per-class retention, verified copies to a second store, nothing else touched."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from upkeep.probes.logs import LogsTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.logs.retain import LogsRetain, RetainParams

DAY = 86400.0
CLASSES = [
    {"match": "error*", "keep": "90d"},
    {"match": "security*", "keep": "1y"},
    {"match": "*", "keep": "30d", "keep_count": 3},
]
# Archives here 30 days, their copies in the second store a year (seed 001: 30 days in
# CloudWatch, 90 days in S3): an archive is deleted here only once its copy is proven.
ARCHIVED = [{"match": "*", "keep": "30d", "archive_keep": "1y"}]


def _archive(directory: Path, log: str, days_old: float, index: int = 0) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() - days_old * DAY))
    path = directory / f"{log}-{stamp}{'.' + str(index) if index else ''}.zst"
    path.write_bytes(f"{log} {days_old}".encode())
    moment = time.time() - days_old * DAY
    os.utime(path, (moment, moment))
    return path


def _target(directory: Path) -> LogsTarget:
    return LogsTarget(kind="logs", path=str(directory))


async def test_each_class_keeps_its_own_period_and_nothing_else_is_touched(
    tmp_path: Path, task_context: TaskContext
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old_app = _archive(logs, "app.log", 40)
    recent_app = _archive(logs, "app.log", 10)
    old_error = _archive(logs, "error.log", 100)
    kept_error = _archive(logs, "error.log", 60)
    kept_security = _archive(logs, "security.log", 200)
    live = logs / "app.log"
    live.write_bytes(b"live")
    foreign = logs / "notes-20200101-000000.txt"
    foreign.write_bytes(b"not an archive name")
    elsewhere = tmp_path / "elsewhere.zst"
    elsewhere.write_bytes(b"x")
    link = logs / "app.log-20000101-000000.zst"
    link.symlink_to(elsewhere)
    params = RetainParams.model_validate({"classes": CLASSES})
    plan = await LogsRetain().plan(_target(logs), params, task_context)
    assert sorted(Path(c.subject).name for c in plan.changes if c.action == "delete") == sorted(
        [old_app.name, old_error.name]
    )
    assert old_app.exists()  # the dry run deleted nothing
    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert outcome.figures["deleted"] == 2
    assert not old_app.exists() and not old_error.exists()
    for path in (recent_app, kept_error, kept_security, live, foreign, elsewhere):
        assert path.exists()
    assert link.is_symlink()


async def test_keep_count_keeps_the_newest(tmp_path: Path, task_context: TaskContext) -> None:
    archives = [
        _archive(tmp_path, "app.log", days, index) for index, days in enumerate([5, 4, 3, 2, 1])
    ]
    params = RetainParams.model_validate({"classes": CLASSES})
    await LogsRetain().run(_target(tmp_path), params, task_context)
    assert [path.exists() for path in archives] == [False, False, True, True, True]


async def test_archives_are_deleted_only_once_their_copy_is_proven(
    tmp_path: Path, task_context: TaskContext
) -> None:
    logs, store = tmp_path / "logs", tmp_path / "second-store"
    logs.mkdir()
    old = _archive(logs, "app.log", 40)
    older = _archive(logs, "app.log", 50)
    recent = _archive(logs, "app.log", 1)
    params = RetainParams.model_validate({"classes": ARCHIVED, "archive_to": str(store)})
    assert LogsRetain().validate(_target(logs), params) == []
    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert outcome.figures["copied"] == 3 and outcome.figures["deleted"] == 2
    assert not old.exists() and not older.exists() and recent.exists()
    # The copies outlive the archives here, by archive_keep.
    assert sorted(path.name for path in store.iterdir()) == sorted(
        [old.name, older.name, recent.name]
    )
    assert outcome.figures["deleted_copies"] == 0
    assert not list(store.glob(".upkeep-tmp-*"))
    # A different file under an archive's name in the second store (damaged, or another
    # log's archive of the same name) is never overwritten: the local archive stays.
    doomed = _archive(logs, "app.log", 45)
    (store / doomed.name).write_bytes(b"damaged")
    with pytest.raises(TaskFailed, match=f"a different {doomed.name} is already in"):
        await LogsRetain().run(_target(logs), params, task_context)
    assert doomed.exists() and (store / doomed.name).read_bytes() == b"damaged"
    (store / doomed.name).unlink()  # the operator sorts it out
    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert not doomed.exists() and (store / doomed.name).read_bytes() == b"app.log 45"
    assert outcome.figures["deleted"] == 1 and outcome.figures["deleted_copies"] == 0
    assert (store / recent.name).read_bytes() == b"app.log 1"


async def test_two_logs_with_one_archive_name_never_overwrite_each_others_copy(
    tmp_path: Path, task_context: TaskContext
) -> None:
    site_a, site_b, store = tmp_path / "a", tmp_path / "b", tmp_path / "store"
    site_a.mkdir()
    site_b.mkdir()
    first = _archive(site_a, "access.log", 10)
    second = site_b / first.name  # rotated in the same second on another site
    second.write_bytes(b"site b's own lines")
    os.utime(second, (first.stat().st_mtime, first.stat().st_mtime))
    params = RetainParams.model_validate({"classes": CLASSES, "archive_to": str(store)})
    await LogsRetain().run(_target(site_a), params, task_context)
    with pytest.raises(TaskFailed, match="kept locally"):
        await LogsRetain().run(_target(site_b), params, task_context)
    assert second.read_bytes() == b"site b's own lines"
    assert (store / first.name).read_bytes() == b"access.log 10"


async def test_a_second_store_that_leads_back_to_the_log_directory_proves_nothing(
    tmp_path: Path, task_context: TaskContext
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    old = _archive(logs, "app.log", 40)
    looped = tmp_path / "looped"
    looped.symlink_to(logs)
    params = RetainParams.model_validate({"classes": ARCHIVED, "archive_to": str(looped)})
    with pytest.raises(TaskFailed, match="not a second copy"):
        await LogsRetain().run(_target(logs), params, task_context)
    assert old.exists()


def test_a_relative_or_same_archive_directory_is_refused(tmp_path: Path) -> None:
    relative = RetainParams.model_validate({"classes": CLASSES, "archive_to": "backup"})
    same = RetainParams.model_validate({"classes": CLASSES, "archive_to": str(tmp_path)})
    assert LogsRetain().validate(_target(tmp_path), relative) == [
        "a local destination must be an absolute directory"
    ]
    assert LogsRetain().validate(_target(tmp_path), same) == [
        "archive_to must not be the log directory itself"
    ]


async def test_the_second_store_is_kept_by_the_same_classes(
    tmp_path: Path, task_context: TaskContext
) -> None:
    logs, store = tmp_path / "logs", tmp_path / "second-store"
    logs.mkdir()
    store.mkdir()
    params = RetainParams.model_validate({"classes": CLASSES, "archive_to": str(store)})
    # Copies an earlier run left behind (their originals deleted long ago): the error class
    # keeps 90 days, the default class 30; another host's recent copy in a shared store
    # is not this directory's to count.
    left = {
        "error.log": _archive(store, "error.log", 120),
        "error-recent": _archive(store, "error.log", 60),
        "app.log": _archive(store, "app.log", 45),
        "other-host": _archive(store, "app.log", 2, index=7),
        # Another target's log (its pattern is not ours) is judged by its own classes.
        "other-target": _archive(store, "worker.out", 400),
        "foreign": store / "notes.txt",
    }
    left["foreign"].write_text("not an archive")
    mine = [_archive(logs, "app.log", days, index) for index, days in enumerate([6, 5, 4, 3], 1)]
    plan = await LogsRetain().plan(_target(logs), params, task_context)
    planned = sorted(c.subject for c in plan.changes if c.action == "delete")
    # The oldest of ours is past keep_count: with no archive_keep its copy would be past
    # retention too, so it is deleted here without being copied first.
    assert planned == sorted([left["error.log"].name, left["app.log"].name, str(mine[0])])
    assert mine[0].name not in {
        c.subject.rsplit("/", 1)[-1] for c in plan.changes if c.action == "copy"
    }
    outcome = await LogsRetain().run(_target(logs), params, task_context)
    assert outcome.figures["deleted"] == 1 and outcome.figures["deleted_copies"] == 2
    assert outcome.figures["copied"] == 3
    assert sorted(path.name for path in store.iterdir()) == sorted(
        [left["error-recent"].name, left["other-host"].name, left["other-target"].name]
        + ["notes.txt"]
        + [path.name for path in mine[1:]]
    )


async def test_an_archive_past_retention_everywhere_goes_with_its_copy_and_is_not_copied(
    tmp_path: Path, task_context: TaskContext
) -> None:
    """Without archive_keep a copy lives as long as its archive here; with it, an archive
    past archive_keep is deleted here without being copied, and its old copy goes too."""
    logs, store = tmp_path / "logs", tmp_path / "second-store"
    logs.mkdir()
    expired, kept = _archive(logs, "app.log", 40), _archive(logs, "app.log", 2)
    store.mkdir()
    (store / expired.name).write_bytes(expired.read_bytes())  # copied by an earlier run
    plain = RetainParams.model_validate(
        {"classes": [{"match": "*", "keep": "30d"}], "archive_to": str(store)}
    )
    outcome = await LogsRetain().run(_target(logs), plain, task_context)
    assert not expired.exists() and not (store / expired.name).exists()
    assert outcome.figures == {
        "archives": 2,
        "copied": 1,
        "deleted": 1,
        "kept_unproven": 0,
        "deleted_copies": 1,
    }
    ancient = _archive(logs, "app.log", 400)
    archived = RetainParams.model_validate({"classes": ARCHIVED, "archive_to": str(store)})
    outcome = await LogsRetain().run(_target(logs), archived, task_context)
    assert not ancient.exists() and not (store / ancient.name).exists()
    assert outcome.figures["copied"] == 0 and outcome.figures["deleted"] == 1
    assert sorted(path.name for path in store.iterdir()) == [kept.name]


def test_archive_keep_needs_archive_to_and_is_not_shorter_than_keep(tmp_path: Path) -> None:
    alone = RetainParams.model_validate({"classes": ARCHIVED})
    shorter = RetainParams.model_validate(
        {
            "classes": [{"match": "*", "keep": "30d", "archive_keep": "7d"}],
            "archive_to": str(tmp_path / "store"),
        }
    )
    assert LogsRetain().validate(_target(tmp_path), alone) == [
        "classes[0].archive_keep needs archive_to"
    ]
    assert LogsRetain().validate(_target(tmp_path), shorter) == [
        "classes[0].archive_keep (7d) is shorter than keep (30d): the copy would go first"
    ]
