"""The outbox on both backends: idempotent enqueue, claims and leases, the same batch with
the same key after a crash, backoff, giving up, fallback, and two dispatchers at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.integration.notify.conftest import OpenStore
from tests.support.receivers import WebhookReceiver
from upkeep.alerting.delivery import Dispatcher
from upkeep.core.redaction import Redactor
from upkeep.notify.message import Notification
from upkeep.store.outbox import DeliveryConfig, OutboxStatus, batch_id, fallback_key
from upkeep.store.store import Store

T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=1)
DELIVERY = DeliveryConfig(
    timeout=timedelta(seconds=5),
    backoff=timedelta(seconds=5),
    max_backoff=timedelta(seconds=60),
    give_up_after=timedelta(hours=1),
)


def note(
    key: str,
    channel: str = "ops",
    group: str | None = None,
    *,
    alert_id: int | None = None,
    fallback: str | None = None,
    fallback_after: int | None = None,
) -> Notification:
    return Notification(
        key=key,
        channel=channel,
        kind="firing",
        group_key=group or key,
        title=f"title {key}",
        body=f"body {key}",
        level="failure",
        severity="P2",
        alert_id=alert_id,
        fallback=fallback,
        fallback_after=fallback_after,
    )


def statuses(store: Store) -> dict[str, str]:
    return {row.key: row.status for row in store.outbox.list_rows(limit=1000)}


# --- enqueue ------------------------------------------------------------------------------------


def test_enqueue_is_idempotent(store: Store) -> None:
    assert store.outbox.enqueue([note("a"), note("b")], T0) == 2
    assert store.outbox.enqueue([note("a"), note("b"), note("c")], T0) == 1
    assert store.outbox.enqueue([note("d"), note("d")], T0) == 1
    assert store.outbox.enqueue([], T0) == 0
    assert store.outbox.counts() == {"pending": 4, "sending": 0, "sent": 0, "dead": 0, "muted": 0}
    (row,) = [row for row in store.outbox.list_rows() if row.key == "a"]
    assert row.created_at == T0 and row.next_attempt_at == T0
    assert row.title == "title a" and row.level == "failure" and row.severity == "P2"


def test_muted_rows_are_recorded_and_never_claimed(store: Store) -> None:
    assert store.outbox.enqueue([note("m", alert_id=7)], T0, muted_by="window deploy") == 1
    assert store.outbox.claim_due("me", T0 + timedelta(days=1), LEASE) == []
    (row,) = store.outbox.for_alert(7)
    assert row.status == "muted" and row.muted_by == "window deploy"
    assert store.outbox.counts()["muted"] == 1


def test_deliver_after_holds_a_row_back(store: Store) -> None:
    store.outbox.enqueue([note("later")], T0, deliver_after=T0 + timedelta(seconds=30))
    assert store.outbox.claim_due("me", T0 + timedelta(seconds=29), LEASE) == []
    (batch,) = store.outbox.claim_due("me", T0 + timedelta(seconds=30), LEASE)
    assert batch.key == "later"


# --- claims -----------------------------------------------------------------------------------


def test_claim_groups_by_channel_and_group_key(store: Store) -> None:
    store.outbox.enqueue(
        [
            note("g1", group="db"),
            note("g2", group="db"),
            note("g3", group="db"),
            note("solo"),
            note("mail", channel="mail", group="db"),
        ],
        T0,
    )
    batches = store.outbox.claim_due("me", T0, LEASE)
    assert [(b.channel, [r.key for r in b.rows]) for b in batches] == [
        ("ops", ["g1", "g2", "g3"]),
        ("ops", ["solo"]),
        ("mail", ["mail"]),
    ]
    grouped = batches[0]
    assert grouped.id == batch_id(["g3", "g1", "g2"]) and grouped.key == grouped.id
    assert batches[1].key == "solo"  # one row: the notification's own key
    assert set(statuses(store).values()) == {"sending"}
    assert store.outbox.claim_due("other", T0, LEASE) == []


def test_a_crashed_claim_is_reclaimed_as_the_same_batch(store: Store) -> None:
    store.outbox.enqueue([note("x1", group="g"), note("x2", group="g"), note("y")], T0)
    first = store.outbox.claim_due("dead-owner", T0, LEASE)
    # A notification of the same group arrives while the first owner is (silently) gone.
    store.outbox.enqueue([note("x3", group="g")], T0 + timedelta(seconds=10))
    assert [b.key for b in store.outbox.claim_due("next", T0 + LEASE, LEASE)] == ["x3"]
    again = store.outbox.claim_due("next", T0 + LEASE + timedelta(seconds=1), LEASE)
    assert [(b.id, b.key, [r.key for r in b.rows]) for b in again] == [
        (b.id, b.key, [r.key for r in b.rows]) for b in first
    ]
    assert all(b.owner == "next" for b in again)
    # The first owner wakes up: its lease is gone, so its marks change nothing.
    assert store.outbox.mark_sent(first[0], T0 + LEASE * 2) is False
    assert store.outbox.mark_failed(first[1], T0 + LEASE * 2, "late", DELIVERY).status is None
    assert store.outbox.mark_sent(again[0], T0 + LEASE * 2) is True
    assert statuses(store) == {"x1": "sent", "x2": "sent", "x3": "sending", "y": "sending"}


def test_a_failed_batch_keeps_its_rows_and_key(store: Store) -> None:
    store.outbox.enqueue([note("k1", group="g"), note("k2", group="g")], T0)
    (batch,) = store.outbox.claim_due("me", T0, LEASE)
    marked = store.outbox.mark_failed(batch, T0, "refused", DELIVERY)
    assert marked.status == "pending" and marked.next_attempt_at == T0 + timedelta(seconds=5)
    store.outbox.enqueue([note("k3", group="g")], T0 + timedelta(seconds=1))
    batches = store.outbox.claim_due("me", T0 + timedelta(seconds=5), LEASE)
    assert [(b.id, [r.key for r in b.rows]) for b in batches] == [
        (batch.id, ["k1", "k2"]),
        (batch_id(["k3"]), ["k3"]),
    ]
    assert batches[0].attempts == 1
    (row,) = [r for r in store.outbox.list_rows() if r.key == "k1"]
    assert row.last_error == "refused" and row.attempts == 1


def test_claim_limit_counts_batches_and_keeps_them_whole(store: Store) -> None:
    store.outbox.enqueue([note(f"n{i}", group="big") for i in range(5)], T0)
    store.outbox.enqueue([note(f"s{i}") for i in range(5)], T0 + timedelta(seconds=1))
    first = store.outbox.claim_due("me", T0 + timedelta(seconds=1), LEASE, limit=2)
    assert [len(b.rows) for b in first] == [5, 1]
    rest = store.outbox.claim_due("me", T0 + timedelta(seconds=1), LEASE, limit=10)
    assert len(rest) == 4


def test_release_hands_claims_back_at_once(store: Store) -> None:
    store.outbox.enqueue([note("r1", group="g"), note("r2", group="g")], T0)
    (batch,) = store.outbox.claim_due("me", T0, LEASE)
    assert store.outbox.release("someone-else") == 0
    assert store.outbox.release("me") == 2
    (again,) = store.outbox.claim_due("next", T0, LEASE)
    assert again.id == batch.id


def test_release_dead_claims_frees_only_the_dead_owners(store: Store) -> None:
    store.outbox.enqueue([note("alive"), note("dead1", group="g"), note("dead2", group="g")], T0)
    (mine,) = store.outbox.claim_due("alive-owner", T0, LEASE, limit=1)
    (theirs,) = store.outbox.claim_due("dead-owner", T0, LEASE, limit=1)
    assert mine.key == "alive" and len(theirs.rows) == 2
    assert store.outbox.release_dead_claims(lambda owner: owner == "dead-owner") == 2
    assert statuses(store) == {"alive": "sending", "dead1": "pending", "dead2": "pending"}
    (again,) = store.outbox.claim_due("leader", T0, LEASE)
    assert again.id == theirs.id


# --- backoff, giving up, fallback ---------------------------------------------------------------


def test_backoff_doubles_up_to_max(store: Store) -> None:
    store.outbox.enqueue([note("b")], T0)
    now = T0
    waits = []
    for _ in range(6):
        (batch,) = store.outbox.claim_due("me", now, LEASE)
        marked = store.outbox.mark_failed(batch, now, "down", DELIVERY)
        assert marked.status == "pending" and marked.next_attempt_at is not None
        waits.append((marked.next_attempt_at - now).total_seconds())
        early = marked.next_attempt_at - timedelta(seconds=1)
        assert store.outbox.claim_due("me", early, LEASE) == []
        now = marked.next_attempt_at
    assert waits == [5, 10, 20, 40, 60, 60]
    (row,) = store.outbox.list_rows()
    assert row.attempts == 6


def test_dead_after_give_up_after(store: Store) -> None:
    store.outbox.enqueue([note("old")], T0)
    before, after = T0 + timedelta(minutes=59), T0 + timedelta(minutes=61)
    (batch,) = store.outbox.claim_due("me", before, LEASE)
    assert store.outbox.mark_failed(batch, before, "down", DELIVERY).status == "pending"
    (batch,) = store.outbox.claim_due("me", after, LEASE)
    assert store.outbox.mark_failed(batch, after, "still down", DELIVERY).status == "dead"
    assert store.outbox.claim_due("me", T0 + timedelta(days=1), LEASE) == []
    assert store.outbox.counts()["dead"] == 1
    (row,) = store.outbox.list_rows(status=OutboxStatus.DEAD)
    assert row.last_error == "still down" and row.attempts == 2


def test_fallback_after_n_attempts_once(store: Store) -> None:
    store.outbox.enqueue([note("f", fallback="pager", fallback_after=2, alert_id=3)], T0)
    now = T0
    for attempt in (1, 2, 3):
        (batch,) = [b for b in store.outbox.claim_due("me", now, LEASE) if b.channel == "ops"]
        marked = store.outbox.mark_failed(batch, now, "down", DELIVERY)
        assert marked.fallbacks == ((fallback_key("f"),) if attempt == 2 else ())
        assert marked.next_attempt_at is not None
        now = marked.next_attempt_at
    rows = {row.key: row for row in store.outbox.for_alert(3)}
    assert set(rows) == {"f", "f:fallback"}
    copy = rows["f:fallback"]
    assert copy.channel == "pager" and copy.kind == "fallback" and copy.fallback is None
    assert copy.title == "[via fallback: ops failing] title f" and copy.body == "body f"
    assert rows["f"].status == "pending" and rows["f"].fallback_sent is True


def test_a_dead_row_falls_back_even_before_fallback_after(store: Store) -> None:
    store.outbox.enqueue([note("gone", fallback="pager", fallback_after=5)], T0)
    (batch,) = store.outbox.claim_due("me", T0, LEASE)
    marked = store.outbox.mark_dead(batch, T0, "channel 'ops' is no longer in the config", DELIVERY)
    assert marked.status == "dead" and marked.fallbacks == ("gone:fallback",)


def test_a_long_key_gets_a_short_fallback_key() -> None:
    key = "k" * 128
    assert len(fallback_key(key)) <= 128 and fallback_key(key) == fallback_key(key)
    assert fallback_key("short") == "short:fallback"


# --- concurrency --------------------------------------------------------------------------------


def test_concurrent_claimers_never_share_a_row(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(4)]
    stores[0].outbox.enqueue([note(f"c{i}", group=f"g{i % 30}") for i in range(150)], T0)
    claimed: list[list[int]] = [[] for _ in stores]
    errors: list[BaseException] = []
    # All claimers start together, and each pauses between claims as a dispatcher does
    # while it sends: on a loaded machine one thread could otherwise drain the outbox
    # before the others were scheduled, and the test would show nothing concurrent.
    start = threading.Barrier(len(stores))

    def work(index: int) -> None:
        outbox = stores[index].outbox
        try:
            start.wait(30)
            while batches := outbox.claim_due(f"w{index}", T0, LEASE, limit=3):
                for batch in batches:
                    claimed[index].extend(row.id for row in batch.rows)
                    assert outbox.mark_sent(batch, T0)
                time.sleep(0.002)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    every = [row_id for ids in claimed for row_id in ids]
    assert len(every) == 150 and len(set(every)) == 150
    assert sum(1 for ids in claimed if ids) >= 2, "the claimers did not really run together"
    assert stores[0].outbox.counts()["sent"] == 150


async def test_two_dispatchers_never_double_send(open_store: OpenStore) -> None:
    first, second = open_store(), open_store()
    first.outbox.enqueue([note(f"d{i}") for i in range(40)], datetime.now(UTC))
    with WebhookReceiver(delay_s=0.02) as receiver:
        channels = {"ops": receiver.url()}
        dispatchers = [
            Dispatcher(store.outbox, channels, DELIVERY, Redactor(), owner)
            for store, owner in ((first, "one"), (second, "two"))
        ]
        reports = await asyncio.gather(*(d.deliver_due() for d in dispatchers))
    assert sorted(r.key for rs in reports for r in rs) == sorted(f"d{i}" for i in range(40))
    assert all(r.status == "sent" for rs in reports for r in rs)
    assert all(reports), "both dispatchers should have delivered some"
    assert len(receiver.deliveries) == 40
    assert set(Counter(receiver.keys()).values()) == {1}
    assert first.outbox.counts()["sent"] == 40
