"""Which paths the guard opens to anyone: the public ones, and nothing that merely begins
with the same letters (``/statusXYZ``, ``/api/docsXYZ``)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from upkeep.web.guard import ApiGuard, GuardSettings, is_open_path


async def _reached(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"reached"})


def _guard() -> ApiGuard:
    settings = GuardSettings(
        tokens={},
        host_names=frozenset(),
        origins=frozenset(),
        max_body_bytes=1024,
        body_timeout_s=1.0,
    )
    return ApiGuard(_reached, settings=lambda: settings)


@pytest.mark.parametrize(
    "path",
    [
        "/status",
        "/status.json",
        "/status/feed.atom",
        "/status/badge/web/status.svg",
        "/api/docs",
        "/api/docs/swagger-ui.css",
        "/static/dashboard.js",
        "/healthz",
    ],
)
async def test_public_paths_pass_without_a_credential(path: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_guard()), base_url="http://127.0.0.1:9464"
    ) as client:
        answer = await client.get(path)
    assert answer.status_code == 200 and answer.text == "reached"
    assert is_open_path(path)


@pytest.mark.parametrize(
    "path", ["/statusXYZ", "/status-admin", "/status.jsonp", "/api/docsXYZ", "/api/docs.json"]
)
async def test_paths_that_only_begin_like_a_public_one_need_a_credential(path: str) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=_guard()), base_url="http://127.0.0.1:9464"
    ) as client:
        answer = await client.get(path)
    assert answer.status_code == 401 and answer.text != "reached"
    assert not is_open_path(path)


def test_the_schema_asks_a_token_of_exactly_what_the_guard_does_not_open(
    daemon_app: Any,
) -> None:
    paths = daemon_app.openapi()["paths"]
    for path in ("/status", "/status.json", "/status/feed.atom", "/healthz"):
        assert "security" not in paths[path]["get"], path
    assert "security" in paths["/api/checks"]["get"]
    assert "security" in paths["/api/incidents/{incident_id}/updates"]["post"]
