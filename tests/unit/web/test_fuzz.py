"""No request yields a 500: hypothesis drives the real ASGI app with arbitrary requests.

Methods, paths (the API's own routes with ids and segments of any size and text), query
strings and header values of arbitrary bytes, headers said twice, credentials right,
wrong and malformed, content types, and bodies that are JSON near the API's models, JSON
hard to take in (deep nesting, numbers past int() or float range) or just bytes. The app is
called directly (no HTTP parser in front), so what h11 would already refuse reaches it
too. The store is real SQLite, and requests that pass change it, so later ones meet
acknowledged alerts and silences.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.web.test_guard import ALICE, CI, firing_alert, state_for, waiting_run
from upkeep.web.app import create_app

CONFIG = """\
engine:
  api_tokens: {alice: "${ALICE}", ci: "${CI_DIGEST}"}
  http: {max_body_bytes: 2048}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
checks:
  api-up: {target: api}
runbooks:
  deploy:
    steps:
      - approval: Ship it?
"""

ids = st.one_of(
    st.integers(min_value=1, max_value=3).map(str),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["1", "2", "0", "-0", "1e3", "0x10", "", "%00", "\u0661"]),
    st.text(max_size=30).map(lambda text: text.replace("/", "")),
)
paths = st.one_of(
    st.sampled_from(["/healthz", "/metrics", "/api/runs", "/api/alerts", "/api/silences"]),
    st.builds("/api/runs/{}".format, ids),
    st.builds("/api/runs/{}/approve".format, ids),
    st.builds("/api/runs/{}/reject".format, ids),
    st.builds("/api/alerts/{}".format, ids),
    st.builds("/api/alerts/{}/ack".format, ids),
    st.builds("/api/silences/{}".format, ids),
    st.sampled_from(["/login", "/logout", "/api/me", "/api/users", "/api/tokens"]),
    st.builds("/api/users/{}".format, ids),
    st.builds("/api/tokens/{}".format, ids),
    st.text(max_size=60).map(lambda text: "/" + text),
)
queries = st.one_of(
    st.just(b""),
    st.builds(
        lambda key, value: key + b"=" + value,
        st.sampled_from([b"limit", b"runbook", b"all", b"by"]),
        st.one_of(
            st.binary(max_size=40), st.integers(-(2**80), 2**80).map(lambda n: str(n).encode())
        ),
    ),
    st.binary(max_size=100),
)
header_values = st.one_of(st.binary(max_size=60), st.text(max_size=60).map(str.encode))
valid_tokens = st.sampled_from([f"Bearer {ALICE}".encode(), f"Bearer {CI}".encode()])
authorizations = st.one_of(
    # Half the requests carry a valid token, so the fuzzing reaches the routes behind it.
    valid_tokens,
    st.one_of(
        st.none(),
        st.just(b"bearer  " + ALICE.encode()),
        header_values,
        header_values.map(lambda value: b"Bearer " + value),
    ),
)
content_types = st.one_of(
    st.sampled_from([b"application/json", b"application/json; charset=utf-8"]),
    st.one_of(
        st.none(),
        st.sampled_from([b"text/plain", b"APPLICATION/JSON", b"application/x-www-form-urlencoded"]),
        header_values,
    ),
)
cookies = st.one_of(
    st.none(),
    st.sampled_from([b"upkeep_session=abc", b"upkeep_login_csrf=" + b"k" * 43, b"a=b; c"]),
    header_values.map(lambda value: b"upkeep_session=" + value),
    header_values,
)
durations = st.one_of(
    st.sampled_from(["1h", "1y", "366d", "1000000000d", "0s", "1e9s", "9" * 39 + "s", "soon"]),
    st.text(max_size=45),
    st.integers(),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
model_bodies = st.fixed_dictionaries(
    {},
    optional={
        "matchers": st.one_of(
            st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=40), json_values
        ),
        "for": durations,
        "comment": st.one_of(st.text(max_size=100), json_values),
        "by": st.text(max_size=10),
        "name": st.one_of(st.sampled_from(["ann", "ops", "<b>"]), st.text(max_size=70)),
        "role": st.one_of(st.sampled_from(["viewer", "admin"]), json_values),
        "password": st.one_of(st.text(max_size=20), json_values),
        "scopes": st.one_of(st.lists(st.sampled_from(["read", "ack", "root"])), json_values),
        "expires_in": durations,
        "disabled": json_values,
    },
)
# JSON that is valid but hard to take in: nesting past any recursion limit, numbers past
# the digits int() takes, numbers past a float's range.
hostile_json = st.one_of(
    st.integers(min_value=1, max_value=1000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(min_value=1, max_value=1000).map(
        lambda depth: b'{"matchers":' * depth + b"{}" + b"}" * depth
    ),
    st.integers(min_value=1, max_value=2000).map(lambda digits: b'{"for": ' + b"9" * digits + b"}"),
    st.sampled_from([b'{"for": 1e999}', b'{"comment": -1e999}', b"NaN", b'{"for": NaN}']),
)
bodies = st.one_of(
    st.just(b""),
    model_bodies.map(lambda body: json.dumps(body).encode()),
    json_values.map(lambda value: json.dumps(value).encode()),
    hostile_json,
    st.binary(max_size=3000),
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A request: half of them well formed (right Host, a valid token, JSON of the right
    length) so the routes behind the guard are fuzzed, the others arbitrary throughout."""
    well_formed = draw(st.booleans())
    headers: list[tuple[bytes, bytes]] = []
    if well_formed:
        headers += [
            (b"host", draw(st.sampled_from([b"127.0.0.1:9464", b"localhost", b"[::1]:1"]))),
            (b"authorization", draw(valid_tokens)),
            (b"content-type", b"application/json"),
        ]
        body = draw(
            st.one_of(
                st.just(b""), model_bodies.map(lambda body: json.dumps(body).encode()), hostile_json
            )
        )
        headers.append((b"content-length", str(len(body)).encode()))
        method = draw(st.sampled_from(["GET", "POST", "DELETE", "PATCH"]))
    else:
        for name, strategy in (
            (
                b"host",
                st.one_of(
                    st.none(), st.just(b"127.0.0.1"), st.just(b"evil.example"), header_values
                ),
            ),
            (b"authorization", authorizations),
            (b"cookie", cookies),
            (b"accept", st.one_of(st.none(), st.just(b"text/html"), header_values)),
            (b"content-type", content_types),
            (b"origin", st.one_of(st.none(), st.just(b"http://127.0.0.1:9464"), header_values)),
            (
                b"sec-fetch-site",
                st.one_of(st.none(), st.sampled_from([b"same-origin", b"cross-site"])),
            ),
        ):
            value = draw(strategy)
            if value is not None:
                headers.append((name, value))
        body = draw(bodies)
        framing = draw(st.sampled_from(["length", "chunked", "wrong-length", "none"]))
        if framing == "length":
            headers.append((b"content-length", str(len(body)).encode()))
        elif framing == "chunked":
            headers.append((b"transfer-encoding", b"chunked"))
        elif framing == "wrong-length":
            headers.append((b"content-length", draw(header_values)))
        method = draw(st.sampled_from(["GET", "POST", "DELETE", "PUT", "HEAD", "OPTIONS", "PATCH"]))
    # Not `headers and draw(...)`: mypy would expect draw to return what `headers` holds.
    if len(headers) > 0 and draw(st.booleans()):
        # A header said twice, with the same value or another.
        name, value = draw(st.sampled_from(headers))
        headers.append((name, draw(st.one_of(st.just(value), header_values))))
    return {
        "method": method,
        "path": draw(paths),
        "query_string": draw(queries),
        "headers": headers,
        "body": body,
    }


