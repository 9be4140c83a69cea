"""Heartbeat pings: ``/ping/<id>`` and its signals, as Healthchecks.io takes them.

``/ping/<id>`` (success), ``/ping/<id>/start``, ``/ping/<id>/fail``, ``/ping/<id>/log``
(a message only) and ``/ping/<id>/<exit code>`` (0 success, 1 to 255 failure) accept GET,
HEAD and POST, with or without a body of any content type (``curl -fsS -m 10 --retry 5
--data-binary @log``). The heartbeat's id is the credential: no token is needed (the
guard lets ``/ping/`` through with only its body cap and timeout), and an id that names no
configured heartbeat is the same 404 as a malformed one. The store keeps the ping under
the id's SHA-256, with the client's address and the end of its body, redacted.

Each heartbeat takes ``PING_BURST`` pings at once and ``PING_RATE`` a second after that
(429 beyond); buckets exist only for configured heartbeats, so memory stays bounded. A
ping the store cannot take is a 503, which ``curl --retry`` retries. Once stored, the
daemon is told (``DaemonState.on_ping``) so the heartbeat's checks run at once: a failure
ping alerts within seconds, not at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Path, Request, Response

from upkeep.probes.heartbeat import HEARTBEAT_ID_PATTERN, heartbeat_digests
from upkeep.store.pings import MAX_PING_BODY_CHARS, PingKind, heartbeat_digest

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)

PING_RATE = 5.0
"""Pings a second one heartbeat takes once its burst is spent."""
PING_BURST = 5.0
"""Pings one heartbeat takes at once."""
_ID = re.compile(HEARTBEAT_ID_PATTERN)
_TEXT = "text/plain; charset=utf-8"
_NOT_FOUND = "not found"

HeartbeatId = Annotated[
    str, Path(description="the heartbeat's id (its `id:` in the config): the credential")
]
Signal = Annotated[
    str,
    Path(description="`start`, `fail`, `log`, or an exit code 0 to 255 (0: success, else failure)"),
]
PING_RESPONSES: dict[int | str, dict[str, str]] = {
    200: {"description": "`OK`: the ping is recorded"},
    404: {"description": "no heartbeat has this id, or no such signal"},
    408: {"description": "the body did not arrive within engine.http.body_timeout"},
    413: {"description": "the body is larger than engine.http.max_body_bytes"},
    429: {"description": "more pings than this heartbeat takes (5 at once, 5 a second)"},
    503: {"description": "the store cannot take the ping now; retry"},
}


@dataclass
class _Bucket:
    tokens: float
    at: float


class PingLimiter:
    """A token bucket per heartbeat: ``burst`` pings at once, then ``rate`` a second."""

    def __init__(self, rate: float = PING_RATE, burst: float = PING_BURST) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, digest: str, now: float) -> bool:
        """Given a heartbeat's digest and a monotonic time, take a token and return True,
        or return False if its bucket is empty."""
        bucket = self._buckets.get(digest)
        if bucket is None:
            bucket = self._buckets[digest] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def keep_only(self, digests: set[str]) -> None:
        """Given the digests of the configured heartbeats, forget the buckets of others."""
        for digest in [known for known in self._buckets if known not in digests]:
            del self._buckets[digest]


def parse_signal(signal: str | None) -> tuple[PingKind, int | None] | None:
    """Given the path's signal segment (None: a plain ping), return the ping's kind and
    exit code, or None if it is no signal."""
    if signal is None:
        return PingKind.SUCCESS, None
    if signal in ("start", "fail", "log"):
        return PingKind(signal), None
    if signal.isdigit() and signal.isascii() and len(signal) <= 3 and int(signal) <= 255:
        code = int(signal)
        return (PingKind.SUCCESS if code == 0 else PingKind.FAIL), code
    return None


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return Response(content=text, status_code=status, media_type=_TEXT, headers=headers)


def ping_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the router of the ping routes."""
    router = APIRouter()
    limiter = PingLimiter()
    cache: dict[str, tuple[object, dict[str, tuple[str, ...]]]] = {}

    def index() -> dict[str, tuple[str, ...]]:
        loaded = state.loaded
        found = cache.get("index")
        if found is None or found[0] is not loaded:
            found = (loaded, heartbeat_digests(loaded.config.targets))
            cache["index"] = found
            limiter.keep_only(set(found[1]))
        return found[1]

    async def receive(request: Request, heartbeat_id: str, signal: str | None) -> Response:
        parsed = parse_signal(signal)
        digest = heartbeat_digest(heartbeat_id) if _ID.fullmatch(heartbeat_id) else ""
        targets = index().get(digest)
        if parsed is None or targets is None:
            return _text(404, _NOT_FOUND)
        if not limiter.allow(digest, time.monotonic()):
            return _text(429, "too many pings", {"retry-after": "1"})
        kind, exit_code = parsed
        raw = await request.body()
        # The end of a log says how the job ended; a cut character at the start is replaced.
        body = raw[-4 * MAX_PING_BODY_CHARS :].decode("utf-8", "replace")[-MAX_PING_BODY_CHARS:]
        redact = state.loaded.redactor.redact
        try:
            await asyncio.to_thread(
                state.store.pings.record,
                digest,
                kind,
                state.clock.now(),
                exit_code=exit_code,
                source=request.client.host if request.client else "",
                body=redact(body) if body else "",
            )
        except Exception as error:  # noqa: BLE001 - a store failure is a 503 the client retries
            logger.warning(
                "could not record a ping of %s: %s",
                ", ".join(targets),
                redact(f"{type(error).__name__}: {error}"),
            )
            return _text(503, "the store cannot take the ping now; retry")
        if state.on_ping is not None and kind is not PingKind.LOG:
            try:
                state.on_ping(targets)
            except Exception as error:  # noqa: BLE001 - stored: the checks run at their interval
                logger.warning(
                    "could not run the checks of %s at once: %s",
                    ", ".join(targets),
                    redact(f"{type(error).__name__}: {error}"),
                )
        return _text(200, "OK")

    async def ping(heartbeat_id: HeartbeatId, request: Request) -> Response:
        """Record a success of the heartbeat (a body, of any type, is kept as its log; no
        token: the id is the credential)."""
        return await receive(request, heartbeat_id, None)

    async def ping_signal(heartbeat_id: HeartbeatId, signal: Signal, request: Request) -> Response:
        """Record a start, a failure, a log message or an exit code of the heartbeat (no
        token: the id is the credential)."""
        return await receive(request, heartbeat_id, signal)

    # One route per method, so each has an operation of its own in the OpenAPI schema.
    for method in ("GET", "HEAD", "POST"):
        for path, endpoint in (
            ("/ping/{heartbeat_id}", ping),
            ("/ping/{heartbeat_id}/{signal}", ping_signal),
        ):
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                responses=PING_RESPONSES,
                response_class=Response,
                name=f"{endpoint.__name__}_{method.lower()}",
            )
    return router
