"""A one-shot command delivers what becomes due within its routes' group_wait before it
exits (issue #13, defect 8), and a notice says how long ago at the moment it is sent."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.e2e.conftest import Upkeep
from tests.support.receivers import WebhookReceiver, free_port
from upkeep.store.outbox import OutboxStatus
from upkeep.store.store import Store


def _config(tmp_path: Path, receiver: WebhookReceiver, urgent_wait: str, rest_wait: str) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        f"""
targets:
  closed: {{kind: tcp, host: 127.0.0.1, port: {free_port()}}}
checks:
  gate-p1: {{target: closed, severity: P1}}
  gate-p3: {{target: closed, severity: P3}}
channels:
  hook: {receiver.url()}
routes:
  - {{match: {{severity: [P1]}}, notify: [hook], group_wait: {urgent_wait}}}
  - {{notify: [hook], group_wait: {rest_wait}}}
""",
        encoding="utf-8",
    )


def _titles(receiver: WebhookReceiver) -> list[str]:
    return sorted(str(delivery.json()["title"]) for delivery in receiver.deliveries)


def test_check_delivers_a_grouped_p1_notice_before_it_exits(tmp_path: Path, upkeep: Upkeep) -> None:
    with WebhookReceiver() as receiver:
        _config(tmp_path, receiver, "2s", "0s")
        began = time.monotonic()
        done = upkeep("check")
        took = time.monotonic() - began
        assert done.returncode == 2, done.stderr
        titles = _titles(receiver)
    assert len(titles) == 2, titles
    assert titles[0].startswith("[P1] FIRING gate-p1") and titles[1].startswith("[P3] FIRING")
    p1 = next(d.json() for d in receiver.deliveries if "[P1]" in d.json()["title"])
    # Written when it was sent, after its group_wait, not when it was queued ("0s ago").
    (ago,) = re.findall(r"\((\d+)s ago\)", p1["message"])
    assert int(ago) >= 2, p1["message"]
    assert "{{ago:" not in p1["message"]
    assert took < 30


def test_a_group_wait_beyond_the_cap_is_left_to_the_daemon(tmp_path: Path, upkeep: Upkeep) -> None:
    with WebhookReceiver() as receiver:
        _config(tmp_path, receiver, "1s", "10m")
        began = time.monotonic()
        done = upkeep("check")
        took = time.monotonic() - began
        assert done.returncode == 2, done.stderr
        titles = _titles(receiver)
    # The P1 route's second is waited for; the 10 minutes of the other are not.
    assert [title[:12] for title in titles] == ["[P1] FIRING "]
    assert took < 25  # it waited for the P1 route's second, not for the 30 s cap
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        waiting = store.outbox.list_rows(status=OutboxStatus.PENDING)
    finally:
        store.close()
    assert [row.severity for row in waiting] == ["P3"]
