"""Seeding a real store for the status page's tests: results, incidents, check states."""

from __future__ import annotations

from datetime import datetime, timedelta

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.alerts import AlertState, CheckState
from upkeep.store.store import Store


def seed_results(
    store: Store,
    check: str,
    start: datetime,
    end: datetime,
    *,
    every: timedelta = timedelta(minutes=10),
    duration_ms: float = 100.0,
    message: str = "",
    target: str = "box",
) -> int:
    """Given a store and a check, write an ok result every ``every`` in ``[start, end)``;
    return how many."""
    results = []
    moment = start
    while moment < end:
        results.append(
            CheckResult(
                check=check,
                target=target,
                probe="http.request",
                status=Status.OK,
                metrics={},
                message=message,
                duration_ms=duration_ms,
                at=moment,
            )
        )
        moment += every
    for index in range(0, len(results), 5000):
        store.write_results(results[index : index + 5000])
    return len(results)


def seed_incident(
    store: Store,
    check: str,
    opened: datetime,
    resolved: datetime | None,
    *,
    message: str = "crit: status_code != 200",
    status: Status = Status.CRITICAL,
    target: str = "box",
) -> int:
    """Given a store, a check and an incident's interval (open when ``resolved`` is
    None), insert the fired alert (resolved if it ended) and return its id."""
    with store.alerts.transaction() as connection:
        alert_id = store.alerts.insert_alert(
            connection,
            check=check,
            target=target,
            severity="P2",
            labels={},
            state=AlertState.FIRING,
            status=status,
            message=message,
            opened_at=opened,
            fired_at=opened,
            last_result_at=resolved or opened,
        )
        if resolved is not None:
            store.alerts.update_alert(
                connection, alert_id, state=AlertState.RESOLVED, resolved_at=resolved
            )
    return alert_id


def seed_state(store: Store, check: str, at: datetime, status: Status = Status.OK) -> None:
    """Given a store and a check, record that its last result was ``status`` at ``at``."""
    with store.alerts.transaction() as connection:
        existing = store.alerts.states(connection, [check])
        store.alerts.save_states(
            connection, [CheckState(check=check, last_status=status, last_at=at)], existing
        )
