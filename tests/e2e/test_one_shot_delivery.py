"""A one-shot command delivers what becomes due within its routes' group_wait before it
exits (issue #13, defect 8), a notice says how long ago at the moment it is sent, and a
signal during that wait ends the command at once."""

from __future__ import annotations

import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep
from tests.e2e.test_process_trees import STARTUP_S, start_cli
from tests.integration.engine.test_daemon import wait_for
from tests.support.receivers import WebhookReceiver, free_port
from upkeep.store.outbox import OutboxRow, OutboxStatus
from upkeep.store.store import Store

SIGNALLED_EXIT_S = 8.0
"""How long a signalled command may take to exit (it would wait 25 s if the wait ignored
the signal): generous for a loaded machine."""


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
        done = upkeep("check")
        assert done.returncode == 2, done.stderr
        titles = _titles(receiver)
    assert len(titles) == 2, titles
    assert titles[0].startswith("[P1] FIRING gate-p1") and titles[1].startswith("[P3] FIRING")
    p1 = next(d.json() for d in receiver.deliveries if "[P1]" in d.json()["title"])
    # Written when it was sent, after its group_wait, not when it was queued ("0s ago").
    (ago,) = re.findall(r"\((\d+)s ago\)", p1["message"])
    assert int(ago) >= 2, p1["message"]
    assert "{{ago:" not in p1["message"]
    assert _pending(tmp_path) == []


def test_a_group_wait_beyond_the_cap_is_left_to_the_daemon(tmp_path: Path, upkeep: Upkeep) -> None:
    with WebhookReceiver() as receiver:
        _config(tmp_path, receiver, "1s", "10m")
        began = time.monotonic()
        done = upkeep("check", timeout=600)
        took = time.monotonic() - began
        assert done.returncode == 2, done.stderr
        titles = _titles(receiver)
    # The P1 route's second is waited for; the 10 minutes of the other are not.
    assert [title[:12] for title in titles] == ["[P1] FIRING "]
    assert took < 300  # far from the 10-minute group (a bound generous for a loaded machine)
    (waiting,) = _pending(tmp_path)
    assert waiting.severity == "P3" and waiting.attempts == 0
    assert waiting.next_attempt_at - waiting.created_at >= timedelta(minutes=10)


def _pending(tmp_path: Path) -> list[OutboxRow]:
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        return store.outbox.list_rows(status=OutboxStatus.PENDING)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("command", "signum", "code"),
    [(("run", "gate", "--yes"), signal.SIGINT, 130), (("check",), signal.SIGTERM, 143)],
)
def test_a_signal_during_the_delivery_wait_ends_the_command_at_once(
    tmp_path: Path, command: tuple[str, ...], signum: int, code: int
) -> None:
    # `upkeep run` waited in a worker thread: a Ctrl-C left the process until the wait ran out.
    with WebhookReceiver() as receiver:
        _config(tmp_path, receiver, "25s", "25s")
        with (tmp_path / "upkeep.yaml").open("a", encoding="utf-8") as config:
            config.write("runbooks:\n  gate:\n    steps:\n      - checks: {names: [gate-p1]}\n")
        cli = start_cli(tmp_path, *command)
        try:
            # Queued, and (for the run) the run recorded as ended: the command is waiting.
            wait_for(lambda: _queued(tmp_path, ended=command[0] == "run"), STARTUP_S, "the wait")
            time.sleep(0.5)
            assert cli.poll() is None, cli.communicate()
            cli.send_signal(signum)
            began = time.monotonic()
            out, err = cli.communicate(timeout=60)
            took = time.monotonic() - began
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.communicate(timeout=10)
        assert cli.returncode == code, (out, err)
        assert took < SIGNALLED_EXIT_S, (took, out, err)
        assert receiver.deliveries == []  # interrupted before its group_wait ended


def _queued(tmp_path: Path, *, ended: bool) -> bool:
    if not (tmp_path / ".upkeep" / "upkeep.db").exists():
        return False
    store = Store.open("sqlite:///.upkeep/upkeep.db", tmp_path)
    try:
        if ended and not any(run.finished_at for run in store.runs.list_runs()):
            return False
        return bool(store.outbox.list_rows(status=OutboxStatus.PENDING))
    finally:
        store.close()
