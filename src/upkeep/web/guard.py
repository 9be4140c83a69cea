"""The gate in front of the HTTP face: every check that needs only the request head.

``ApiGuard`` is an ASGI middleware that runs before FastAPI sees a request, so nothing a
client sends is parsed, or even read, before it has passed:

1. A query string must be ASCII (400), on every path.
2. ``GET``/``HEAD`` of ``/healthz`` and ``/metrics`` (and of the rest of ``OPEN_PATHS``
   and ``OPEN_PREFIXES``: the API schema and Swagger UI, the dashboard's stylesheet and
   script, the public status page) pass untouched: monitoring scrapes them without a
   credential, and they hold no secret, no output and no message. A prefix ends with
   ``/``, so ``/statusXYZ`` is not opened by ``/status/`` (``is_open_path``).
3. Everything else needs a ``Host`` naming this server: an IP address, a loopback name,
   the listen host, a host of ``engine.allowed_hosts`` or of ``alerting.public_url`` (421
   otherwise). A DNS-rebinding page can only ever send the attacker's own name; an IP
   address cannot be rebound.
4. It needs a credential, the first of:

   * ``Authorization: Bearer <token>`` naming a token of ``engine.api_tokens`` (every
     scope) or a token stored with ``upkeep token add`` (its own scopes). Tokens are
     compared by their SHA-256, configured ones in constant time; a stored one is found
     by its digest (the token has 256 random bits, so the lookup's timing tells nothing
     usable). A header that is not ASCII, not a bearer token or no known token is a 401,
     and a cookie sent beside it is not looked at;
   * the ``upkeep_session`` cookie of a signed-in user (``upkeep.web.auth``): the user acts
     with their role's scopes.

   Without one, ``GET /login`` and ``POST /login``/``/logout`` still pass (they sign in
   and out); a browser asking for a page (``GET``, ``Accept`` preferring ``text/html``,
   not under ``/api/``) is sent to ``/login?next=<path>`` (303); anything else is a 401.
5. A request that changes something (any method but GET, HEAD, OPTIONS) must not come
   from another site (``Origin`` other than the server's own, or ``Sec-Fetch-Site``
   ``cross-site``/``same-site``: 403) and carries JSON only (``Content-Type:
   application/json``; 415 otherwise), which a cross-site form cannot send. The one
   exception is the sign-in and sign-out forms (``application/x-www-form-urlencoded``),
   which carry their own CSRF token. A change made with a session cookie must also send
   the session's CSRF token in ``X-CSRF-Token`` (403 otherwise): the cookie is
   ``SameSite=Strict`` already, the token holds where a browser does not honour that.
6. A body larger than ``engine.http.max_body_bytes`` is refused (413) unread when its
   ``Content-Length`` says so, and as soon as the cap is passed when it is chunked; a body
   that does not arrive within ``engine.http.body_timeout`` is a 408. Each refusal closes
   the connection, so an unread body is never drained.

The body is read here, once, and handed to the application whole. The request's
``Principal`` goes into the ASGI scope under ``PRINCIPAL_KEY``, its actor under
``ACTOR_KEY``, and a session's record under ``SESSION_KEY``.

Heartbeat pings (``PING_PREFIX``, ``/ping/<id>...``) are the one exception, handled first
and apart: cron jobs send them with ``curl`` from anywhere, with any content type and no
token, because the heartbeat's id in the path is their credential (the route answers 404
for an unknown one). So only rules 1 and 6 apply: the query string, and the body cap and
timeout. There is no Host check either: nothing is read back but ``OK``, so a
DNS-rebinding page gains nothing it could not get by sending the request itself, and a
job on another machine may reach the daemon by any name (a load balancer, an alias).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote, urlsplit

import orjson

from upkeep.core.access import Principal

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from upkeep.config.models import EngineConfig, UpkeepConfig
    from upkeep.store.accounts import AccountStore, SessionRecord

logger = logging.getLogger(__name__)
Found = TypeVar("Found")

ACTOR_KEY = "upkeep.actor"
"""Where the guard puts the request's actor (``api:<token name>``) in the ASGI scope."""
PRINCIPAL_KEY = "upkeep.principal"
"""Where the guard puts the request's ``Principal`` (who, and with which scopes)."""
SESSION_KEY = "upkeep.session"
"""Where the guard puts a signed-in user's ``SessionRecord`` (its CSRF token, its expiry)."""
SESSION_COOKIE = "upkeep_session"
"""The cookie carrying a session's secret (HttpOnly, SameSite=Strict, Path=/)."""
CSRF_HEADER = b"x-csrf-token"
"""The header a change made with a session cookie carries its CSRF token in."""
LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
ACCOUNT_PATHS = frozenset({LOGIN_PATH, LOGOUT_PATH})
"""Paths that pass without a credential: signing in and out (the routes check the rest)."""
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_COOKIE_BYTES = 8192
"""A Cookie header longer than this is not parsed (no session is read from it)."""
OPEN_PATHS = frozenset(
    {"/healthz", "/metrics", "/api/openapi.json", "/api/docs", "/status", "/status.json"}
)
"""Paths answered without a credential (GET and HEAD only)."""
PING_PREFIX = "/ping/"
"""Paths of heartbeat pings: no token, Host or JSON rule; only the body cap and timeout."""
OPEN_PREFIXES: tuple[str, ...] = ("/api/docs/", "/static/", "/status/")
"""Path prefixes answered without a credential (GET and HEAD only): public pages that
hold nothing secret. Each ends with ``/``, so a path that merely begins with the same
letters (``/statusXYZ``) is not opened with them."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing; every other one is a change."""
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
"""Host names that always mean this machine."""
MAX_AUTHORIZATION_BYTES = 4096
"""An Authorization header longer than this is refused without hashing it."""
NO_CREDENTIAL_MESSAGE = (
    "the API is closed: no API token is configured. Add one under engine.api_tokens "
    "(`upkeep init` writes one) or with `upkeep token add`, and send "
    "`Authorization: Bearer <token>`; or sign in at /login (`upkeep user add`)"
)
BAD_CREDENTIAL_MESSAGE = (
    "a valid API token or session is required: send `Authorization: Bearer <token>`, "
    "or sign in at /login"
)

