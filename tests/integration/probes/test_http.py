"""The HTTP request probe against real aiohttp servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from tests.conftest import run_probe
from upkeep.io.http import HttpClient
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.http import HttpTarget, RequestProbe

SLOW_S = 0.2
BODY = b"x" * 1234


async def ok(request: web.Request) -> web.Response:
    del request
    return web.Response(text="hello")


async def fail(request: web.Request) -> web.Response:
    del request
    return web.Response(status=500, text="boom")


async def slow(request: web.Request) -> web.Response:
    del request
    await asyncio.sleep(SLOW_S)
    return web.Response(text="late")


async def sized(request: web.Request) -> web.Response:
    del request
    return web.Response(body=BODY)


async def echo_method(request: web.Request) -> web.Response:
    return web.Response(text=f"{request.method} {await request.text()}")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/fail", fail)
    app.router.add_get("/slow", slow)
    app.router.add_get("/bytes", sized)
    app.router.add_route("*", "/echo", echo_method)
    return app


@contextlib.asynccontextmanager
async def serve(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve the test app on 127.0.0.1 on a free port; yield the port."""
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serve() as bound:
        yield bound


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_status_200(port: int, http_client: HttpClient) -> None:
    outcome = await run_probe(
        RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{port}/ok"}, http=http_client
    )
    assert outcome.metrics["status_code"] == 200
    assert outcome.metrics["body_bytes"] == len("hello")
    assert "cert_days_left" not in outcome.metrics
    assert outcome.message == "HTTP 200"


async def test_status_500_is_measured_not_unreachable(port: int, http_client: HttpClient) -> None:
    outcome = await run_probe(
        RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{port}/fail"}, http=http_client
    )
    assert outcome.metrics["status_code"] == 500


async def test_response_time_covers_a_slow_handler(port: int, http_client: HttpClient) -> None:
    outcome = await run_probe(
        RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{port}/slow"}, http=http_client
    )
    elapsed = float(outcome.metrics["response_time_ms"])
    assert SLOW_S * 1000 <= elapsed < SLOW_S * 1000 + 500


async def test_body_bytes(port: int, http_client: HttpClient) -> None:
    outcome = await run_probe(
        RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{port}/bytes"}, http=http_client
    )
    assert outcome.metrics["body_bytes"] == len(BODY)


async def test_method_and_body_are_sent(port: int, http_client: HttpClient) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        {"url": f"http://127.0.0.1:{port}/echo", "method": "POST", "body": "ping"},
        http=http_client,
    )
    assert outcome.metrics["body_bytes"] == len("POST ping")


@contextlib.asynccontextmanager
async def https_server(tmp_path: Path, not_after: datetime) -> AsyncIterator[tuple[int, str]]:
    """Serve the app over TLS with a trustme certificate; yield the port and the CA file."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost", not_after=not_after)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    async with serve(server_context) as port:
        yield port, str(ca_path)


NOT_AFTER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=45)


async def test_https_is_verified_against_the_given_ca(tmp_path: Path) -> None:
    async with https_server(tmp_path, NOT_AFTER) as (port, ca_file):
        trusted = await run_probe(
            RequestProbe, HttpTarget, {"url": f"https://127.0.0.1:{port}/ok", "ca_file": ca_file}
        )
        with pytest.raises(TargetUnreachable):
            # Without the CA the same server is not trusted.
            await run_probe(RequestProbe, HttpTarget, {"url": f"https://127.0.0.1:{port}/ok"})
        unverified = await run_probe(
            RequestProbe, HttpTarget, {"url": f"https://127.0.0.1:{port}/ok", "verify_tls": False}
        )
    assert trusted.metrics["status_code"] == 200
    assert unverified.metrics["status_code"] == 200


async def test_https_reports_days_until_the_certificate_expires(tmp_path: Path) -> None:
    async with https_server(tmp_path, NOT_AFTER) as (port, ca_file):
        outcome = await run_probe(
            RequestProbe, HttpTarget, {"url": f"https://127.0.0.1:{port}/ok", "ca_file": ca_file}
        )
    expected = (NOT_AFTER - datetime.now(UTC)).total_seconds() / 86400
    assert float(outcome.metrics["cert_days_left"]) == pytest.approx(expected, abs=0.02)


async def test_connection_refused_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable):
        await run_probe(RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{free_port()}/"})


async def test_a_server_that_never_answers_is_unreachable_after_the_timeout() -> None:
    connections: list[asyncio.StreamWriter] = []
    handlers: set[asyncio.Task[object]] = set()

    async def accept_and_ignore(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        with contextlib.suppress(OSError):
            await reader.read()  # until the client gives up and closes
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(accept_and_ignore, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        started = time.perf_counter()
        with pytest.raises(TargetUnreachable, match="1s"):
            await run_probe(
                RequestProbe, HttpTarget, {"url": f"http://127.0.0.1:{port}/"}, timeout_s=1.0
            )
        elapsed = time.perf_counter() - started
    finally:
        server.close()
        for writer in connections:
            writer.transport.abort()
        if handlers:
            await asyncio.wait(handlers, timeout=2.0)
        await server.wait_closed()
    assert 0.9 <= elapsed < 2.0
    assert connections  # the connection was accepted; only the answer never came


def test_url_must_be_http_or_https() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HttpTarget.model_validate({"kind": "http", "url": "ftp://127.0.0.1/"})
