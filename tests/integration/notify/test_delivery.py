"""Delivery end to end, to real receivers on 127.0.0.1: a webhook that is down for a while
gets everything exactly once when it comes back, e-mail through SMTP, grouped batches,
repeats dropped, failures retried, a removed channel given up, and no secret stored."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from tests.helpers import load_text
from tests.support.receivers import SmtpReceiver, WebhookReceiver, plain_text
from upkeep.alerting.delivery import Dispatcher, deliver_now
from upkeep.core.redaction import Redactor
from upkeep.notify.message import Notification
from upkeep.store.outbox import DeliveryConfig, OutboxStatus, batch_id
from upkeep.store.schema import outbox
from upkeep.store.store import Store

FAST = DeliveryConfig(
    timeout=timedelta(seconds=2),
    backoff=timedelta(seconds=0.2),
    max_backoff=timedelta(seconds=1),
    give_up_after=timedelta(hours=1),
)


def note(
    key: str, channel: str = "hook", group: str | None = None, *, level: str = "failure"
) -> Notification:
    return Notification(
        key=key,
        channel=channel,
        kind="firing",
        group_key=group or key,
        title=f"{key} is down",
        body=f"check {key} failed",
        level=level,
        severity="P2",
    )


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_receiver_down_for_a_while_gets_everything_exactly_once(store: Store) -> None:
    receiver = WebhookReceiver()  # its port is closed: connections are refused
    store.outbox.enqueue([note(f"n{i:02}") for i in range(20)], now())
    dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, FAST, Redactor(), "d1")
    stop = asyncio.Event()
    loop = asyncio.create_task(dispatcher.run(stop, poll_s=0.05))
    try:
        # Several failed rounds, backing off. A loaded machine may take longer than usual to
        # try all twenty, so wait for that (bounded) rather than for a fixed time.
        deadline = time.monotonic() + 20
        while not all(row.attempts >= 2 for row in store.outbox.list_rows()):
            assert time.monotonic() < deadline, store.outbox.list_rows()
            await asyncio.sleep(0.05)
        assert receiver.deliveries == []
        # Pending, or claimed by a round in flight right now: none sent, each refused.
        failing = [row for row in store.outbox.list_rows() if row.status in ("pending", "sending")]
        assert len(failing) == 20 and all(row.attempts >= 2 for row in failing)
        assert all(
            "Connection refused" in (row.last_error or "") for row in failing if row.last_error
        )
        assert sum(1 for row in failing if row.last_error) >= 10
        receiver.start()  # the same port, now open
        reopened = time.monotonic()
        assert await receiver.until(lambda r: len(r.keys()) == 20, timeout_s=10)
        recovered = time.monotonic() - reopened
        await asyncio.sleep(0.5)  # time for a duplicate to show up, were there one
    finally:
        stop.set()
        await loop
        receiver.stop()
    assert len(receiver.deliveries) == 20
    assert receiver.keys() == {f"n{i:02}": 1 for i in range(20)}
    assert {d.headers["x-upkeep-key"] for d in receiver.deliveries} == set(receiver.keys())
    assert store.outbox.counts() == {"pending": 0, "sending": 0, "sent": 20, "dead": 0, "muted": 0}
    # Backoff is capped at 1 s: everything is through within a few seconds of the reopening.
    assert recovered < FAST.max_backoff.total_seconds() + 4, f"took {recovered:.1f} s"


async def test_email_through_a_real_smtp_server(store: Store) -> None:
    with SmtpReceiver() as smtp:
        store.outbox.enqueue([note("mail-1", channel="mail", level="warning")], now())
        dispatcher = Dispatcher(store.outbox, {"mail": smtp.url()}, FAST, Redactor(), "d1")
        (report,) = await dispatcher.deliver_due()
    assert report.ok, report.error
    (message,) = smtp.messages
    assert message["Subject"] == "mail-1 is down"
    assert message["To"] == "ops@example.com"
    assert message["Idempotency-Key"] == "mail-1"
    text = plain_text(message)
    assert "check mail-1 failed" in text
    assert text.rstrip().endswith("ref: mail-1")


async def test_a_group_arrives_as_one_message(store: Store) -> None:
    store.outbox.enqueue(
        [
            note("g1", group="db", level="warning"),
            note("g2", group="db"),
            note("g3", group="db", level="success"),
        ],
        now(),
    )
    with WebhookReceiver() as receiver:
        dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, FAST, Redactor(), "d1")
        (report,) = await dispatcher.deliver_due()
    assert report.ok and report.notifications == 3
    (delivery,) = receiver.deliveries
    assert delivery.key == batch_id(["g1", "g2", "g3"]) == report.key
    payload = delivery.json()
    assert payload["title"] == "3 alerts: g1 is down; g2 is down; g3 is down"
    assert payload["type"] == "failure"  # the most severe of the three
    for key in ("g1", "g2", "g3"):
        assert f"{key} is down\ncheck {key} failed" in payload["message"]
    assert "ref:" not in payload["message"]  # a webhook gets the key in its headers only
    assert {row.batch for row in store.outbox.list_rows()} == {report.batch}


async def test_the_same_notification_enqueued_twice_is_delivered_once(store: Store) -> None:
    with WebhookReceiver() as receiver:
        dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, FAST, Redactor(), "d1")
        assert store.outbox.enqueue([note("twice")], now()) == 1
        await dispatcher.deliver_due()
        assert store.outbox.enqueue([note("twice")], now()) == 0
        assert await dispatcher.deliver_due() == []
    assert receiver.keys() == {"twice": 1}


async def test_levels_reach_the_service(store: Store) -> None:
    levels = ("failure", "warning", "success", "info")
    store.outbox.enqueue([note(level, level=level) for level in levels], now())
    with WebhookReceiver() as receiver:
        dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, FAST, Redactor(), "d1")
        await dispatcher.deliver_due()
    assert {d.key: d.json()["type"] for d in receiver.deliveries} == {lv: lv for lv in levels}


async def test_a_refused_message_is_retried_and_no_secret_is_stored(store: Store) -> None:
    secret = "Hook-Secret-4242"
    with WebhookReceiver(status=503) as receiver:
        url = f"json://upkeep:{secret}@127.0.0.1:{receiver.port}/hook"
        redactor = Redactor()
        redactor.add(url)
        dispatcher = Dispatcher(store.outbox, {"hook": url}, FAST, redactor, "d1")
        store.outbox.enqueue([note("retry")], now())
        (first,) = await dispatcher.deliver_due()
        assert first.status == "pending" and "503" in first.error
        receiver.status = 200
        await asyncio.sleep(0.25)  # the first backoff
        (second,) = await dispatcher.deliver_due()
    assert second.ok
    assert receiver.keys() == {"retry": 2}  # the same key both times: a receiver can dedupe
    (row,) = store.outbox.list_rows()
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None
    with store.engine.connect() as connection:
        stored = repr(connection.execute(select(outbox)).all())
    assert secret not in stored and secret not in first.error


async def test_a_channel_gone_from_the_config_is_given_up(store: Store) -> None:
    store.outbox.enqueue([note("orphan", channel="removed")], now())
    dispatcher = Dispatcher(store.outbox, {}, FAST, Redactor(), "d1")
    (report,) = await dispatcher.deliver_due()
    assert report.status == "dead"
    (row,) = store.outbox.list_rows(status=OutboxStatus.DEAD)
    assert row.last_error == "channel 'removed' is no longer in the config"


async def test_wake_starts_a_delivery_before_the_next_poll(store: Store) -> None:
    with WebhookReceiver() as receiver:
        dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, FAST, Redactor(), "d1")
        stop, wake = asyncio.Event(), asyncio.Event()
        loop = asyncio.create_task(dispatcher.run(stop, wake, poll_s=30))
        await asyncio.sleep(0.2)  # the first (empty) round is over; the next poll is far off
        store.outbox.enqueue([note("woken")], now())
        wake.set()
        try:
            assert await receiver.until(lambda r: r.keys() == {"woken": 1}, timeout_s=5)
        finally:
            stop.set()
            await asyncio.wait_for(loop, 5)


async def test_a_receiver_that_never_answers_costs_the_delivery_timeout(store: Store) -> None:
    hasty = FAST.model_copy(update={"timeout": timedelta(seconds=0.5)})
    with WebhookReceiver(delay_s=3) as receiver:
        dispatcher = Dispatcher(store.outbox, {"hook": receiver.url()}, hasty, Redactor(), "d1")
        store.outbox.enqueue([note("slow")], now())
        started = time.monotonic()
        (report,) = await dispatcher.deliver_due()
        took = time.monotonic() - started
    assert report.status == "pending"
    assert "Read timed out. (read timeout=0.5)" in report.error
    assert took < 2.5, f"a 0.5 s timeout took {took:.1f} s"


def test_deliver_now_sends_what_is_due_from_a_plain_command(store: Store, tmp_path: Path) -> None:
    with WebhookReceiver() as receiver:
        loaded = load_text(tmp_path, f"channels:\n  hook: {receiver.url()}\n")
        store.outbox.enqueue([note("cron-1"), note("cron-2")], now())
        reports = deliver_now(loaded, store)
    assert sorted(r.key for r in reports) == ["cron-1", "cron-2"] and all(r.ok for r in reports)
    assert receiver.keys() == {"cron-1": 1, "cron-2": 1}
