"""The daemon's HTTP server: uvicorn on its h11 protocol, with limits no slow client beats.

uvicorn's h11 protocol times out an idle kept-alive connection, but not one that never
finishes its request head (a byte every few seconds keeps it open for good), and it
accepts connections until the process runs out of file descriptors, when /healthz stops
answering and checks fail with "Too many open files". ``GuardedH11Protocol`` adds:

- a header timeout: a connection must deliver a whole request head within
  ``engine.http.header_timeout`` of opening (or of its previous answer), or it is closed;
- an idle timeout (``engine.http.idle_timeout``) between requests;
- a connection limit (``engine.http.max_connections``, never above a quarter of the
  open-file limit): at the limit, the oldest connection still waiting for a request head
  is closed to make room, so a new request (a health probe) is served while an attacker's
  idle connections churn; only when every connection is busy with a request is the new one
  closed at once;
- a send timeout (``engine.http.body_timeout``): a client that stops reading its answers
  (pipelined requests whose answers fill the buffers, a window kept shut) has its
  connection closed, unsent answer dropped, when the answer has not moved on for that
  long; meanwhile the connection may be evicted like one waiting for a request head. A
  connection closing with an answer still unsent is on the same clock. Without this, a
  handful of clients that never read took every connection for good;
- a connection whose answer went out while its body was still arriving is closed rather
  than drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    from upkeep.config.models import HttpServerConfig

logger = logging.getLogger(__name__)

FILES_PER_CONNECTION_SHARE = 4
"""At most 1/4 of the open-file limit goes to HTTP connections; the rest stays for checks,
step commands, the store and log files."""
OPEN_FILES_CEILING = 1 << 20
"""Raising the soft open-file limit stops here even when the hard limit is unlimited."""
ACCEPT_BACKLOG = 128
"""The listen backlog, which is also how many connections asyncio accepts in one go before
any of them is served or closed: kept small, a flood of connects cannot take a burst of
descriptors past the connection limit (2,048, uvicorn's default, took all of 1,024)."""


@dataclass
class ConnectionLimits:
    """The limits of one server and its connections still waiting for a request head,
    oldest first (shared by every connection of that server)."""

    max_connections: int
    header_timeout_s: float
    idle_timeout_s: float
    send_timeout_s: float
    waiting: OrderedDict[GuardedH11Protocol, None] = field(default_factory=OrderedDict)
    """Connections that may be evicted: waiting for a request head, or whose answer the
    client is not reading."""
    evicted: int = 0
    """Connections closed to make room for a newer one."""
    refused: int = 0
    """Connections closed at once because every other one was busy with a request."""
    timed_out: int = 0
    """Connections closed because their request head did not arrive in time."""
    stalled: int = 0
    """Connections closed because their client did not read the answer in time."""


def raise_open_file_limit() -> int:
    """Raise the soft limit of open files to the hard limit (capped at a million); return
    the soft limit in force afterwards. A failure to raise it leaves it as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = OPEN_FILES_CEILING if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            logger.warning("could not raise the open-file limit from %d: %s", soft, error)
            return soft
        return target
    return OPEN_FILES_CEILING if soft == resource.RLIM_INFINITY else soft


def connection_limits(settings: HttpServerConfig, open_files: int) -> ConnectionLimits:
    """Given the HTTP settings and the open-file limit, return the connection limits."""
    allowed = max(4, open_files // FILES_PER_CONNECTION_SHARE)
    if settings.max_connections > allowed:
        logger.warning(
            "engine.http.max_connections %d is more than a quarter of the open-file limit "
            "(%d); serving at most %d connections",
            settings.max_connections,
            open_files,
            allowed,
        )
    return ConnectionLimits(
        max_connections=min(settings.max_connections, allowed),
        header_timeout_s=settings.header_timeout.total_seconds(),
        idle_timeout_s=settings.idle_timeout.total_seconds(),
        send_timeout_s=settings.body_timeout.total_seconds(),
    )


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, an idle timeout, a send timeout and a
    connection limit (see the module). Subclassed per server by ``protocol_for``."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn takes whole seconds here; a float works the same and keeps tests fast.
        self.timeout_keep_alive = self.limits.idle_timeout_s  # type: ignore[assignment]
        self._head_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Given a new connection, make room for it (or close it) and start its clock."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self.limits.refused += 1
            transport.abort()
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """Given a closed connection, forget it."""
        self._head_arrived()
        self._answer_moved()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Given bytes from the client, parse them; stop the head clock once a head is in."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_arrived()

    def pause_writing(self) -> None:
        """The client is not reading: the answer waits on the send clock, and the
        connection may be evicted meanwhile."""
        super().pause_writing()
        self._answer_stalled()

    def resume_writing(self) -> None:
        """The client reads again: the answer is off the send clock."""
        super().resume_writing()
        self._answer_moved()

    def on_response_complete(self) -> None:
        """After an answer: close a connection still sending a body, else wait for the
        next request head on the clock."""
        body_unread = self.conn.their_state is h11.SEND_BODY
        super().on_response_complete()
        if self.transport.is_closing():
            self._closing()
            return
        if body_unread:
            self.transport.close()
            self._closing()
        elif self.conn.their_state is h11.IDLE:
            self._await_head()

    def timeout_keep_alive_handler(self) -> None:
        """A kept-alive connection went quiet: close it, dropping any answer left unread."""
        super().timeout_keep_alive_handler()
        self._closing()

    def _closing(self) -> None:
        # close() keeps the connection (and its descriptor) until every byte of the last
        # answer is sent, which a client that does not read never lets happen.
        if self.transport.get_write_buffer_size():
            self._answer_stalled()

    def _evictable(self) -> bool:
        return self._head_deadline is not None or self._send_deadline is not None

    def _await_head(self) -> None:
        self._head_arrived()
        self.limits.waiting[self] = None
        self._head_deadline = self.loop.call_later(
            self.limits.header_timeout_s, self._head_timed_out
        )

    def _leave_waiting_unless_evictable(self) -> None:
        if not self._evictable():
            self.limits.waiting.pop(self, None)

    def _head_arrived(self) -> None:
        _cancel(self._head_deadline)
        self._head_deadline = None
        self._leave_waiting_unless_evictable()

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        self._leave_waiting_unless_evictable()
        if not self.transport.is_closing():
            self.limits.timed_out += 1
            self.transport.close()
            self._closing()

    def _answer_stalled(self) -> None:
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(
                self.limits.send_timeout_s, self._send_timed_out
            )
        self.limits.waiting.setdefault(self, None)

    def _answer_moved(self) -> None:
        _cancel(self._send_deadline)
        self._send_deadline = None
        self._leave_waiting_unless_evictable()

    def _send_timed_out(self) -> None:
        self._send_deadline = None
        self._head_arrived()
        self.limits.waiting.pop(self, None)
        self.limits.stalled += 1
        self.transport.abort()

    def _make_room(self) -> bool:
        """Close the oldest connection still waiting for a request head or for its client
        to read; return False if there is none (every other one is busy with a request)."""
        victim = next((other for other in self.limits.waiting if other is not self), None)
        if victim is None:
            return False
        victim._head_arrived()
        victim._answer_moved()
        self.limits.waiting.pop(victim, None)
        self.limits.evicted += 1
        with contextlib.suppress(Exception):
            victim.transport.abort()
        return True


def _cancel(deadline: asyncio.TimerHandle | None) -> None:
    """Given a timer (or None), cancel it."""
    if deadline is not None:
        deadline.cancel()


def protocol_for(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """Given one server's limits, return the protocol class its connections use."""
    chosen = limits

    class ServerH11Protocol(GuardedH11Protocol):
        limits = chosen

    return ServerH11Protocol
