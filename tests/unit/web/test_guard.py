"""The API guard, attacked through the real ASGI app over a real SQLite store.

Each test sends what an attacker (or a careless client) would: cross-site forms, a
rebound Host, a body to the wrong address, a header no token can be, ids and durations
out of range. Nothing may change, nothing may be a 500, and a refusal reads no body.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import load_text
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.runs import RunStatus
from upkeep.store.store import Store
from upkeep.web.app import DaemonState, create_app

ALICE = "alice-token-0123456789abcdef"
CI = "ci-token-fedcba9876543210"
CONFIG = """\
engine:
  api_tokens:
    alice: "${ALICE}"
    ci: "${CI_DIGEST}"
  allowed_hosts: [upkeep.internal.example]
  http: {max_body_bytes: 4096}
alerting: {public_url: "https://upkeep.example.org:8443/"}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
checks:
  api-up: {target: api}
runbooks:
  deploy:
    steps:
      - approval: Ship it?
"""
NO_TOKEN_CONFIG = """\
runbooks:
  deploy:
    steps:
      - approval: Ship it?
"""
BASE = "http://127.0.0.1:9464"


def state_for(tmp_path: Path, text: str) -> DaemonState:
    digest = "sha256:" + hashlib.sha256(CI.encode()).hexdigest()
    loaded = load_text(tmp_path, text, {"ALICE": ALICE, "CI_DIGEST": digest})
    store = loaded.config.store.open(loaded.base_dir)
    return DaemonState(
        instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics()
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    found = state_for(tmp_path, CONFIG)
    yield found
    found.store.close()


@pytest.fixture
def open_state(tmp_path: Path) -> Iterator[DaemonState]:
    found = state_for(tmp_path, NO_TOKEN_CONFIG)
    yield found
    found.store.close()


def client(state: DaemonState, token: str | None = ALICE, base: str = BASE) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(state)), base_url=base, headers=headers
    )


def waiting_run(store: Store) -> int:
    run_id = store.runs.start_run(
        runbook="deploy", trigger="cli", owner="host:1:abc", steps=[("Ship it?", "approval")]
    )
    assert run_id is not None
    store.runs.update_step(run_id, 0, status="waiting")
    store.runs.set_run_status(run_id, RunStatus.WAITING)
    return run_id


def firing_alert(state: DaemonState) -> int:
    from datetime import UTC, datetime

    from upkeep.alerting.manager import AlertManager
    from upkeep.core.results import CheckResult
    from upkeep.core.status import Status

    AlertManager(state.loaded, state.store).process(
        [
            CheckResult(
                "api-up", "api", "tcp.connect", Status.CRITICAL, {}, "refused", 1.0,
                datetime.now(UTC), labels={"env": "prod"},
            )
        ]
    )  # fmt: skip
    return state.store.alerts.list_alerts(open_only=True, limit=1)[0].id


FORM = {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"}


def nothing_changed(state: DaemonState, run_id: int, alert_id: int) -> None:
    assert state.store.runs.step_decision(run_id, 0) == (None, None)
    alert = state.store.alerts.get(alert_id)
    assert alert is not None and alert.acked_by is None
    assert state.store.alerts.silences(include_ended=True) == []


# --- finding 6: cross-site changes, rebinding, the actor ------------------------------------


async def test_without_a_token_configured_every_api_request_is_refused(
    open_state: DaemonState,
) -> None:
    run_id = waiting_run(open_state.store)
    anonymous = client(open_state, token=None)
    for method, path in [
        ("POST", f"/api/runs/{run_id}/approve"),
        ("POST", "/api/alerts/1/ack"),
        ("POST", "/api/silences"),
        ("GET", "/api/runs"),
        ("GET", "/api/alerts"),
    ]:
        answer = await anonymous.request(method, path, headers=FORM, content=b"")
        assert answer.status_code == 401, (path, answer.text)
        assert "engine.api_tokens" in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert open_state.store.runs.step_decision(run_id, 0) == (None, None)
    # Monitoring still scrapes without a credential; the schema and its Swagger UI hold
    # no secret and are open too.
    assert (await anonymous.get("/api/openapi.json")).status_code == 200
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/metrics")).status_code == 200


async def test_cross_site_forms_change_nothing(state: DaemonState) -> None:
    run_id, alert_id = waiting_run(state.store), firing_alert(state)
    targets = [f"/api/runs/{run_id}/approve", f"/api/alerts/{alert_id}/ack", "/api/silences"]
    for path in targets:
        # What a browser sends from another site: no credential (401) ...
        forged = await client(state, token=None).post(path, headers=FORM, content=b"")
        assert forged.status_code == 401, path
        # ... and even a client holding a token cannot be made to post a form or text,
        # or to act from another origin or site.
        as_form = await client(state).post(path, headers=FORM, content=b"a=1")
        assert as_form.status_code == 403, path
        as_text = await client(state).post(
            path, headers={"Content-Type": "text/plain"}, content=b'{"for": "1h"}'
        )
        assert as_text.status_code == 415, path
        from_elsewhere = await client(state).post(path, json={}, headers={"Origin": "null"})
        assert from_elsewhere.status_code == 403, path
        cross_site = await client(state).post(
            path, json={}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross_site.status_code == 403, path
    nothing_changed(state, run_id, alert_id)


async def test_a_rebound_host_is_refused_even_with_a_token(state: DaemonState) -> None:
    run_id, alert_id = waiting_run(state.store), firing_alert(state)
    rebound = client(state, base="http://rebind.attacker.example:9464")
    body = {"matchers": {"env": "*"}, "for": "1y"}
    assert (await rebound.post("/api/silences", json=body)).status_code == 421
    assert (await rebound.post(f"/api/runs/{run_id}/approve", json={})).status_code == 421
    assert (await rebound.get("/api/runs")).status_code == 421
    nothing_changed(state, run_id, alert_id)
    # The names this server answers to: loopback, IP addresses, allowed_hosts, public_url.
    for base in (
        "http://localhost:9464",
        "http://[::1]:9464",
        "http://192.0.2.7:9464",
        "http://upkeep.internal.example",
        "https://upkeep.example.org:8443",
    ):
        assert (await client(state, base=base).get("/api/runs")).status_code == 200, base
    # The public URL's origin may post changes (a page served from there).
    public = client(state, base="https://upkeep.example.org:8443")
    answer = await public.post(
        "/api/silences", json=body, headers={"Origin": "https://upkeep.example.org:8443"}
    )
    assert answer.status_code == 201, answer.text


async def test_the_actor_is_the_token_name_never_the_body(state: DaemonState) -> None:
    run_id, alert_id = waiting_run(state.store), firing_alert(state)
    claimed = await client(state).post(f"/api/alerts/{alert_id}/ack", json={"by": "bob"})
    assert claimed.status_code == 422 and "api:<name>" in claimed.text
    removing = await client(state).delete("/api/silences/1?by=bob")
    assert removing.status_code == 404  # the query's `by` is not a parameter at all
    acked = await client(state, token=CI).post(f"/api/alerts/{alert_id}/ack", json={})
    assert acked.json()["acked_by"] == "api:ci"  # the token stored as a digest works
    approved = await client(state).post(f"/api/runs/{run_id}/approve", json={})
    assert approved.json()["steps"][0]["decided_by"] == "api:alice"
    added = await client(state, token=CI).post(
        "/api/silences", json={"matchers": {"env": "prod"}, "for": "1h"}
    )
    assert state.store.alerts.silences()[0].author == "api:ci"
    await client(state).delete(f"/api/silences/{added.json()['id']}")
    assert state.store.alerts.silences(include_ended=True)[0].removed_by == "api:alice"


# --- finding 8: malformed credentials and edge input are 4xx --------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        b"Bearer \xe9\xe9\xe9",
        b"Bearer " + "ä".encode() * 20,
        b"bearer",
        b"Bearer ",
        b"Basic YWxpY2U6c2VjcmV0",
        b"Bearer " + ALICE.encode() + b"x",
        b"Bearer " + ALICE.encode()[:-1],
        b"Bearer " + b"A" * 100_000,
        b"Bearer \x00" + ALICE.encode(),
    ],
)
async def test_a_malformed_or_wrong_authorization_is_a_401(
    state: DaemonState, authorization: bytes
) -> None:
    answer = await client(state, token=None).get(
        "/api/runs", headers=[(b"Authorization", authorization)]
    )
    assert answer.status_code == 401


async def test_two_authorization_headers_are_a_401(state: DaemonState) -> None:
    headers = [("Authorization", f"Bearer {ALICE}"), ("Authorization", "Bearer x")]
    answer = await client(state, token=None).get("/api/runs", headers=headers)
    assert answer.status_code == 401


@pytest.mark.parametrize(
    "path", ["/api/runs/0", "/api/runs/-1", f"/api/runs/{2**63}", f"/api/alerts/{10**30}"]
)
async def test_ids_outside_64_bits_are_a_422(state: DaemonState, path: str) -> None:
    assert (await client(state).get(path)).status_code == 422
    assert (await client(state).post(f"{path}/approve", json={})).status_code in (404, 422)
    assert (await client(state).post(f"{path}/ack", json={})).status_code in (404, 422)


async def test_the_largest_id_is_a_404(state: DaemonState) -> None:
    assert (await client(state).get(f"/api/runs/{2**63 - 1}")).status_code == 404
    assert (await client(state).delete(f"/api/silences/{2**63 - 1}")).status_code == 404


@pytest.mark.parametrize("length", ["1000000000d", "366d", "9" * 38 + "s", "0s", "2y"])
async def test_durations_beyond_a_year_or_not_positive_are_a_422(
    state: DaemonState, length: str
) -> None:
    alert_id = firing_alert(state)
    silence = await client(state).post(
        "/api/silences", json={"matchers": {"env": "prod"}, "for": length}
    )
    assert silence.status_code == 422, silence.text
    ack = await client(state).post(f"/api/alerts/{alert_id}/ack", json={"for": length})
    assert ack.status_code == 422, ack.text
    assert state.store.alerts.silences(include_ended=True) == []
    alert = state.store.alerts.get(alert_id)
    assert alert is not None and alert.acked_by is None


async def test_a_year_is_the_longest_silence(state: DaemonState) -> None:
    answer = await client(state).post("/api/silences", json={"matchers": {"env": "x"}, "for": "1y"})
    assert answer.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"matchers": {"env": "prod\x00"}, "for": "1h"},
        {"matchers": {"": "prod"}, "for": "1h"},
        {"matchers": {f"k{n}": "v" for n in range(100)}, "for": "1h"},
        {"matchers": {"env": "prod"}, "for": "1h", "comment": "a\x00b"},
        {"matchers": {"env": "prod"}, "for": "1h", "unknown": 1},
        {"matchers": {"env": "prod"}, "for": 3600},
        {"matchers": [], "for": "1h"},
        [],
    ],
)
async def test_silence_bodies_out_of_shape_are_a_422(state: DaemonState, body: Any) -> None:
    answer = await client(state).post("/api/silences", json=body)
    assert answer.status_code == 422, answer.text
    assert state.store.alerts.silences(include_ended=True) == []


async def test_query_parameters_that_are_not_text_are_a_4xx(state: DaemonState) -> None:
    for query in ("runbook=%FF%FE", "runbook=" + "a" * 5000, "limit=1e9", "limit=" + "9" * 5000):
        answer = await client(state).get(f"/api/runs?{query}")
        assert 400 <= answer.status_code < 500, (query, answer.status_code)


# --- finding 7: bodies are capped before they are read, and never echoed ---------------------


async def call(state: DaemonState, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> Any:
    """Drive the ASGI app directly; return (status, body, how many body chunks it read)."""
    app = create_app(state)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/silences", "raw_path": b"/api/silences",
        "query_string": b"", "root_path": "", "headers": headers,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9464),
    }  # fmt: skip
    read = 0
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read < len(chunks):
            read += 1
            return {
                "type": "http.request",
                "body": chunks[read - 1],
                "more_body": read < len(chunks),
            }
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = sent[0]["status"]
    body = b"".join(message.get("body", b"") for message in sent[1:])
    return status, body, read, dict(sent[0]["headers"])


def head(token: str | None, **extra: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"127.0.0.1:9464"), (b"content-type", b"application/json")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return headers + [
        (key.replace("_", "-").encode(), value.encode()) for key, value in extra.items()
    ]


async def test_an_unauthenticated_gigabyte_is_refused_unread(state: DaemonState) -> None:
    gigabyte = str(1 << 30)
    status, _, read, _ = await call(state, head(None, content_length=gigabyte), [b"x" * 65536])
    assert (status, read) == (401, 0)
    status, _, read, headers = await call(state, head(ALICE, content_length=gigabyte), [b"x"])
    assert (status, read, headers[b"connection"]) == (413, 0, b"close")


async def test_a_chunked_body_is_cut_off_at_the_cap(state: DaemonState) -> None:
    chunks = [b"x" * 1024] * 1000
    status, body, read, _ = await call(state, head(ALICE, transfer_encoding="chunked"), chunks)
    assert status == 413 and read == 5  # 4096 bytes allowed, the fifth KiB is one too many
    assert b"xxxx" not in body


async def test_a_422_does_not_echo_the_input(state: DaemonState) -> None:
    marker = "SECRET-MARKER-" + "z" * 3000
    answer = await client(state).post(
        "/api/silences", json={"matchers": {"env": "prod"}, "for": "1h", "comment": 7, "x": marker}
    )
    assert answer.status_code == 422
    assert "SECRET-MARKER" not in answer.text and "zzzz" not in answer.text
    assert {"loc", "msg", "type"} == set(answer.json()["detail"][0])
    broken = await client(state).post(
        "/api/silences",
        content=b'{"matchers": "' + marker.encode(),
        headers=FORM | {"Origin": BASE},
    )
    assert broken.status_code == 415
    invalid_json = await client(state).post(
        "/api/silences",
        content=b'{"matchers": "' + marker.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert invalid_json.status_code == 422 and "SECRET-MARKER" not in invalid_json.text


async def test_a_body_that_does_not_arrive_in_time_is_a_408(tmp_path: Path) -> None:
    slow = state_for(tmp_path, CONFIG.replace("max_body_bytes: 4096", "body_timeout: 200ms"))
    app = create_app(slow)
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/silences", "raw_path": b"/api/silences",
        "query_string": b"", "root_path": "", "headers": head(ALICE, content_length="100"),
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9464),
    }  # fmt: skip
    sent: list[MutableMapping[str, Any]] = []
    chunks = iter([b"{"])

    async def receive() -> dict[str, Any]:
        for chunk in chunks:
            return {"type": "http.request", "body": chunk, "more_body": True}
        await asyncio.sleep(3600)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async with asyncio.timeout(5):
        await app(scope, receive, send)
    assert sent[0]["status"] == 408
    slow.store.close()


async def test_a_reload_that_replaces_the_tokens_applies_at_once(
    state: DaemonState, tmp_path: Path
) -> None:
    api = client(state)
    assert (await api.get("/api/runs")).status_code == 200
    state.loaded = load_text(tmp_path, NO_TOKEN_CONFIG.replace(
        "runbooks:", 'engine: {api_tokens: {bob: "bob-token-0123456789abcd"}}\nrunbooks:'
    ), {})  # fmt: skip
    assert (await api.get("/api/runs")).status_code == 401
    assert (
        await client(state, token="bob-token-0123456789abcd").get("/api/runs")
    ).status_code == 200
