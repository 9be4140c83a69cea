"""Real receivers on 127.0.0.1 for notification tests: a webhook server and an SMTP server.

Each runs on a thread of its own (its own event loop), so it serves while a test awaits
the dispatcher on the test's loop, while a synchronous test blocks, or while a daemon in a
subprocess delivers to it. A webhook receiver can be *down*: its port chosen but closed
(connections refused), and later brought up on that same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import orjson

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
"""Named timeout: how long a receiver may take to start listening or to stop."""
SHUTDOWN_TIMEOUT_S = 1.0
"""Named timeout: requests still in flight when a webhook receiver stops get this long."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on (closed: connections refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class WebhookDelivery:
    """One request the webhook receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def key(self) -> str | None:
        """Return the ``Idempotency-Key`` header, or None."""
        return self.headers.get("idempotency-key")

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return orjson.loads(self.body)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 that records every request and answers ``status``.

    ``port`` defaults to a free one; the receiver is down until ``start`` and after
    ``stop``, and can be started again on the same port. ``delay_s`` holds each answer
    that long (a slow receiver).
    """

    def __init__(self, port: int | None = None, *, status: int = 200, delay_s: float = 0.0):
        self.port = port or free_port()
        self.status = status
        self.delay_s = delay_s
        self._deliveries: list[WebhookDelivery] = []
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: Any = None

    def url(self, scheme: str = "json", path: str = "/hook") -> str:
        """Return the Apprise URL of this receiver (``json://127.0.0.1:PORT/hook``)."""
        return f"{scheme}://{HOST}:{self.port}{path}"

    @property
    def deliveries(self) -> list[WebhookDelivery]:
        """Return a copy of every request received so far, in order."""
        with self._guard:
            return list(self._deliveries)

    def keys(self) -> Counter[str | None]:
        """Return how many requests carried each ``Idempotency-Key``."""
        return Counter(delivery.key for delivery in self.deliveries)

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        delivery = WebhookDelivery(
            request.method,
            request.path,
            {name.lower(): value for name, value in request.headers.items()},
            body,
        )
        with self._guard:
            self._deliveries.append(delivery)
        return web.Response(status=self.status, text="ok")

    def start(self) -> None:
        """Start listening on the port (blocking until it listens)."""
        if self._thread is not None:
            return
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        async def serve() -> None:
            from aiohttp import web

            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
            await runner.setup()
            site = web.TCPSite(runner, HOST, self.port, reuse_address=True)
            await site.start()
            self._runner = runner

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(serve())
            except BaseException as error:  # noqa: BLE001 - handed to start(), which raises it
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=run, name=f"webhook-{self.port}", daemon=True)
        thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            raise RuntimeError(f"webhook receiver did not start on port {self.port}: {failure}")
        self._loop, self._thread = loop, thread

    def stop(self) -> None:
        """Stop listening (the port is closed again: connections are refused)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        runner = self._runner

        async def shutdown() -> None:
            if runner is not None:
                await runner.cleanup()
            # A request still held (``delay_s``) is cancelled, not left pending on a
            # loop that is about to close.
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(START_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(START_TIMEOUT_S)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def until(self, done: Callable[[WebhookReceiver], bool], timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until ``done(self)`` holds or the time is
        up; return whether it holds."""
        deadline = time.monotonic() + timeout_s
        while not done(self):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True


class SmtpReceiver:
    """An SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it receives."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._messages: list[EmailMessage] = []
        self._guard = threading.Lock()
        self._controller: Any = None

    def url(self, to: str = "ops@example.com", sender: str = "upkeep@example.com") -> str:
        """Return an Apprise ``mailto://`` URL that sends to this server, unencrypted."""
        return f"mailto://{HOST}:{self.port}?mode=insecure&from={sender}&to={to}"

    @property
    def messages(self) -> list[EmailMessage]:
        """Return a copy of every message received so far, in order."""
        with self._guard:
            return list(self._messages)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._guard:
            self._messages.append(message)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        """Start listening (blocking until it answers)."""
        from aiosmtpd.controller import Controller

        self._controller = Controller(
            self, hostname=HOST, port=self.port, ready_timeout=START_TIMEOUT_S
        )
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpReceiver:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def plain_text(message: EmailMessage) -> str:
    """Given a received e-mail, return its plain-text body."""
    part = message.get_body(preferencelist=("plain", "html"))
    assert part is not None
    return str(part.get_content())


@contextlib.contextmanager
def webhook(**options: Any) -> Iterator[WebhookReceiver]:
    """Run a webhook receiver for the duration of a ``with`` block."""
    receiver = WebhookReceiver(**options)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