READ_REFUSALS: dict[int | str, dict[str, str]] = {
    400: {"description": "a header sent twice or not ASCII, or a query string not ASCII"},
    401: {"description": "no valid API token (`Authorization: Bearer <token>`) or session"},
    403: {"description": "the token or user lacks the scope this route needs"},
    421: {"description": "the Host names no host of this server (DNS-rebinding guard)"},
}
"""What the guard answers an ``/api/*`` request it refuses, as OpenAPI responses."""
CHANGE_REFUSALS: dict[int | str, dict[str, str]] = {
    **READ_REFUSALS,
    403: {
        "description": "the token or user lacks the scope this route needs, the change "
        "comes from another site or origin, or a session's change lacks its `X-CSRF-Token`"
    },
    408: {"description": "the body did not arrive within engine.http.body_timeout"},
    413: {"description": "the body is larger than engine.http.max_body_bytes"},
    415: {
        "description": "no `Content-Type: application/json`, needed even without a body "
        "(but for a DELETE that has none)"
    },
}
"""What the guard answers a change (any method but GET, HEAD, OPTIONS) it refuses."""


def is_open_path(path: str) -> bool:
    """Given a request's path, return whether a GET or HEAD of it is answered without a
    credential (``OPEN_PATHS``, or under one of ``OPEN_PREFIXES``)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


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
    secure_cookies: bool = False
    """Whether ``alerting.public_url`` is https: cookies are then always ``Secure``."""

    @classmethod
    def from_config(cls, config: UpkeepConfig, listen: str) -> GuardSettings:
        """Given the config and the listen address (``host:port``), return the settings."""
        engine = config.engine
        names = {name.lower().rstrip(".") for name in engine.allowed_hosts}
        names.add(host_name(listen.rpartition(":")[0]))
        origins: set[str] = set()
        secure = False
        if config.alerting.public_url:
            public = urlsplit(config.alerting.public_url)
            secure = public.scheme.lower() == "https"
            if public.hostname:
                names.add(public.hostname.lower().rstrip("."))
            origins.add(f"{public.scheme}://{public.netloc}".lower())
        return cls(
            tokens=named_tokens(engine),
            host_names=frozenset(names),
            origins=frozenset(origins),
            max_body_bytes=engine.http.max_body_bytes,
            body_timeout_s=engine.http.body_timeout.total_seconds(),
            secure_cookies=secure,
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
        token = bearer_token(authorization)
        if token is None:
            return None
        presented = token_digest(token)
        found: str | None = None
        # Every token is compared, matching or not, so the time taken tells nothing.
        for name, digest in self.tokens.items():
            if hmac.compare_digest(presented, digest) and found is None:
                found = name
        return found


def bearer_token(authorization: bytes) -> str | None:
    """Given an ``Authorization`` header, return the bearer token it carries, or None if it
    is too long, not ASCII, not ``Bearer`` or empty."""
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
    return token


def cookie_value(scope: Scope, name: str) -> str | None:
    """Given a request and a cookie's name, return the first value sent for it, or None
    (a Cookie header too long or not ASCII is ignored whole)."""
    for header in _header(scope, b"cookie"):
        if len(header) > MAX_COOKIE_BYTES or not header.isascii():
            continue
        for pair in header.decode("ascii").split(";"):
            key, separator, value = pair.strip().partition("=")
            if separator and key == name:
                return value.strip().strip('"')
    return None


def cookie_is_secure(scope: Scope, settings: GuardSettings) -> bool:
    """Given a request and the settings, return whether cookies set on it must be
    ``Secure``: it came over https, or the public URL is https."""
    return scope.get("scheme") == "https" or settings.secure_cookies


def wants_page(scope: Scope) -> bool:
    """Given a request, return whether a browser asks for a page: a ``GET`` outside
    ``/api/`` whose ``Accept`` puts ``text/html`` before (or without) JSON."""
    if scope["method"] != "GET" or scope["path"].startswith("/api/"):
        return False
    accept = b",".join(_header(scope, b"accept")).decode("latin-1").lower()
    html = accept.find("text/html")
    if html < 0:
        return False
    json = accept.find("application/json")
    return json < 0 or html < json


def login_location(scope: Scope) -> str:
    """Given a request for a page, return the sign-in address that brings the user back."""
    target = scope["path"]
    query = scope.get("query_string", b"")
    if query:
        target += "?" + query.decode("ascii")
    return f"{LOGIN_PATH}?next={quote(target, safe='')}"


@dataclass(frozen=True)
class Admission:
    """Who a request the guard admitted acts as: a principal, or nobody (sign-in and
    sign-out only), and a signed-in user's session."""

    principal: Principal | None
    session: SessionRecord | None = None


