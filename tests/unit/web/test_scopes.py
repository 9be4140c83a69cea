"""Every API route names the one scope it needs, and a role holds only its scopes."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from upkeep.core.access import ROLE_SCOPES, Principal, Role, Scope, parse_scopes
from upkeep.web.guard import SAFE_METHODS, is_open_path

OPEN_ROUTES = frozenset({"/healthz", "/metrics", "/api/openapi.json"})
"""Routes that answer without a credential (the guard lets them through)."""
ADMIN_READS = ("/api/users", "/api/tokens")
"""Reads that need the admin scope: the accounts."""


def _scopes_of(route: APIRoute) -> list[Scope]:
    found: list[Scope] = []
    stack: list[Any] = [route.dependant]
    while stack:
        dependant = stack.pop()
        scope = getattr(dependant.call, "required_scope", None)
        if isinstance(scope, Scope):
            found.append(scope)
        stack.extend(dependant.dependencies)
    return found


def api_routes(app: Any) -> list[APIRoute]:
    """Given an app, return its routes under /api that need a credential, those of included
    routers too (FastAPI keeps an included router whole in ``app.routes``; its routes are
    only reached through ``iter_route_contexts``)."""
    from fastapi.routing import iter_route_contexts

    found: list[APIRoute] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if (
            isinstance(route, APIRoute)
            and route.path.startswith("/api/")
            and route.path not in OPEN_ROUTES
            and not is_open_path(route.path)
            and route.path == context.path
        ):
            found.append(route)
    return found


def test_the_walk_reaches_the_routes_of_included_routers(daemon_app: Any) -> None:
    paths = {route.path for route in api_routes(daemon_app)}
    assert {"/api/runs", "/api/alerts", "/api/silences", "/api/users", "/api/me"} <= paths


def test_every_api_route_declares_exactly_one_scope(daemon_app: Any) -> None:
    routes = api_routes(daemon_app)
    assert routes
    for route in routes:
        methods = route.methods or set()
        scopes = _scopes_of(route)
        assert len(scopes) == 1, f"{sorted(methods)} {route.path} declares {scopes}"
        if methods <= SAFE_METHODS and route.path.startswith(ADMIN_READS):
            # Who has an account, and which tokens exist, is for admins only.
            assert scopes == [Scope.ADMIN], f"{route.path} reads accounts but needs {scopes}"
        elif methods <= SAFE_METHODS:
            assert scopes == [Scope.READ], f"{route.path} reads but needs {scopes}"
        else:
            assert scopes[0] != Scope.READ, f"{sorted(methods)} {route.path} changes "
            "something with only the read scope"


def test_a_viewer_may_only_read_and_an_admin_may_do_everything() -> None:
    viewer = Principal.user("vera", Role.VIEWER)
    assert [scope for scope in Scope if viewer.allows(scope)] == [Scope.READ]
    assert viewer.actor == "user:vera"
    operator = Principal.user("otto", Role.OPERATOR)
    assert not operator.allows(Scope.APPROVE) and not operator.allows(Scope.ADMIN)
    assert ROLE_SCOPES[Role.ADMIN] == frozenset(Scope)
    assert Principal.token("ci", frozenset({Scope.RUN})).actor == "api:ci"


def test_scopes_parse_and_unknown_ones_are_named() -> None:
    assert parse_scopes("read, ack") == {Scope.READ, Scope.ACK}
    with pytest.raises(ValueError, match="'root'"):
        parse_scopes("read,root")
