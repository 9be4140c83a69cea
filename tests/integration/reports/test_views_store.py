"""The dashboard's queries on both store backends: newest result per check, the result
cursor, since-when and the hourly strips."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from upkeep.config.models import StoreConfig
from upkeep.core.redaction import Redactor
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.reports.views import latest_results, load_strips, results_after, status_since
from upkeep.store.schema import check_states
from upkeep.store.store import Store

END = datetime(2026, 12, 7, 12, 30, tzinfo=UTC)


@pytest.fixture
def store(store_config: StoreConfig, tmp_path: Path) -> Iterator[Store]:
    opened = store_config.open(tmp_path)
    yield opened
    opened.close()


def _result(check: str, status: Status, at: datetime, message: str = "") -> CheckResult:
    return CheckResult(check, "t", "tcp.connect", status, {}, message or status.label, 1.0, at)


def test_the_dashboards_queries_agree_on_both_backends(store: Store) -> None:
    redactor = Redactor()
    redactor.add("s3cret-token-value")
    hours = [END - timedelta(hours=offset) for offset in (3, 2, 1, 0)]
    store.write_results([_result("a", Status.OK, moment) for moment in hours])
    store.write_results(
        [
            _result("b", Status.OK, hours[0]),
            _result("b", Status.CRITICAL, hours[2] + timedelta(minutes=5)),
            _result("b", Status.WARNING, hours[2] + timedelta(minutes=10)),
        ]
    )
    _, cursor = results_after(store.engine, 0, redactor)
    store.write_results([_result("b", Status.CRITICAL, END, "token s3cret-token-value")])

    newest = latest_results(store.engine, redactor)
    assert {name: result.status for name, result in newest.items()} == {
        "a": Status.OK,
        "b": Status.CRITICAL,
    }
    assert newest["b"].message == "token ***"
    found, after = results_after(store.engine, cursor, redactor)
    assert [(result.check, result.status) for result in found] == [("b", Status.CRITICAL)]
    assert after > cursor and results_after(store.engine, after, redactor) == ([], after)

    strips = load_strips(store.engine, END, hours=4)
    assert strips.strip("a", END) == (Status.OK,) * 4
    assert strips.strip("b", END) == (Status.OK, None, Status.CRITICAL, Status.CRITICAL)

    with store.engine.begin() as connection:
        connection.execute(
            insert(check_states).values(
                check="b",
                history="oc",
                flapping=False,
                consecutive_bad=1,
                consecutive_ok=0,
                bad_since=hours[2] + timedelta(minutes=5),
                last_status=2,
                last_at=END,
            )
        )
    since = status_since(store.engine)
    assert since["b"] == hours[2] + timedelta(minutes=5)
    assert since["a"] == hours[0]
