"""The gate in front of the HTTP API: every check that needs only the request head.

``ApiGuard`` is an ASGI middleware that runs before FastAPI sees a request, so nothing a
client sends is parsed, or even read, before it has passed:

1. A query string must be ASCII (400), on every path.
2. ``GET``/``HEAD`` of ``/healthz`` and ``/metrics`` pass untouched: monitoring scrapes
   them without a credential, and they hold no secret, no output and no message.
3. Everything else is the API. Its ``Host`` must name this server: an IP address, a
   loopback name, the listen host, a host of ``engine.allowed_hosts`` or of
   ``alerting.public_url`` (421 otherwise). A DNS-rebinding page can only ever send the
   attacker's own name; an IP address cannot be rebound.
4. It needs ``Authorization: Bearer <token>`` naming a configured token (401 otherwise,
   and always while no token is configured). Tokens are compared by their SHA-256 in
   constant time; a header that is not ASCII, or not a bearer token, is a 401 like any
   wrong one. The token's name becomes the request's actor, ``api:<name>``.
5. A request that changes something (any method but GET, HEAD, OPTIONS) must not come
   from another site (``Origin`` other than the server's own, or ``Sec-Fetch-Site``
   ``cross-site``/``same-site``: 403) and carries JSON only (``Content-Type:
   application/json``; 415 otherwise), which a cross-site form cannot send.
6. A body larger than ``engine.http.max_body_bytes`` is refused (413) unread when its
   ``Content-Length`` says so, and as soon as the cap is passed when it is chunked; a body
   that does not arrive within ``engine.http.body_timeout`` is a 408. Each refusal closes
   the connection, so an unread body is never drained.

The body is read here, once, and handed to the application whole.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson

from upkeep.core.access import Principal

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from upkeep.config.models import EngineConfig, UpkeepConfig

ACTOR_KEY = "upkeep.actor"
"""Where the guard puts the request's actor (``api:<token name>``) in the ASGI scope."""
PRINCIPAL_KEY = "upkeep.principal"
"""Where the guard puts the request's ``Principal`` (who, and with which scopes)."""
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
"""Paths answered without a credential (GET and HEAD only)."""
OPEN_PREFIXES: tuple[str, ...] = ("/status",)
"""Path prefixes answered without a credential (GET and HEAD only): public pages that
hold nothing secret."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing; every other one is a change."""
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
"""Host names that always mean this machine."""
MAX_AUTHORIZATION_BYTES = 4096
"""An Authorization header longer than this is refused without hashing it."""
NO_CREDENTIAL_MESSAGE = (
    "the API is closed: no API token is configured. Add one under engine.api_tokens "
    "(`upkeep init` writes one) and send `Authorization: Bearer <token>`"
)
BAD_CREDENTIAL_MESSAGE = "a valid API token is required: send `Authorization: Bearer <token>`"

READ_REFUSALS: dict[int | str, dict[str, str]] = {
    400: {"description": "a header sent twice or not ASCII, or a query string not ASCII"},
    401: {"description": "no valid API token (`Authorization: Bearer <token>`)"},
    403: {"description": "the token or user lacks the scope this route needs"},
    421: {"description": "the Host names no host of this server (DNS-rebinding guard)"},
}
"""What the guard answers an ``/api/*`` request it refuses, as OpenAPI responses."""
CHANGE_REFUSALS: dict[int | str, dict[str, str]] = {
    **READ_REFUSALS,
    403: {
        "description": "the token or user lacks the scope this route needs, or the change "
        "comes from another site or origin"
    },
    408: {"description": "the body did not arrive within engine.http.body_timeout"},
    413: {"description": "the body is larger than engine.http.max_body_bytes"},
    415: {
        "description": "no `Content-Type: application/json`, needed even without a body "
        "(but for a DELETE that has none)"
    },
}
"""What the guard answers a change (any method but GET, HEAD, OPTIONS) it refuses."""


def token_digest(token: str) -> bytes:
    """Given a token as a client sends it, return its SHA-256 digest."""
    return hashlib.sha256(token.encode("ascii")).digest()


def configured_digest(setting: str) -> bytes:
    """Given a token setting (the token, or ``sha256:<hex>``), return the token's digest."""
    if setting.startswith("sha256:"):
        return bytes.fromhex(setting.removeprefix("sha256:"))
    return token_digest(setting)


