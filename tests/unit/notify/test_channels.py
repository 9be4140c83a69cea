"""Channel URLs (validation, config errors, no secret quoted) and the shapes of messages:
grouped titles and bodies, levels, batch ids, backoff, leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.receivers import free_port
from upkeep.alerting.delivery import compose, lease_for
from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.core.redaction import Redactor
from upkeep.notify.channels import send, validate_channel_url
from upkeep.store.outbox import DeliveryConfig, OutboxRow, OutboxStatus, backoff_delay, batch_id

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:8080/hook",
        "mailtos://alerts:pw-1234@smtp.example.com?to=ops@example.com",
        "https://hooks.slack.com/services/T0000000/B0000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ],
)
def test_apprise_urls_are_valid(url: str) -> None:
    assert validate_channel_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("nope://Sekret-Token-1", "scheme nope:// is not one Apprise knows"),
        ("xoxb-Sekret-Token-1", "no scheme://"),
        ("Sekret-Token-1://host", "scheme sekret-token-1:// is not one Apprise knows"),
        ("json://", "scheme json://: the rest does not parse for it"),
    ],
)
def test_invalid_urls_name_the_scheme_only(url: str, expected: str) -> None:
    problem = validate_channel_url(url)
    assert problem is not None
    assert problem.startswith("not an Apprise URL (") and expected in problem
    assert "Sekret-Token-1" not in problem


def test_sending_to_an_invalid_url_fails_without_quoting_it() -> None:
    result = send("nope://user:Sekret-Token-1@host", "t", "b", "info", "k", 1.0)
    assert not result.ok
    assert "nope://" in result.error and "Sekret-Token-1" not in result.error


def test_a_refused_connection_is_an_error_without_the_password() -> None:
    url = f"json://upkeep:Hook-Password-9@127.0.0.1:{free_port()}/hook"
    result = send(url, "t", "b", "failure", "k", 1.0, Redactor())
    assert not result.ok
    assert "127.0.0.1" in result.error and "Hook-Password-9" not in result.error
    # The reason the operating system gave, not urllib3's wrapping of it.
    assert result.error.endswith("127.0.0.1: Connection refused"), result.error


def test_config_reports_a_channel_that_is_not_an_apprise_url(tmp_path: Path) -> None:
    config = """
channels:
  good: json://127.0.0.1:9000/hook
  typo: "jsn://127.0.0.1:9000/hook"
  token: ${TOKEN}
"""
    (tmp_path / "upkeep.yaml").write_text(config, encoding="utf-8")
    # Commands that neither send nor validate skip Apprise (and its import cost).
    load_config(tmp_path / "upkeep.yaml", environ={"TOKEN": "xoxb-1234-Sekret"})
    with pytest.raises(ConfigError) as caught:
        load_config(
            tmp_path / "upkeep.yaml", environ={"TOKEN": "xoxb-1234-Sekret"}, check_channels=True
        )
    issues = {issue.path: issue for issue in caught.value.issues}
    assert set(issues) == {("channels", "typo"), ("channels", "token")}
    assert "scheme jsn:// is not one Apprise knows" in issues[("channels", "typo")].message
    assert issues[("channels", "typo")].line == 4
    assert "no scheme://" in issues[("channels", "token")].message
    assert all("Sekret" not in str(issue) for issue in caught.value.issues)


def row(key: str, level: str = "failure", title: str | None = None) -> OutboxRow:
    return OutboxRow(
        id=0,
        key=key,
        channel="ops",
        alert_id=None,
        kind="firing",
        group_key="g",
        severity="P2",
        level=level,
        title=title or f"{key} is down",
        body=f"details of {key}",
        status=OutboxStatus.SENDING,
        muted_by=None,
        created_at=T0,
        next_attempt_at=T0,
        attempts=0,
        last_error=None,
        sent_at=None,
        batch=None,
        claimed_by=None,
        claimed_until=None,
        fallback=None,
        fallback_after=None,
        fallback_sent=False,
    )


def test_one_row_is_its_own_message() -> None:
    assert compose((row("a", "warning"),), now=NOW) == ("a is down", "details of a", "warning")


def test_several_rows_make_one_message_at_the_worst_level() -> None:
    title, body, level = compose(
        (row("a", "info"), row("b", "warning"), row("c", "success")), now=NOW
    )
    assert title == "3 alerts: a is down; b is down; c is down"
    assert body.split("\n\n———\n\n") == [f"{k} is down\ndetails of {k}" for k in "abc"]
    assert level == "warning"
    assert compose((row("x", "success"), row("y", "failure")), now=NOW)[2] == "failure"


def test_a_long_grouped_title_is_cut() -> None:
    same, _, _ = compose(tuple(row(f"k{i}", title="x" * 60) for i in range(3)), now=NOW)
    assert same == "3 alerts: " + "x" * 60  # identical titles are listed once
    title, _, _ = compose(tuple(row(f"k{i}", title=f"{i}" * 60) for i in range(10)), now=NOW)
    assert len(title) == 250 and title.startswith("10 alerts: 000") and title.endswith("…")


def test_batch_id_is_the_same_for_any_order() -> None:
    assert batch_id(["b", "a", "c"]) == batch_id(["c", "a", "b"]) != batch_id(["a", "b"])
    assert batch_id(["a"]).startswith("batch:") and len(batch_id(["a"])) == 70


def test_backoff_and_lease() -> None:
    delivery = DeliveryConfig(
        timeout=timedelta(seconds=15),
        backoff=timedelta(seconds=5),
        max_backoff=timedelta(minutes=10),
    )
    waits = [backoff_delay(n, delivery).total_seconds() for n in (1, 2, 3, 7, 8, 9, 10_000)]
    assert waits == [5, 10, 20, 320, 600, 600, 600]
    assert lease_for(delivery) > delivery.timeout + timedelta(seconds=5)
