"""``Daemon._reload`` off the event loop: whatever loading does, the running config stays,
the reason is logged and the reload counts as rejected; the loop keeps turning meanwhile.

The end-to-end attack (real files, a real daemon, SIGHUP) is in
``tests/integration/engine/test_daemon.py``; these cover what a file cannot provoke on
demand: an unexpected exception in the loader, a load that hangs, a stop during a load.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from tests.helpers import load_text
from upkeep.config import loader
from upkeep.config.loader import LoadedConfig
from upkeep.serve.daemon import Daemon

CONFIG = "targets:\n  box: {kind: host}\nchecks:\n  disk: {target: box, probe: disk}\n"


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    return Daemon(load_text(tmp_path, CONFIG))


def rejected(daemon: Daemon) -> float:
    value = daemon.metrics.registry.get_sample_value(
        "upkeep_config_reloads_total", {"outcome": "rejected"}
    )
    return value or 0.0


async def test_an_unexpected_exception_in_loading_keeps_the_running_config(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    running = daemon.loaded

    def broken(*_: object, **__: object) -> LoadedConfig:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(loader, "load_config", broken)
    with caplog.at_level(logging.ERROR):
        assert await daemon._reload(asyncio.Event()) is False
    assert daemon.loaded is running
    assert rejected(daemon) == 1
    assert "config reload rejected, keeping the running config" in caplog.text
    assert "unexpected RecursionError: maximum recursion depth exceeded" in caplog.text


async def test_a_load_that_hangs_is_given_up_and_the_loop_keeps_turning(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    running = daemon.loaded
    release = threading.Event()

    def hangs(*_: object, **__: object) -> LoadedConfig:
        release.wait(10)  # a read from a hung network mount
        return running

    monkeypatch.setattr(loader, "load_config", hangs)
    daemon.reload_timeout_s = 0.5
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(ticking())
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        assert await daemon._reload(asyncio.Event()) is False
    ticker.cancel()
    release.set()
    assert 0.4 < time.monotonic() - started < 2.0
    assert ticks > 20  # the event loop ran all along
    assert daemon.loaded is running and rejected(daemon) == 1
    assert "took longer than 0.5s" in caplog.text


async def test_a_stop_during_a_load_abandons_it(
    daemon: Daemon, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    running = daemon.loaded
    release = threading.Event()

    def slow(*_: object, **__: object) -> LoadedConfig:
        release.wait(10)
        return running

    monkeypatch.setattr(loader, "load_config", slow)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, stop.set)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        assert await daemon._reload(stop) is False
    release.set()
    assert time.monotonic() - started < 2.0
    assert daemon.loaded is running
    assert "config reload abandoned: the daemon is stopping" in caplog.text


async def test_a_valid_file_is_applied(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        CONFIG + "  load: {target: box, probe: load}\n", encoding="utf-8"
    )
    assert await daemon._reload(asyncio.Event()) is True
    assert set(daemon.loaded.checks) == {"disk", "load"}
    assert (
        daemon.metrics.registry.get_sample_value(
            "upkeep_config_reloads_total", {"outcome": "applied"}
        )
        == 1
    )


class StandInScheduler:
    """Stands in for a Scheduler: records that it was stopped, runs until then."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.stopped = asyncio.Event()
        self.idle = True

    def stop(self) -> None:
        self.stopped.set()

    async def run(self) -> None:
        await self.stopped.wait()


async def test_a_schedule_that_cannot_start_on_the_new_config_falls_back_to_the_previous(
    daemon: Daemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    previous = daemon.loaded
    built: list[StandInScheduler] = []

    def new_scheduler(_http: object) -> StandInScheduler:
        if daemon.loaded is not previous:
            raise RuntimeError("cannot schedule this")
        built.append(StandInScheduler(daemon.loaded))
        return built[-1]

    monkeypatch.setattr(daemon, "_new_scheduler", new_scheduler)
    old = new_scheduler(None)
    old_task = asyncio.create_task(old.run())
    (tmp_path / "upkeep.yaml").write_text(
        CONFIG + "  load: {target: box, probe: load}\n", encoding="utf-8"
    )
    with caplog.at_level(logging.ERROR):
        scheduler, task = await daemon._reload_schedule(
            cast(Any, old), old_task, cast(Any, None), asyncio.Event()
        )
    assert old.stopped.is_set() and old_task.done()
    # The daemon keeps the stand-in its (monkeypatched) factory built on the previous config.
    assert cast(object, scheduler) is built[-1] and built[-1].loaded is previous
    assert daemon.loaded is previous
    assert "back to the previous config" in caplog.text and "cannot schedule this" in caplog.text
    scheduler.stop()
    await task
