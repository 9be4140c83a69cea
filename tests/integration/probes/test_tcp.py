"""The TCP connect probe against real listeners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pydantic import ValidationError

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.tcp import ConnectProbe, TcpTarget


async def test_connect_to_a_listener() -> None:
    accepted = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        del reader
        accepted.set()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        outcome = await run_probe(ConnectProbe, TcpTarget, {"host": "127.0.0.1", "port": port})
        await asyncio.wait_for(accepted.wait(), 2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert set(outcome.metrics) == {"connect_ms"}
    assert 0.0 <= float(outcome.metrics["connect_ms"]) < 1000.0
    assert outcome.message == "connected"


async def test_refused_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    with pytest.raises(TargetUnreachable, match=f"127.0.0.1:{port}"):
        await run_probe(ConnectProbe, TcpTarget, {"host": "127.0.0.1", "port": port})


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_port_must_be_in_range(port: int) -> None:
    with pytest.raises(ValidationError):
        TcpTarget.model_validate({"kind": "tcp", "host": "127.0.0.1", "port": port})