class RefusedError(Exception):
    """A request the guard answers itself, with a status and a message."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        close: bool = True,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.close = close
        """Whether to close the connection (a body the client may still send is unread)."""


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

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], GuardSettings],
        accounts: Callable[[], AccountStore] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.accounts = accounts
        """The store's accounts (stored tokens, sessions); None: configured tokens only."""

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
        if scope["path"].startswith(PING_PREFIX):
            await self._pass_ping(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD") and is_open_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        settings = self.settings()
        try:
            admission = await self._admit(scope, settings)
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

        admitted = dict(scope)
        if admission.principal is not None:
            admitted[ACTOR_KEY] = admission.principal.actor
            admitted[PRINCIPAL_KEY] = admission.principal
        if admission.session is not None:
            admitted[SESSION_KEY] = admission.session
        await self.app(admitted, replay, send)

    async def _pass_ping(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand a heartbeat ping to the application with its body read within the cap and
        the body timeout (refused otherwise), and no principal: the id is its credential."""
        try:
            body = await self._read_body(scope, receive, self.settings())
        except RefusedError as refusal:
            await _refuse(send, refusal)
            return
        if body is None:
            return  # the client went away while sending its body
        await self.app(scope, _replaying(body, receive), send)

    async def _admit(self, scope: Scope, settings: GuardSettings) -> Admission:
        """Given a request head, return who it acts as; raise RefusedError if it may not
        go on. A token of ``engine.api_tokens`` acts with every scope."""
        host = _text_header(scope, b"host")
        if host is None or not settings.allows_host(host):
            raise RefusedError(
                421,
                "this server does not answer to that Host; name it in engine.allowed_hosts "
                "if it is really this server",
            )
        admission = await self._credential(scope, settings)
        path = scope["path"]
        if admission.principal is None and path not in ACCOUNT_PATHS:
            if wants_page(scope):
                raise RefusedError(
                    303, "sign in first", {"location": login_location(scope)}, close=False
                )
            message = BAD_CREDENTIAL_MESSAGE if settings.tokens else NO_CREDENTIAL_MESSAGE
            raise RefusedError(401, message, {"www-authenticate": 'Bearer realm="upkeep"'})
        if scope["method"] not in SAFE_METHODS:
            self._same_origin(scope, settings, host)
            if path in ACCOUNT_PATHS:
                self._form_or_json(scope, json_allowed=path == LOGOUT_PATH)
            else:
                self._json_only(scope)
                if admission.session is not None:
                    self._csrf(scope, admission.session)
        return admission

    async def _credential(self, scope: Scope, settings: GuardSettings) -> Admission:
        """Given a request head, return the principal its token or session cookie names
        (None: it sends neither); raise RefusedError 401 if it sends a token nobody has."""
        authorization = _header(scope, b"authorization")
        if authorization:
            name = settings.identify(authorization[0]) if len(authorization) == 1 else None
            if name is not None:
                return Admission(Principal.token(name))
            token = bearer_token(authorization[0]) if len(authorization) == 1 else None
            if token is not None and self.accounts is not None:
                accounts = self.accounts()
                stored = await self._from_store(lambda: accounts.token_for(token))
                if stored is not None:
                    return Admission(Principal.token(stored.name, stored.scopes))
            raise RefusedError(
                401, BAD_CREDENTIAL_MESSAGE, {"www-authenticate": 'Bearer realm="upkeep"'}
            )
        secret = cookie_value(scope, SESSION_COOKIE)
        if secret and self.accounts is not None and len(secret) <= MAX_AUTHORIZATION_BYTES:
            accounts = self.accounts()
            session = await self._from_store(lambda: accounts.session_for(secret))
            if session is not None:
                return Admission(Principal.user(session.user, session.role), session)
        return Admission(None)

    @staticmethod
    async def _from_store(lookup: Callable[[], Found]) -> Found:
        """Run a store lookup on a worker thread; raise RefusedError 503 if the store fails
        (a credential that cannot be checked admits nobody, and is no 500)."""
        try:
            return await asyncio.to_thread(lookup)
        except Exception as error:  # noqa: BLE001 - any store failure refuses, never raises
            logger.warning("could not check a credential in the store: %s", type(error).__name__)
            raise RefusedError(
                503, "the store cannot be read to check this credential; try again"
            ) from None

    @staticmethod
    def _csrf(scope: Scope, session: SessionRecord) -> None:
        sent = _single_header(scope, CSRF_HEADER) or b""
        if not hmac.compare_digest(sent, session.csrf_token.encode("ascii")):
            raise RefusedError(
                403, "a change made with a session must send its CSRF token in X-CSRF-Token"
            )

    @staticmethod
    def _form_or_json(scope: Scope, *, json_allowed: bool) -> None:
        content_type = _text_header(scope, b"content-type") or ""
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type == FORM_TYPE or (json_allowed and _is_json(content_type)):
            return
        raise RefusedError(415, f"this form takes `Content-Type: {FORM_TYPE}`")

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


def _replaying(body: bytes, receive: Receive) -> Receive:
    """Given a body already read and the request's receive, return a receive that hands
    the application the body whole, then whatever comes after (a disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, refusal: RefusedError) -> None:
    """Answer a refused request with its status and a JSON message, closing the connection
    (a body the client may still be sending is never read) unless the refusal says not to
    (a redirect to sign in, of a GET that has no body)."""
    body = orjson.dumps({"detail": refusal.message})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *([(b"connection", b"close")] if refusal.close else []),
        *((key.encode(), value.encode()) for key, value in refusal.headers.items()),
    ]
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
