"""The TLS expiry probe against a real TLS server on 127.0.0.1 with a trustme CA."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.tls import ExpiryProbe, TlsTarget

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, ssl_context: ssl.SSLContext | None) -> AsyncIterator[int]:
    """Serve on 127.0.0.1 with a free port; yield the port; close every connection after."""
    writers: set[asyncio.StreamWriter] = set()
    tasks: set[asyncio.Task[object]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            tasks.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # A client that hangs up mid-conversation is the clients' business.
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0, ssl=ssl_context)
    port = int(server.sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()
        # Aborting ends each handler's read; waiting for them (rather than cancelling)
        # keeps asyncio from logging cancelled connection callbacks.
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        await server.wait_closed()


async def until_client_leaves(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    del writer
    await reader.read()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


NOT_AFTER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30, hours=6)


def days_until(moment: datetime) -> float:
    return (moment - datetime.now(UTC)).total_seconds() / 86400


async def test_valid_certificate_with_its_ca(ca: trustme.CA, ca_file: str) -> None:
    cert = ca.issue_cert("localhost", "127.0.0.1", not_after=NOT_AFTER)
    async with serving(until_client_leaves, server_context(cert)) as port:
        outcome = await run_probe(
            ExpiryProbe,
            TlsTarget,
            {"host": "127.0.0.1", "port": port, "server_name": "localhost", "ca_file": ca_file},
        )
    assert outcome.metrics["valid"] is True
    assert float(outcome.metrics["days_left"]) == pytest.approx(days_until(NOT_AFTER), abs=0.01)
    assert "is valid" in outcome.message


async def test_ip_address_host_is_checked_against_ip_names(ca: trustme.CA, ca_file: str) -> None:
    cert = ca.issue_cert("127.0.0.1", not_after=NOT_AFTER)
    async with serving(until_client_leaves, server_context(cert)) as port:
        outcome = await run_probe(
            ExpiryProbe, TlsTarget, {"host": "127.0.0.1", "port": port, "ca_file": ca_file}
        )
    assert outcome.metrics["valid"] is True


async def test_unknown_ca_is_invalid_but_still_measured(ca: trustme.CA) -> None:
    cert = ca.issue_cert("localhost", not_after=NOT_AFTER)
    async with serving(until_client_leaves, server_context(cert)) as port:
        outcome = await run_probe(
            ExpiryProbe,
            TlsTarget,
            {"host": "127.0.0.1", "port": port, "server_name": "localhost"},
        )
    assert outcome.metrics["valid"] is False
    assert float(outcome.metrics["days_left"]) == pytest.approx(days_until(NOT_AFTER), abs=0.01)
    assert "NOT valid" in outcome.message
    assert "issuer" in outcome.message  # "unable to get local issuer certificate"


async def test_wrong_hostname_is_invalid(ca: trustme.CA, ca_file: str) -> None:
    cert = ca.issue_cert("localhost", not_after=NOT_AFTER)
    async with serving(until_client_leaves, server_context(cert)) as port:
        outcome = await run_probe(
            ExpiryProbe,
            TlsTarget,
            {
                "host": "127.0.0.1",
                "port": port,
                "server_name": "wrong.example",
                "ca_file": ca_file,
            },
        )
    assert outcome.metrics["valid"] is False
    assert "wrong.example" in outcome.message
    assert float(outcome.metrics["days_left"]) == pytest.approx(days_until(NOT_AFTER), abs=0.01)


async def test_expired_certificate_has_negative_days_and_is_invalid(
    ca: trustme.CA, ca_file: str
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    expired_at = now - timedelta(days=2)
    cert = ca.issue_cert("localhost", not_before=now - timedelta(days=30), not_after=expired_at)
    async with serving(until_client_leaves, server_context(cert)) as port:
        outcome = await run_probe(
            ExpiryProbe,
            TlsTarget,
            {"host": "127.0.0.1", "port": port, "server_name": "localhost", "ca_file": ca_file},
        )
    assert outcome.metrics["valid"] is False
    assert float(outcome.metrics["days_left"]) == pytest.approx(days_until(expired_at), abs=0.01)
    assert "expired" in outcome.message


async def test_refused_connection_is_unreachable() -> None:
    with pytest.raises(TargetUnreachable, match=r"127\.0\.0\.1"):
        await run_probe(ExpiryProbe, TlsTarget, {"host": "127.0.0.1", "port": free_port()})


async def test_a_server_that_never_handshakes_is_unreachable_within_the_timeout() -> None:
    async with serving(until_client_leaves, None) as port:
        started = time.perf_counter()
        with pytest.raises(TargetUnreachable, match=r"no TLS handshake within 0\.5s"):
            await run_probe(
                ExpiryProbe, TlsTarget, {"host": "127.0.0.1", "port": port}, timeout_s=0.5
            )
        assert time.perf_counter() - started < 1.5


async def test_a_plain_text_server_fails_the_handshake(ca_file: str) -> None:
    async def speak_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with serving(speak_http, None) as port:
        with pytest.raises(TargetUnreachable, match="TLS handshake failed"):
            await run_probe(
                ExpiryProbe, TlsTarget, {"host": "127.0.0.1", "port": port, "ca_file": ca_file}
            )


async def test_missing_ca_file_is_a_probe_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="ca_file"):
        await run_probe(
            ExpiryProbe,
            TlsTarget,
            {"host": "127.0.0.1", "port": free_port(), "ca_file": str(tmp_path / "none.pem")},
        )


def test_target_defaults() -> None:
    target = TlsTarget.model_validate({"kind": "tls", "host": "example.com"})
    assert (target.port, target.server_name, target.ca_file) == (443, None, None)
