"""A one-shot command waits for the grouped notices it queued, and only for those: a
daemon's pending notices sharing the store are delivered when due, never waited for."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from tests.support.receivers import WebhookReceiver, free_port
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.pipeline import Pipeline
from upkeep.notify.message import Notification
from upkeep.store.outbox import OutboxStatus
from upkeep.store.store import Store

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class SteppingClock:
    """A clock whose sleeps return at once, moving it on by what they asked: a test sees
    every wait a command makes, and takes no real time for it."""

    def __init__(self) -> None:
        self.moment = START
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return (self.moment - START).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.moment += timedelta(seconds=max(seconds, 0.0))

    async def sleep_until(self, moment: datetime) -> None:
        await self.sleep((moment - self.moment).total_seconds())

    async def wait(self, *events: object, timeout: float) -> bool:
        del events
        await self.sleep(timeout)
        return False


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as started:
        yield started


def _config(tmp_path: Path, receiver: WebhookReceiver) -> str:
    return f"""\
targets:
  closed: {{kind: tcp, host: 127.0.0.1, port: {free_port()}}}
checks:
  gate-p1: {{target: closed, severity: P1}}
channels:
  hook: {receiver.url()}
routes:
  - {{notify: [hook], group_wait: 20s}}
"""


def _daemon_notice(store: Store, due: datetime) -> None:
    """Queue a grouped notice as a daemon sharing the store would: through its own Store."""
    notice = Notification(
        key="daemon-a1-r0-n1-hook",
        channel="hook",
        kind="firing",
        group_key="daemon-group",
        title="[P3] FIRING the daemon's check",
        body="queued by the daemon",
        level="failure",
        severity="P3",
    )
    store.outbox.enqueue([notice], START, deliver_after=due)


def _failing(clock: SteppingClock) -> CheckResult:
    return CheckResult(
        check="gate-p1",
        target="closed",
        probe="tcp",
        status=Status.CRITICAL,
        metrics={},
        message="connection refused",
        duration_ms=1.0,
        at=clock.now(),
        severity="P1",
    )


def test_a_command_does_not_wait_for_the_daemons_grouped_notice(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    # `upkeep check` while the daemon ran waited up to 30 s for the daemon's grouped
    # notices and sent them itself.
    loaded = load_text(tmp_path, _config(tmp_path, receiver))
    daemon = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    command = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    clock = SteppingClock()
    pipeline = Pipeline(loaded, command, clock=clock)
    try:
        _daemon_notice(daemon, START + timedelta(seconds=10))
        assert pipeline.tick_and_deliver() == []
        assert clock.sleeps == []
        assert receiver.deliveries == []
        (waiting,) = command.outbox.list_rows(status=OutboxStatus.PENDING)
        assert waiting.key == "daemon-a1-r0-n1-hook"
    finally:
        pipeline.close()
        command.close()
        daemon.close()


def test_a_command_waits_for_its_own_notice_and_delivers_whatever_is_due_meanwhile(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    loaded = load_text(tmp_path, _config(tmp_path, receiver))
    daemon = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    command = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    clock = SteppingClock()
    pipeline = Pipeline(loaded, command, clock=clock)
    try:
        _daemon_notice(daemon, START + timedelta(seconds=10))
        settled = pipeline.settle([_failing(clock)])
        assert settled.problems == []
        # One wait, for its own notice's group_wait; the daemon's, due before it, goes
        # out in the same round as before.
        assert clock.sleeps == [20.0]
        titles = sorted(str(delivery.json()["title"]) for delivery in receiver.deliveries)
        assert len(titles) == 2, titles
        assert titles[0].startswith("[P1] FIRING gate-p1")
        assert titles[1] == "[P3] FIRING the daemon's check"
        assert command.outbox.list_rows(status=OutboxStatus.PENDING) == []
    finally:
        pipeline.close()
        command.close()
        daemon.close()
