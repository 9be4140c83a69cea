"""TCP targets: can a connection be opened, and how fast."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import ClassVar, Literal

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
)


class TcpTarget(TargetBase):
    """A host and port that should accept TCP connections."""

    kind: Literal["tcp"] = "tcp"
    host: str = Field(description="host name or address")
    port: int = Field(ge=1, le=65535, description="TCP port")


class ConnectProbe(Probe[TcpTarget, StrictModel]):
    """Open a TCP connection and close it again."""

    target_kind: ClassVar[str] = "tcp"
    name: ClassVar[str] = "connect"
    summary: ClassVar[str] = "Open a TCP connection; time the handshake."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("connect_ms", "number", "time to complete the TCP handshake"),
    )

    async def run(
        self, target: TcpTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given a host and port, connect; raise TargetUnreachable if refused or too slow."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(context.timeout_s):
                _, writer = await asyncio.open_connection(target.host, target.port)
        except TimeoutError as error:
            raise TargetUnreachable(
                f"{target.host}:{target.port} did not accept within {context.timeout_s:g}s"
            ) from error
        except OSError as error:
            raise TargetUnreachable(
                f"{target.host}:{target.port}: {error.strerror or error}"
            ) from error
        elapsed_ms = (time.perf_counter() - started) * 1000
        writer.close()
        # The peer resetting on close does not undo a completed handshake.
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return ProbeOutcome({"connect_ms": round(elapsed_ms, 3)}, message="connected")
