"""Accounts through the real ASGI app over a real SQLite store: signing in and out, cookies,
CSRF, the sign-in rate limit, ``next``, roles and token scopes on every changing route,
and the accounts API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from tests.unit.web import test_guard as guarded
from tests.unit.web.test_scopes import api_routes
from upkeep.core.access import Role, Scope
from upkeep.store import accounts as accounts_module
from upkeep.web.app import DaemonState, create_app
from upkeep.web.auth import LoginLimiter, safe_next
from upkeep.web.guard import SAFE_METHODS, SESSION_COOKIE

BASE = "http://127.0.0.1:9464"
PASSWORD = "correct horse battery"
CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "password_hasher", lambda: CHEAP)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    """The guard tests' daemon: tokens alice and ci, public_url https, a check and a
    runbook waiting for approval."""
    (tmp_path / "guarded").mkdir()
    found = guarded.state_for(tmp_path / "guarded", guarded.CONFIG)
    yield found
    found.store.close()


def browser(app: Any, address: str = "127.0.0.1", base: str = BASE) -> httpx.AsyncClient:
    """A client as a browser on ``address`` sends: pages preferred, its own origin."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 50000)),
        base_url=base,
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Origin": base},
    )


def with_session(state: DaemonState, app: Any, name: str, role: Role) -> tuple[Any, str]:
    """Add a user, open a session for them; return a client sending its cookie, and the
    session's CSRF token."""
    user = state.store.accounts.add_user(name, role, PASSWORD, created_by="test")
    opened = state.store.accounts.open_session(user)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE, headers={"Origin": BASE}
    )
    client.cookies.set(SESSION_COOKIE, opened.secret)
    return client, opened.record.csrf_token


def with_token(app: Any, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
        headers={"Authorization": f"Bearer {token}"},
    )


async def sign_in(
    client: httpx.AsyncClient, name: str, password: str, next_path: str = "/"
) -> httpx.Response:
    form = await client.get("/login", params={"next": next_path})
    assert form.status_code == 200, form.text
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found is not None
    return await client.post(
        "/login",
        data={"username": name, "password": password, "csrf": found.group(1), "next": next_path},
    )


def cookie_attributes(response: httpx.Response, name: str) -> dict[str, str]:
    for header in response.headers.get_list("set-cookie"):
        if header.startswith(f"{name}="):
            parts = [part.strip() for part in header.split(";")]
            attributes = {"value": parts[0].partition("=")[2]}
            for part in parts[1:]:
                key, _, value = part.partition("=")
                attributes[key.lower()] = value
            return attributes
    raise AssertionError(f"no {name} cookie set: {response.headers.get_list('set-cookie')}")


# --- signing in and out ---------------------------------------------------------------------


