"""The ping routes through the real ASGI app (guard included) over a real SQLite store:
every signal and method, no token needed while /api still needs one, any Host, the body
cap, unknown ids, the rate limit, the daemon told, and a store that fails."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from tests.helpers import load_text
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.pings import MAX_PING_BODY_CHARS, PingKind, heartbeat_digest
from upkeep.web.app import DaemonState, create_app
from upkeep.web.pings import PingLimiter, parse_signal

HEARTBEAT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SECRET = "s3cret-db-password-42"
CONFIG = f"""\
engine:
  api_tokens: {{ops: "t0ken-for-the-api-7f3a"}}
  http: {{max_body_bytes: 4096}}
targets:
  nightly: {{kind: heartbeat, id: "{HEARTBEAT_ID}", period: 1d}}
  db: {{kind: postgres, dsn: "postgresql://app:${{DB_PASSWORD}}@127.0.0.1/app"}}
checks:
  nightly: {{target: nightly}}
"""
BASE = "http://127.0.0.1:9464"
PATH = f"/ping/{HEARTBEAT_ID}"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    loaded = load_text(tmp_path, CONFIG, {"DB_PASSWORD": SECRET})
    store = loaded.config.store.open(loaded.base_dir)
    yield DaemonState(instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics())
    store.close()


def send(state: DaemonState, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            return [await client.request(method, path, **extra) for method, path, extra in requests]

    return asyncio.run(go())


def stored(state: DaemonState) -> list[Any]:
    return list(reversed(state.store.pings.recent(heartbeat_digest(HEARTBEAT_ID))))


def test_every_signal_by_every_method_without_a_token_from_any_host(state: DaemonState) -> None:
    told: list[tuple[str, ...]] = []
    state.on_ping = told.append
    form = {"content-type": "application/x-www-form-urlencoded", "host": "cron.elsewhere.example"}
    answers = send(
        state,
        ("GET", PATH, {}),
        ("HEAD", f"{PATH}/start", {}),
        ("POST", f"{PATH}/0", {"headers": form, "content": b"backup done"}),
        ("POST", f"{PATH}/fail", {"headers": form, "content": b"disk full"}),
        ("GET", f"{PATH}/log", {"headers": {"host": "evil.example"}}),
    )
    assert [answer.status_code for answer in answers] == [200] * 5
    assert answers[0].text == "OK" and answers[0].headers["content-type"].startswith("text/plain")
    pings = stored(state)
    assert [(ping.kind, ping.exit_code) for ping in pings] == [
        (PingKind.SUCCESS, None),
        (PingKind.START, None),
        (PingKind.SUCCESS, 0),
        (PingKind.FAIL, None),
        (PingKind.LOG, None),
    ]
    assert pings[2].body == "backup done" and pings[3].body == "disk full"
    assert pings[0].source == "127.0.0.1"
    # The daemon is told of each ping that changes state (a log changes none).
    assert told == [("nightly",)] * 4


def test_exit_codes_map_to_success_and_failure_and_anything_else_is_404() -> None:
    assert parse_signal("0") == (PingKind.SUCCESS, 0)
    assert parse_signal("255") == (PingKind.FAIL, 255)
    assert parse_signal(None) == (PingKind.SUCCESS, None)
    for bad in ("256", "-1", "0x1", "٣", "0000", "starts", ""):
        assert parse_signal(bad) is None, bad


def test_unknown_ids_and_signals_are_the_same_404_and_record_nothing(state: DaemonState) -> None:
    answers = send(
        state,
        ("GET", "/ping/" + "a" * 36, {}),
        ("POST", "/ping/short", {"content": b"x"}),
        ("GET", "/ping/" + "b" * 5000, {}),
        ("GET", f"{PATH}/restart", {}),
        ("GET", f"{PATH}/256", {}),
        ("GET", f"{PATH}/0/extra", {}),
    )
    assert [answer.status_code for answer in answers[:5]] == [404] * 5
    assert {answer.text for answer in answers[:5]} == {"not found"}
    assert answers[5].status_code == 404
    assert stored(state) == []


def test_the_api_still_needs_its_token_and_json(state: DaemonState) -> None:
    answers = send(
        state,
        ("GET", "/api/runs", {}),
        ("POST", "/api/silences", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
        ("GET", f"{PATH}/../../api/runs", {}),
    )
    assert [answer.status_code for answer in answers[:2]] == [401, 401]
    # A client normalises dot segments; either way nothing under /api answers without a token.
    assert answers[2].status_code in (401, 404)


def test_the_body_is_capped_redacted_and_kept_by_its_end(state: DaemonState) -> None:
    head = "first line\n"
    tail = f"connecting with {SECRET}\nexit 0\n"
    body = (head + "y" * 3000 + tail).encode()
    too_big = b"z" * 4097
    answers = send(
        state,
        ("POST", PATH, {"content": body}),
        ("POST", PATH, {"content": too_big}),
    )
    assert [answer.status_code for answer in answers] == [200, 413]
    (kept,) = stored(state)
    assert SECRET not in kept.body and "connecting with ***\nexit 0\n" in kept.body
    assert len(kept.body) <= MAX_PING_BODY_CHARS


def test_a_long_body_keeps_its_last_10_kib(state: DaemonState, tmp_path: Path) -> None:
    state.loaded = load_text(
        tmp_path,
        CONFIG.replace("max_body_bytes: 4096", "max_body_bytes: 65536"),
        {"DB_PASSWORD": SECRET},
    )
    body = ("é" * 20_000 + "the end").encode()
    (answer,) = send(state, ("POST", PATH, {"content": body}))
    assert answer.status_code == 200
    (kept,) = stored(state)
    assert len(kept.body) == MAX_PING_BODY_CHARS and kept.body.endswith("éthe end")


def test_a_heartbeat_takes_a_burst_then_429_and_others_are_not_held_back(
    state: DaemonState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One instant for all eight: on a loaded machine they could span a refill (0.2 s).
    allow = PingLimiter.allow
    with monkeypatch.context() as patch:
        patch.setattr(PingLimiter, "allow", lambda self, key, now: allow(self, key, 1000.0))
        answers = send(state, *[("GET", PATH, {})] * 8)
    assert [answer.status_code for answer in answers] == [200] * 5 + [429] * 3
    assert answers[-1].headers["retry-after"] == "1"
    assert len(stored(state)) == 5
    limiter = PingLimiter(rate=5, burst=5)
    assert all(limiter.allow("a", 0.0) for _ in range(5)) and not limiter.allow("a", 0.0)
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 0.2) and not limiter.allow("a", 0.2)
    limiter.keep_only({"b"})
    assert limiter.allow("a", 0.2)  # forgotten, so a fresh bucket


def test_a_store_that_fails_is_a_503_the_client_retries(
    state: DaemonState, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: Any, **kwargs: Any) -> int:
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(state.store.pings, "record", full)
    (answer,) = send(state, ("POST", PATH, {"content": b"x"}))
    assert answer.status_code == 503 and "retry" in answer.text


def test_a_checks_run_that_cannot_start_does_not_lose_the_ping(state: DaemonState) -> None:
    def broken(targets: tuple[str, ...]) -> None:
        raise RuntimeError("no scheduler")

    state.on_ping = broken
    (answer,) = send(state, ("GET", f"{PATH}/fail", {}))
    assert answer.status_code == 200 and [ping.kind for ping in stored(state)] == [PingKind.FAIL]


async def _raw(state: DaemonState, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> int:
    """Send a ping through the ASGI app as a server would, its body in ``chunks`` (the
    last one never ends the body: a client that stops sending); return the status."""
    app = create_app(state)
    messages = iter(
        [{"type": "http.request", "body": chunk, "more_body": True} for chunk in chunks]
    )
    answered: list[int] = []

    async def receive() -> dict[str, Any]:
        message = next(messages, None)
        if message is None:
            await asyncio.sleep(3600)  # the client went quiet
        return message or {"type": "http.disconnect"}

    async def send_message(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answered.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:9464"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 9464),
    }
    await app(scope, receive, send_message)
    return answered[0]


def test_a_slow_or_endless_chunked_body_is_refused_like_any_other(
    state: DaemonState, tmp_path: Path
) -> None:
    state.loaded = load_text(
        tmp_path,
        CONFIG.replace(
            "http: {max_body_bytes: 4096}", "http: {max_body_bytes: 4096, body_timeout: 1s}"
        ),
        {"DB_PASSWORD": SECRET},
    )
    chunked = [(b"transfer-encoding", b"chunked")]
    assert asyncio.run(_raw(state, chunked, [b"x" * 1000] * 5)) == 413
    assert asyncio.run(_raw(state, chunked, [b"started the dump"])) == 408
    assert stored(state) == []


def test_an_id_with_a_trailing_newline_is_no_id(state: DaemonState) -> None:
    (answer,) = send(state, ("GET", f"{PATH}%0A", {}))
    assert answer.status_code == 404 and stored(state) == []
