"""``upkeep ping`` never shows the heartbeat's id, not even inside the HTTP client's own
description of a failure (a redirect loop names the URL it was sent to)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from upkeep.cli.ping import send_ping

HEARTBEAT_ID = "hb-9d1e5c2a7b3f4e8d9a0c"


@pytest.fixture
async def looping_server() -> AsyncIterator[str]:
    """A server that sends every request back to where it came from, forever."""

    async def again(request: web.Request) -> web.Response:
        raise web.HTTPFound(location=str(request.rel_url))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", again)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_a_redirect_loop_is_reported_without_the_id(looping_server: str) -> None:
    outcome = await send_ping(looping_server, HEARTBEAT_ID, "/fail", b"", retries=0)
    assert not outcome.ok
    assert "/ping/***/fail" in outcome.reason
    assert HEARTBEAT_ID not in outcome.reason