def named_tokens(engine: EngineConfig) -> dict[str, bytes]:
    """Given the engine settings, return every configured token's name and digest."""
    from upkeep.config.models import LEGACY_TOKEN_NAME

    tokens = {name: configured_digest(value) for name, value in engine.api_tokens.items()}
    if engine.api_token is not None:
        tokens[LEGACY_TOKEN_NAME] = configured_digest(engine.api_token)
    return tokens


def host_name(value: str) -> str:
    """Given a ``Host`` header or a listen host (``name``, ``name:port``, ``[v6]:port``),
    return the lower-case name without port or brackets."""
    text = value.strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    if text.count(":") == 1:
        return text.partition(":")[0]
    return text


def is_ip_address(name: str) -> bool:
    """Given a host name, return whether it is an IPv4 or IPv6 address."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """Given a listen host, return whether only this machine can reach it.

    ``0.0.0.0``, ``::`` and any name but a loopback one count as reachable from outside
    (a name may resolve to anything).
    """
    name = host_name(host)
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def listen_refusal(engine: EngineConfig, listen_host: str) -> str | None:
    """Given the engine settings and the host to listen on, return why the daemon must not
    listen there (beyond loopback with no API token), or None when it may."""
    if is_loopback(listen_host) or named_tokens(engine):
        return None
    return (
        f"refusing to listen on {listen_host} without an API token: anyone who can reach it "
        "could read outputs and approve runs. Add a token under engine.api_tokens "
        "(`upkeep init` writes one) or listen on 127.0.0.1"
    )


@dataclass(frozen=True)
class GuardSettings:
    """What the guard checks against, derived from the config and the listen address."""

    tokens: dict[str, bytes]
    host_names: frozenset[str]
    origins: frozenset[str]
    max_body_bytes: int
    body_timeout_s: float

    @classmethod
    def from_config(cls, config: UpkeepConfig, listen: str) -> GuardSettings:
        """Given the config and the listen address (``host:port``), return the settings."""
        engine = config.engine
        names = {name.lower().rstrip(".") for name in engine.allowed_hosts}
        names.add(host_name(listen.rpartition(":")[0]))
        origins: set[str] = set()
        if config.alerting.public_url:
            public = urlsplit(config.alerting.public_url)
            if public.hostname:
                names.add(public.hostname.lower().rstrip("."))
            origins.add(f"{public.scheme}://{public.netloc}".lower())
        return cls(
            tokens=named_tokens(engine),
            host_names=frozenset(names),
            origins=frozenset(origins),
            max_body_bytes=engine.http.max_body_bytes,
            body_timeout_s=engine.http.body_timeout.total_seconds(),
        )

    def allows_host(self, header: str) -> bool:
        """Given a ``Host`` header, return whether it names this server."""
        name = host_name(header)
        if not name:
            return False
        bare = name.rstrip(".")
        return (
            is_ip_address(name)
            or name in LOOPBACK_NAMES
            or bare.endswith(".localhost")
            or bare in self.host_names
        )

    def identify(self, authorization: bytes) -> str | None:
        """Given an ``Authorization`` header, return the name of the token it carries, or
        None if it carries none of the configured tokens (or is not a bearer token)."""
        if len(authorization) > MAX_AUTHORIZATION_BYTES:
            return None
        try:
            text = authorization.decode("ascii")
        except UnicodeDecodeError:
            return None
        scheme, _, token = text.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or not token.isprintable():
            return None
        presented = token_digest(token)
        found: str | None = None
        # Every token is compared, matching or not, so the time taken tells nothing.
        for name, digest in self.tokens.items():
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found


class RefusedError(Exception):
    """A request the guard answers itself, with a status and a message."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key.lower() == name]


def _single_header(scope: Scope, name: bytes) -> bytes | None:
    values = _header(scope, name)
    if len(values) > 1:
        raise RefusedError(400, f"more than one {name.decode()} header")
    return values[0] if values else None


def _text_header(scope: Scope, name: bytes) -> str | None:
    value = _single_header(scope, name)
    if value is None:
        return None
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise RefusedError(400, f"the {name.decode()} header is not ASCII") from None