async def drive(app: Any, request: dict[str, Any]) -> int:
    """Send one request to the ASGI app; return the status it answered with."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
        "method": request["method"], "path": request["path"],
        "raw_path": request["path"].encode("utf-8", "surrogatepass"),
        "query_string": request["query_string"], "root_path": "", "headers": request["headers"],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 9464),
    }  # fmt: skip
    body: bytes = request["body"]
    pieces = [body[index : index + 700] for index in range(0, len(body), 700)] or [b""]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pieces:
            piece = pieces.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
        await asyncio.sleep(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    starts = [message for message in sent if message["type"] == "http.response.start"]
    assert len(starts) == 1, sent
    return int(starts[0]["status"])


def test_no_request_is_answered_with_a_5xx(tmp_path: Path) -> None:
    state = state_for(tmp_path, CONFIG)
    waiting_run(state.store)
    firing_alert(state)
    app = create_app(state)
    statuses: dict[int, int] = {}

    @settings(
        max_examples=300,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=requests())
    def answered_below_500(request: dict[str, Any]) -> None:
        status = asyncio.run(drive(app, request))
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, request

    try:
        answered_below_500()
    finally:
        state.store.close()
    # The fuzzing reached the routes, not only the guard's refusals.
    assert {200, 401, 422} <= set(statuses), statuses
