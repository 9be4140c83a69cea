"""``upkeep notify test`` and ``upkeep notify outbox`` as a user runs them, against a real
webhook receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path

from tests.e2e.conftest import Upkeep
from tests.support.receivers import WebhookReceiver, free_port
from upkeep.notify.message import Notification
from upkeep.store.store import Store

SECRET = "Hook-Secret-5150"


def write_config(tmp_path: Path, receiver: WebhookReceiver) -> dict[str, str]:
    (tmp_path / "upkeep.yaml").write_text(
        f"""
channels:
  hook: {receiver.url()}
  down: ${{DOWN_URL}}
""",
        encoding="utf-8",
    )
    return {"DOWN_URL": f"json://upkeep:{SECRET}@127.0.0.1:{free_port()}/hook"}


def test_notify_test_sends_a_test_message(tmp_path: Path, upkeep: Upkeep) -> None:
    with WebhookReceiver() as receiver:
        env = write_config(tmp_path, receiver)
        done = upkeep("notify", "test", "hook", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sent to hook"
    (delivery,) = receiver.deliveries
    payload = delivery.json()
    assert payload["title"] == f"upkeep test notification from {socket.gethostname()}"
    assert payload["type"] == "info"
    assert (delivery.key or "").startswith("test:hook:")


def test_notify_test_reports_a_failure_without_the_secret(tmp_path: Path, upkeep: Upkeep) -> None:
    env = write_config(tmp_path, WebhookReceiver())
    done = upkeep("notify", "test", "down", env=env)
    assert done.returncode == 1
    assert "down: A Connection error occurred" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_notify_test_unknown_channel(tmp_path: Path, upkeep: Upkeep) -> None:
    env = write_config(tmp_path, WebhookReceiver())
    done = upkeep("notify", "test", "pager", env=env)
    assert done.returncode == 2
    assert "no channel named 'pager' (channels: down, hook)" in done.stderr


def test_notify_outbox_lists_rows(tmp_path: Path, upkeep: Upkeep) -> None:
    env = write_config(tmp_path, WebhookReceiver())
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        now = datetime.now(UTC)
        store.outbox.enqueue(
            [
                Notification("k1", "hook", "firing", "g", "db is down", "details", "failure"),
                Notification("k2", "down", "resolved", "g2", "db is back", "after 5m", "success"),
            ],
            now,
        )
        store.outbox.enqueue(
            [Notification("k3", "hook", "firing", "g3", "muted", "", "failure")],
            now,
            muted_by="silence 4",
        )
    finally:
        store.close()
    listed = upkeep("notify", "outbox", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["counts"] == {"pending": 2, "sending": 0, "sent": 0, "dead": 0, "muted": 1}
    assert [row["key"] for row in document["rows"]] == ["k3", "k2", "k1"]
    assert document["rows"][0]["muted_by"] == "silence 4"
    only = json.loads(upkeep("notify", "outbox", "--status", "muted", "--json", env=env).stdout)
    assert [row["key"] for row in only["rows"]] == ["k3"]
    table = upkeep("notify", "outbox", env=env)
    assert table.returncode == 0
    assert "hook" in table.stdout and "resolved" in table.stdout
    assert "pending 2  sending 0  sent 0  dead 0  muted 1" in table.stdout
    bad = upkeep("notify", "outbox", "--status", "lost", env=env)
    assert bad.returncode == 2
    assert "Invalid value for '--status': expected one of pending" in bad.stderr