def _is_json(content_type: str) -> bool:
    media_type = content_type.partition(";")[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


class ApiGuard:
    """ASGI middleware applying the module's rules before the application runs."""

    def __init__(self, app: ASGIApp, settings: Callable[[], GuardSettings]) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Given an ASGI request, answer it with a refusal or hand it to the application."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not scope.get("query_string", b"").isascii():
            # h11 refuses such a request line itself; another HTTP parser may pass it on,
            # and Starlette fails to decode it (a 500).
            await _refuse(
                send, RefusedError(400, "the query string is not ASCII (percent-encode it)")
            )
            return
        if scope["method"] in ("GET", "HEAD") and (
            scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        settings = self.settings()
        try:
            principal = self._admit(scope, settings)
            body = await self._read_body(scope, receive, settings)
        except RefusedError as refusal:
            await _refuse(send, refusal)
            return
        if body is None:
            return  # the client went away while sending its body
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(
            {**scope, ACTOR_KEY: principal.actor, PRINCIPAL_KEY: principal}, replay, send
        )

    def _admit(self, scope: Scope, settings: GuardSettings) -> Principal:
        """Given a request head, return who it acts as; raise RefusedError if it may not
        go on. A token of ``engine.api_tokens`` acts with every scope."""
        host = _text_header(scope, b"host")
        if host is None or not settings.allows_host(host):
            raise RefusedError(
                421,
                "this server does not answer to that Host; name it in engine.allowed_hosts "
                "if it is really this server",
            )
        if not settings.tokens:
            raise RefusedError(
                401, NO_CREDENTIAL_MESSAGE, {"www-authenticate": 'Bearer realm="upkeep"'}
            )
        authorization = _header(scope, b"authorization")
        name = settings.identify(authorization[0]) if len(authorization) == 1 else None
        if name is None:
            raise RefusedError(
                401, BAD_CREDENTIAL_MESSAGE, {"www-authenticate": 'Bearer realm="upkeep"'}
            )
        if scope["method"] not in SAFE_METHODS:
            self._same_origin(scope, settings, host)
            self._json_only(scope)
        return Principal.token(name)

    @staticmethod
    def _same_origin(scope: Scope, settings: GuardSettings, host: str) -> None:
        fetch_site = _text_header(scope, b"sec-fetch-site")
        if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
            raise RefusedError(403, "changes are not accepted from another site")
        origin = _text_header(scope, b"origin")
        if origin is None:
            return
        own = {f"{scope.get('scheme', 'http')}://{host.strip()}".lower(), *settings.origins}
        if origin.strip().lower() not in own:
            raise RefusedError(403, "changes are not accepted from another origin")

    @staticmethod
    def _json_only(scope: Scope) -> None:
        content_type = _text_header(scope, b"content-type")
        announces_body = bool(_header(scope, b"transfer-encoding")) or any(
            value.strip() not in (b"", b"0") for value in _header(scope, b"content-length")
        )
        if content_type is None and scope["method"] == "DELETE" and not announces_body:
            return
        if content_type is None or not _is_json(content_type):
            raise RefusedError(
                415, "changes take a JSON body: send `Content-Type: application/json`"
            )

    @staticmethod
    async def _read_body(scope: Scope, receive: Receive, settings: GuardSettings) -> bytes | None:
        """Return the whole request body; None if the client disconnected; raise RefusedError
        if it is larger than the cap, announced wrongly or too slow to arrive."""
        cap = settings.max_body_bytes
        too_large = RefusedError(413, f"the request body is larger than {cap} bytes")
        length_text = _text_header(scope, b"content-length")
        if length_text is not None:
            if not length_text.strip().isdigit() or len(length_text.strip()) > 20:
                raise RefusedError(400, "Content-Length is not a number")
            if int(length_text) > cap:
                raise too_large
            if int(length_text) == 0:
                return b""
        elif not _header(scope, b"transfer-encoding"):
            return b""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(settings.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > cap:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RefusedError(
                408, f"the request body did not arrive within {settings.body_timeout_s:g}s"
            ) from None
        return b"".join(chunks)


async def _refuse(send: Send, refusal: RefusedError) -> None:
    """Answer a refused request with its status and a JSON message, closing the connection
    (a body the client may still be sending is never read)."""
    body = orjson.dumps({"detail": refusal.message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((key.encode(), value.encode()) for key, value in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