async def test_a_browser_signs_in_acts_with_its_csrf_token_and_signs_out(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    daemon_state.store.accounts.add_user("otto", Role.OPERATOR, PASSWORD, created_by="test")
    client = browser(daemon_app)
    page = await client.get("/runs/5", params={"x": "1"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fruns%2F5%3Fx%3D1"
    api = await client.get("/api/runs", headers={"Accept": "application/json"})
    assert api.status_code == 401 and "sign in" in api.json()["detail"]

    form = await client.get("/login", params={"next": "/runs/5"})
    assert form.headers["content-security-policy"].startswith("default-src 'self'")
    assert form.headers["x-frame-options"] == "DENY"
    assert '<label for="username">' in form.text and '<label for="password">' in form.text
    login_cookie = cookie_attributes(form, "upkeep_login_csrf")
    assert "httponly" in login_cookie and login_cookie["samesite"].lower() == "strict"

    signed = await sign_in(client, "otto", PASSWORD, "/runs/5")
    assert signed.status_code == 303 and signed.headers["location"] == "/runs/5"
    session = cookie_attributes(signed, SESSION_COOKIE)
    assert "httponly" in session and session["samesite"].lower() == "strict"
    assert session["path"] == "/" and "secure" not in session  # plain http, no https URL
    assert int(session["max-age"]) == 12 * 3600

    me = (await client.get("/api/me")).json()
    assert (me["actor"], me["role"], me["scopes"]) == (
        "user:otto",
        "operator",
        ["ack", "read", "run"],
    )
    token = me["csrf_token"]
    body = {"matchers": {"check": "db"}, "for": "1h"}
    missing = await client.post("/api/silences", json=body)
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    wrong = await client.post("/api/silences", json=body, headers={"X-CSRF-Token": "x" + token})
    assert wrong.status_code == 403
    made = await client.post("/api/silences", json=body, headers={"X-CSRF-Token": token})
    assert made.status_code == 201, made.text
    assert daemon_state.store.alerts.silences()[0].author == "user:otto"

    refused = await client.post("/logout", data={"csrf_token": "wrong"})
    assert refused.status_code == 403
    assert (await client.get("/api/me")).status_code == 200
    out = await client.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert daemon_state.store.accounts.count_sessions("otto") == 0
    assert (await client.get("/api/me", headers={"Accept": "application/json"})).status_code == 401


async def test_cookies_are_secure_when_served_over_https_or_the_public_url_is(
    state: DaemonState, daemon_state: DaemonState, daemon_app: Any
) -> None:
    daemon_state.store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="test")
    over_https = browser(daemon_app, base="https://127.0.0.1:9464")
    signed = await sign_in(over_https, "ann", PASSWORD)
    assert "secure" in cookie_attributes(signed, SESSION_COOKIE)
    # The guard tests' config has an https public_url: even plain http sets Secure.
    form = await browser(create_app(state)).get("/login")
    assert "secure" in cookie_attributes(form, "upkeep_login_csrf")


async def test_a_new_session_replaces_the_one_a_browser_brought(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    client, _ = with_session(daemon_state, daemon_app, "ann", Role.ADMIN)
    before = client.cookies[SESSION_COOKIE]
    client.headers["Accept"] = "text/html"
    again = await client.get("/login", params={"next": "/x"})
    assert again.status_code == 303 and again.headers["location"] == "/x"  # signed in already
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, before)
    client.cookies.set("upkeep_login_csrf", "k" * 43)
    posted = await client.post(
        "/login", data={"username": "ann", "password": PASSWORD, "csrf": "k" * 43}
    )
    assert posted.status_code == 303
    after = cookie_attributes(posted, SESSION_COOKIE)["value"]
    assert after != before
    assert daemon_state.store.accounts.session_for(before) is None
    assert daemon_state.store.accounts.session_for(after) is not None


async def test_the_sign_in_form_needs_its_own_token_and_origin(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    daemon_state.store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="test")
    fields = {"username": "ann", "password": PASSWORD, "csrf": "k" * 43}
    no_cookie = await browser(daemon_app).post("/login", data=fields)
    assert no_cookie.status_code == 403 and SESSION_COOKIE not in str(no_cookie.headers)
    mismatched = browser(daemon_app)
    mismatched.cookies.set("upkeep_login_csrf", "j" * 43)
    assert (await mismatched.post("/login", data=fields)).status_code == 403
    foreign = browser(daemon_app)
    foreign.cookies.set("upkeep_login_csrf", "k" * 43)
    cross = await foreign.post("/login", data=fields, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403
    site = await foreign.post("/login", data=fields, headers={"Sec-Fetch-Site": "cross-site"})
    assert site.status_code == 403
    as_json = await foreign.post("/login", json=fields)
    assert as_json.status_code == 415
    assert daemon_state.store.accounts.count_sessions("ann") == 0
    ok = await foreign.post("/login", data=fields)
    assert ok.status_code == 303


async def test_what_a_user_typed_is_escaped_on_the_page(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    client = browser(daemon_app)
    client.cookies.set("upkeep_login_csrf", "k" * 43)
    answer = await client.post(
        "/login",
        data={"username": '"><script>alert(1)</script>', "password": "x", "csrf": "k" * 43},
    )
    assert answer.status_code == 401
    assert "<script>alert(1)" not in answer.text and "&lt;script&gt;" in answer.text


async def test_failed_sign_ins_are_limited_per_address_and_per_name(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    for name in ("vera", "otto"):
        daemon_state.store.accounts.add_user(name, Role.VIEWER, PASSWORD, created_by="test")
    attacker = browser(daemon_app, "10.0.0.66")
    for _ in range(5):
        assert (await sign_in(attacker, "vera", "wrong password")).status_code == 401
    limited = await sign_in(attacker, "vera", PASSWORD)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 15 * 60
    assert "Too many failed attempts" in limited.text
    # The address is limited for every name, and the name from every address ...
    assert (await sign_in(attacker, "otto", PASSWORD)).status_code == 429
    assert (await sign_in(browser(daemon_app, "10.0.0.7"), "vera", PASSWORD)).status_code == 429
    # ... but another user at another address signs in.
    assert (await sign_in(browser(daemon_app, "10.0.0.7"), "otto", PASSWORD)).status_code == 303
    assert daemon_state.store.accounts.count_sessions("vera") == 0


def test_the_limiter_forgets_old_failures_and_stays_bounded() -> None:
    now = [0.0]
    limiter = LoginLimiter(max_failures=2, window_s=60, max_keys=100, clock=lambda: now[0])
    limiter.failed(["a"])
    limiter.failed(["a"])
    assert limiter.retry_after(["a"]) == 60
    assert limiter.retry_after(["b"]) is None
    now[0] = 30.0
    assert limiter.retry_after(["a"]) == 30
    now[0] = 60.0
    assert limiter.retry_after(["a"]) is None
    for number in range(10_000):
        limiter.failed([f"name:{number}"])
    assert len(limiter) == 100
    limiter.failed(["x"])
    limiter.succeeded(["x"])
    assert limiter.retry_after(["x"]) is None


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/ok\nLocation: https://evil.example",
        "",
        "/" + "a" * 3000,
    ],
)
async def test_next_never_leaves_the_site(
    daemon_state: DaemonState, daemon_app: Any, target: str
) -> None:
    assert safe_next(target) == "/"
    daemon_state.store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="test")
    signed = await sign_in(browser(daemon_app), "ann", PASSWORD, target)
    assert signed.status_code == 303 and signed.headers["location"] == "/"


def test_next_keeps_a_path_of_this_site() -> None:
    assert safe_next("/runs/5?x=1#steps") == "/runs/5?x=1#steps"
    assert safe_next("/") == "/"


# --- roles and scopes on every changing route -----------------------------------------------


def changing_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the API that changes something, with ids filled in."""
    found: list[tuple[str, str]] = []
    for route in api_routes(app):
        path = re.sub(r"\{name\}", "somebody", route.path)
        path = re.sub(r"\{[^}]+\}", "1", path)
        found.extend((method, path) for method in sorted((route.methods or set()) - SAFE_METHODS))
    return found


async def test_a_viewer_can_change_nothing_through_any_route(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    routes = changing_routes(daemon_app)
    assert ("POST", "/api/runs/1/approve") in routes and ("POST", "/api/users") in routes
    client, csrf = with_session(daemon_state, daemon_app, "vera", Role.VIEWER)
    for method, path in routes:
        answer = await client.request(method, path, json={}, headers={"X-CSRF-Token": csrf})
        assert answer.status_code == 403, (method, path, answer.text)
        assert "user:vera may not do this" in answer.json()["detail"], (method, path)
    assert (await client.get("/api/runs")).status_code == 200


async def test_a_read_token_changes_nothing_and_an_ack_token_acks_but_never_approves(
    state: DaemonState,
) -> None:
    app = create_app(state)
    reader, _ = state.store.accounts.add_token("dash", frozenset({Scope.READ}), created_by="t")
    for method, path in changing_routes(app):
        answer = await with_token(app, reader).request(method, path, json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert "api:dash may not do this" in answer.json()["detail"]
    assert (await with_token(app, reader).get("/api/alerts")).status_code == 200

    acker, _ = state.store.accounts.add_token(
        "pager", frozenset({Scope.READ, Scope.ACK}), created_by="t"
    )
    alert_id, run_id = guarded.firing_alert(state), guarded.waiting_run(state.store)
    acked = await with_token(app, acker).post(f"/api/alerts/{alert_id}/ack", json={})
    assert acked.status_code == 200, acked.text
    alert = state.store.alerts.get(alert_id)
    assert alert is not None and alert.acked_by == "api:pager"
    approve = await with_token(app, acker).post(f"/api/runs/{run_id}/approve", json={})
    assert approve.status_code == 403 and "'approve' scope" in approve.json()["detail"]
    assert state.store.runs.step_decision(run_id, 0) == (None, None)


async def test_a_token_nobody_has_is_a_401_and_never_falls_back_to_the_cookie(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    client, csrf = with_session(daemon_state, daemon_app, "ann", Role.ADMIN)
    answer = await client.get("/api/me", headers={"Authorization": "Bearer upk_unknown"})
    assert answer.status_code == 401
    expired, _ = daemon_state.store.accounts.add_token(
        "old", frozenset({Scope.READ}), created_by="t"
    )
    daemon_state.store.accounts.remove_token("old")
    assert (await with_token(daemon_app, expired).get("/api/me")).status_code == 401
    assert (await client.get("/api/me")).json()["actor"] == "user:ann"
    del csrf


# --- the accounts API -----------------------------------------------------------------------


async def test_an_admin_manages_users_and_tokens_through_the_api(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    admin, csrf = with_session(daemon_state, daemon_app, "ann", Role.ADMIN)
    headers = {"X-CSRF-Token": csrf}
    added = await admin.post(
        "/api/users",
        json={"name": "otto", "role": "operator", "password": PASSWORD},
        headers=headers,
    )
    assert added.status_code == 201, added.text
    assert added.json()["created_by"] == "user:ann" and PASSWORD not in added.text
    taken = await admin.post(
        "/api/users", json={"name": "otto", "role": "viewer", "password": PASSWORD}, headers=headers
    )
    assert taken.status_code == 409
    weak = await admin.post(
        "/api/users", json={"name": "weak", "role": "viewer", "password": "short"}, headers=headers
    )
    assert weak.status_code == 422 and "short" not in weak.text
    bad_name = await admin.post(
        "/api/users", json={"name": "<b>", "role": "viewer", "password": PASSWORD}, headers=headers
    )
    assert bad_name.status_code == 422 and "<b>" not in bad_name.text
    listed = (await admin.get("/api/users")).json()
    assert [(u["name"], u["role"]) for u in listed] == [("ann", "admin"), ("otto", "operator")]
    assert "hash" not in str(listed)

    otto_client, _ = browser(daemon_app), None
    assert (await sign_in(otto_client, "otto", PASSWORD)).status_code == 303
    demoted = await admin.patch("/api/users/otto", json={"role": "viewer"}, headers=headers)
    assert demoted.status_code == 200 and demoted.json()["role"] == "viewer"
    assert (await otto_client.get("/api/me")).json()["role"] == "viewer"
    reset = await admin.patch(
        "/api/users/otto", json={"password": "a new long password"}, headers=headers
    )
    assert reset.status_code == 200
    assert (await otto_client.get("/api/me", headers={"Accept": "*/*"})).status_code == 401
    assert (await admin.patch("/api/users/ghost", json={}, headers=headers)).status_code == 404

    made = await admin.post(
        "/api/tokens",
        json={"name": "ci", "scopes": ["read", "run"], "expires_in": "30d"},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["created_by"] == "user:ann" and made.json()["expires_at"]
    tokens = await admin.get("/api/tokens")
    assert [t["name"] for t in tokens.json()] == ["ci"] and token not in tokens.text
    me = (await with_token(daemon_app, token).get("/api/me")).json()
    assert (me["actor"], me["scopes"], me["csrf_token"]) == ("api:ci", ["read", "run"], None)
    clash = await admin.post(
        "/api/tokens", json={"name": "ops", "scopes": ["read"]}, headers=headers
    )
    assert clash.status_code == 409  # engine.api_tokens has ops
    too_long = await admin.post(
        "/api/tokens", json={"name": "x", "scopes": ["read"], "expires_in": "5y"}, headers=headers
    )
    assert too_long.status_code == 422
    removed = await admin.delete("/api/tokens/ci", headers=headers)
    assert removed.status_code == 200
    assert (await with_token(daemon_app, token).get("/api/me")).status_code == 401
    assert (await admin.delete("/api/tokens/ci", headers=headers)).status_code == 404

    gone = await admin.delete("/api/users/otto", headers=headers)
    assert gone.status_code == 200
    assert (await admin.delete("/api/users/otto", headers=headers)).status_code == 404
    assert [u["name"] for u in (await admin.get("/api/users")).json()] == ["ann"]


async def test_an_operator_cannot_read_the_accounts(
    daemon_state: DaemonState, daemon_app: Any
) -> None:
    client, _ = with_session(daemon_state, daemon_app, "otto", Role.OPERATOR)
    for path in ("/api/users", "/api/tokens"):
        answer = await client.get(path)
        assert answer.status_code == 403 and "'admin' scope" in answer.json()["detail"]


async def test_a_config_token_keeps_every_scope(daemon_app: Any) -> None:
    me = (await with_token(daemon_app, "t0ken-for-the-api-7f3a").get("/api/me")).json()
    assert me["actor"] == "api:ops" and me["scopes"] == sorted(scope.value for scope in Scope)
