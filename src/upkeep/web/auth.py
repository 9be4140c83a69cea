"""Signing in and out, the pages' layout, and what pages need to send changes.

``GET /login`` shows the sign-in form; ``POST /login`` (the one change the guard takes
without a credential, as ``application/x-www-form-urlencoded``) checks the name and
password and opens a session; ``POST /logout`` ends it. Accounts are made with ``upkeep
user add`` or ``/api/users`` (``upkeep.web.accounts``).

How the sign-in form is protected:

* a double-submit CSRF token: ``GET /login`` sets the ``upkeep_login_csrf`` cookie
  (HttpOnly, SameSite=Strict, Path=/login) and puts the same value in a hidden field; the
  post must carry both, equal (403 otherwise). The guard also refuses a post from another
  origin or site;
* failures are counted per client address and per user name (``LoginLimiter``): after
  ``MAX_FAILURES`` within ``FAILURE_WINDOW`` either one is refused with 429 and
  ``Retry-After`` until the oldest failure ages out. The counters live in this daemon's
  memory, bounded to ``MAX_TRACKED`` addresses and names (the oldest are forgotten first),
  so a flood of made-up names cannot exhaust memory. Behind a reverse proxy every client
  has the proxy's address: the per-name limit still holds;
* at most ``HASHING_AT_ONCE`` password verifications run at once (each takes 64 MiB and
  a few tenths of a second), so a flood of sign-ins queues instead of exhausting memory;
* an unknown name costs a verification against a dummy hash, like a wrong password.

On success a new session is opened (a session id sent before is never reused, so it
cannot be fixed by an attacker) and its secret set in the ``upkeep_session`` cookie:
``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Max-Age`` its lifetime, and ``Secure``
when the request came over https or ``alerting.public_url`` is https. The user goes to
``next`` if it is a path on this site (``/…``, never ``//host`` or a scheme), else ``/``.

Pages: ``render_page(request, "name.html", context)`` renders a template of
``upkeep/web/templates`` (Jinja2, autoescaped) with ``principal`` (who is signed in) and
``csrf_token`` (the session's, or None) added; ``base.html`` is the layout (header with
the user, their role and a sign-out button; ``{% block content %}``).

How a page's script sends a change: with ``fetch``, a JSON body, the session cookie and
the session's CSRF token, which ``base.html`` puts in ``<meta name="csrf-token">``::

    const token = document.querySelector('meta[name="csrf-token"]').content;
    await fetch("/api/alerts/7/ack", {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": token},
      body: JSON.stringify({comment: "on it"}),
    });

A change without the header (or with another session's token) is a 403 from the guard.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from upkeep.core.access import Principal
from upkeep.web.guard import (
    LOGIN_PATH,
    LOGOUT_PATH,
    PRINCIPAL_KEY,
    SESSION_COOKIE,
    SESSION_KEY,
    cookie_is_secure,
    cookie_value,
)

if TYPE_CHECKING:
    from jinja2 import Environment

    from upkeep.store.accounts import SessionRecord, UserRecord
    from upkeep.web.app import DaemonState
    from upkeep.web.guard import GuardSettings

LOGIN_CSRF_COOKIE = "upkeep_login_csrf"
"""The double-submit cookie of the sign-in form."""
LOGIN_CSRF_CHARS = 43
"""The length of a sign-in form's token (32 random bytes, base64url)."""
LOGIN_CSRF_AGE_S = 3600
"""How long a sign-in form stays usable."""
MAX_FAILURES = 5
"""Failed sign-ins per address, or per name, within ``FAILURE_WINDOW`` before a 429."""
FAILURE_WINDOW_S = 15 * 60.0
"""How long a failed sign-in counts."""
MAX_TRACKED = 10_000
"""Addresses and names whose failures are remembered, each (oldest forgotten first)."""
HASHING_AT_ONCE = 2
"""Password hashes computed at once (each takes 64 MiB)."""
MAX_NEXT_CHARS = 2000
"""A longer ``next`` is replaced by ``/``."""
MAX_QUERY_NEXT_CHARS = 16_384
"""A longer ``next`` in the sign-in form's address is a 422 (shorter, too long ones go to
``/``)."""
MAX_FORM_FIELDS = 8
"""The sign-in form has four fields; a post with more than this many is refused."""
LOGIN_REFUSALS: dict[int | str, dict[str, str]] = {
    400: {"description": "the body is not a UTF-8 form of at most 8 fields"},
    401: {"description": "wrong user name or password (the form again)"},
    403: {
        "description": "the form's `csrf` field is not its `upkeep_login_csrf` cookie, or "
        "the post comes from another origin or site"
    },
    415: {"description": "not `application/x-www-form-urlencoded`"},
    429: {"description": "too many failures for this address or name: `Retry-After` says when"},
}
"""What ``POST /login`` answers besides success, as OpenAPI responses."""
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
"""Headers of every page: no framing (clickjacking), no foreign scripts, no caching."""


class LoginLimiter:
    """Counts failed sign-ins per key (an address, a name) within a sliding window, in
    bounded memory: at most ``max_keys`` keys, the least recently failed forgotten first."""

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_s: float = FAILURE_WINDOW_S,
        max_keys: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, keys: list[str]) -> float | None:
        """Given a sign-in's keys, return in how many seconds one may try again if any key
        has ``max_failures`` failures within the window, else None."""
        now = self.clock()
        waits: list[float] = []
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - self.window_s:
                failures.popleft()
            if len(failures) >= self.max_failures:
                waits.append(failures[0] + self.window_s - now)
            elif not failures:
                del self._failures[key]
        return max(waits) if waits else None

    def failed(self, keys: list[str]) -> None:
        """Given a failed sign-in's keys, count it against each."""
        now = self.clock()
        for key in keys:
            failures = self._failures.pop(key, None)
            if failures is None:
                failures = deque(maxlen=self.max_failures)
            failures.append(now)
            self._failures[key] = failures
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, keys: list[str]) -> None:
        """Given a successful sign-in's keys, forget their failures."""
        for key in keys:
            self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


@cache
def environment() -> Environment:
    """Return the Jinja2 environment of the pages (package templates, autoescaped)."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("upkeep.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )


def current_principal(request: Request) -> Principal | None:
    """Given a request, return who the guard admitted it as, or None (nobody)."""
    found = request.scope.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


def current_session(request: Request) -> SessionRecord | None:
    """Given a request, return the signed-in user's session, or None (a token, nobody)."""
    from upkeep.store.accounts import SessionRecord

    found = request.scope.get(SESSION_KEY)
    return found if isinstance(found, SessionRecord) else None


def csrf_token(request: Request) -> str | None:
    """Given a request, return the CSRF token its session's changes must send in
    ``X-CSRF-Token`` (None: no session, e.g. a token's request, which needs none)."""
    session = current_session(request)
    return session.csrf_token if session is not None else None


def render_page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Given a request, a template's name and its context, return the page with
    ``principal`` and ``csrf_token`` in its context and ``PAGE_HEADERS`` set."""
    page = environment().get_template(template)
    text = page.render(
        principal=current_principal(request), csrf_token=csrf_token(request), **(context or {})
    )
    return HTMLResponse(text, status_code=status_code, headers={**PAGE_HEADERS, **(headers or {})})


def safe_next(value: str | None) -> str:
    """Given where to go after signing in, return it if it is a path on this site, else
    ``/``: never another host (``//evil``, ``/\\evil``, ``https://evil``)."""
    if not value or len(value) > MAX_NEXT_CHARS or not value.isprintable():
        return "/"
    if not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _set_cookie(
    response: Response, name: str, value: str, *, path: str, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="strict"
    )


class SignIn:
    """The sign-in and sign-out handlers of one app, with its failure counts and the
    semaphore that bounds password hashing."""

    def __init__(self, state: DaemonState, settings: Callable[[], GuardSettings]) -> None:
        self.state = state
        self.settings = settings
        self.limiter = LoginLimiter()
        self.hashing = asyncio.Semaphore(HASHING_AT_ONCE)

    def _secure(self, request: Request) -> bool:
        return cookie_is_secure(request.scope, self.settings())

    def login_page(
        self,
        request: Request,
        *,
        next_path: str,
        username: str = "",
        error: str | None = None,
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> HTMLResponse:
        """Return the sign-in form, with a double-submit token in a cookie and a field."""
        sent = cookie_value(request.scope, LOGIN_CSRF_COOKIE)
        login_csrf = sent if sent and len(sent) == LOGIN_CSRF_CHARS else secrets.token_urlsafe(32)
        response = render_page(
            request,
            "login.html",
            {"login_csrf": login_csrf, "next": next_path, "username": username, "error": error},
            status_code=status_code,
            headers=headers,
        )
        _set_cookie(
            response,
            LOGIN_CSRF_COOKIE,
            login_csrf,
            path=LOGIN_PATH,
            max_age=LOGIN_CSRF_AGE_S,
            secure=self._secure(request),
        )
        return response

    async def show_login(
        self,
        request: Request,
        next: Annotated[
            str | None,
            Query(
                max_length=MAX_QUERY_NEXT_CHARS,
                description="where to go after signing in: a path of this site (anything "
                "else, or longer than 2000 characters, goes to `/`)",
            ),
        ] = None,
    ) -> Response:
        """The sign-in form, a page that works without script (or, signed in already, a
        redirect to `next`)."""
        next_path = safe_next(next)
        who = current_principal(request)
        if who is not None and who.kind == "user":
            return RedirectResponse(next_path, status_code=303)
        return self.login_page(request, next_path=next_path)

    async def log_in(self, request: Request) -> Response:
        """Sign in: a form (`application/x-www-form-urlencoded`) with `username`,
        `password`, `csrf` (the value of the `upkeep_login_csrf` cookie the form came with)
        and `next`. Checks the name and password, opens a new session and goes to `next`.
        No credential needed; failures are rate-limited per address and per name."""
        from upkeep.store.accounts import MAX_PASSWORD_CHARS

        fields = await _form(request)
        if fields is None:
            return self.login_page(
                request, next_path="/", error="The form could not be read.", status_code=400
            )
        next_path = safe_next(fields.get("next"))
        username = fields.get("username", "")[:64]
        sent_cookie = cookie_value(request.scope, LOGIN_CSRF_COOKIE) or ""
        if not sent_cookie or not hmac.compare_digest(
            sent_cookie.encode("ascii"), fields.get("csrf", "").encode("utf-8")
        ):
            return self.login_page(
                request,
                next_path=next_path,
                username=username,
                error="The form expired or did not come from this page; please sign in again.",
                status_code=403,
            )
        client = request.scope.get("client")
        keys = [f"address:{client[0] if client else '-'}", f"name:{username.lower()}"]
        wait = self.limiter.retry_after(keys)
        if wait is not None:
            seconds = max(1, int(wait) + 1)
            return self.login_page(
                request,
                next_path=next_path,
                username=username,
                error=f"Too many failed attempts; try again in {seconds} seconds.",
                status_code=429,
                headers={"retry-after": str(seconds)},
            )
        password = fields.get("password", "")[: MAX_PASSWORD_CHARS + 1]
        accounts = self.state.store.accounts
        async with self.hashing:
            user = await asyncio.to_thread(accounts.authenticate, username, password)
        if user is None:
            self.limiter.failed(keys)
            return self.login_page(
                request,
                next_path=next_path,
                username=username,
                error="Wrong user name or password.",
                status_code=401,
            )
        self.limiter.succeeded(keys)
        return await self._signed_in(request, user, next_path)

    async def _signed_in(self, request: Request, user: UserRecord, next_path: str) -> Response:
        """Open a new session for a user who signed in (ending one the browser sent: a
        session id is never carried over) and send them to ``next_path``."""
        from upkeep.store.accounts import SESSION_LIFETIME

        accounts = self.state.store.accounts
        previous = cookie_value(request.scope, SESSION_COOKIE)
        if previous:
            await asyncio.to_thread(accounts.end_session, previous)
        opened = await asyncio.to_thread(accounts.open_session, user)
        response = RedirectResponse(next_path, status_code=303)
        secure = self._secure(request)
        _set_cookie(
            response,
            SESSION_COOKIE,
            opened.secret,
            path="/",
            max_age=int(SESSION_LIFETIME.total_seconds()),
            secure=secure,
        )
        response.delete_cookie(
            LOGIN_CSRF_COOKIE, path=LOGIN_PATH, secure=secure, httponly=True, samesite="strict"
        )
        response.headers["cache-control"] = "no-store"
        return response

    async def log_out(self, request: Request) -> Response:
        """Sign out: ends the session (its CSRF token in the form's `csrf_token` field or
        in `X-CSRF-Token`) and goes to the sign-in form."""
        session = current_session(request)
        if session is not None:
            sent = request.headers.get("x-csrf-token", "")
            if not sent:
                sent = ((await _form(request)) or {}).get("csrf_token", "")
            if not hmac.compare_digest(sent.encode("utf-8"), session.csrf_token.encode("ascii")):
                return JSONResponse(
                    {"detail": "signing out needs the session's CSRF token"}, status_code=403
                )
            secret = cookie_value(request.scope, SESSION_COOKIE)
            if secret:
                await asyncio.to_thread(self.state.store.accounts.end_session, secret)
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=self._secure(request),
            httponly=True,
            samesite="strict",
        )
        return response


async def _form(request: Request) -> dict[str, str] | None:
    """Given a form post, return its fields (the first value of each), or None if the
    body is not a UTF-8 form of at most ``MAX_FORM_FIELDS`` fields."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        return None
    try:
        pairs = parse_qsl(
            (await request.body()).decode("utf-8"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        return None
    fields: dict[str, str] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def auth_router(state: DaemonState, settings: Callable[[], GuardSettings]) -> APIRouter:
    """Given the daemon's state and the guard's settings, return the sign-in and sign-out
    routes and the accounts API (``upkeep.web.accounts``)."""
    from upkeep.web.accounts import accounts_api_router

    sign_in = SignIn(state, settings)
    # The sign-in pages are HTML forms for people, not API operations: they are left out of
    # the OpenAPI schema (docs/api.md and docs/security.md describe them in prose).
    router = APIRouter()
    router.add_api_route(
        LOGIN_PATH,
        sign_in.show_login,
        include_in_schema=False,
        methods=["GET"],
        response_class=HTMLResponse,
        response_description="the sign-in form (HTML), with the form's CSRF cookie",
        responses={303: {"description": "signed in already: to `next`"}},
    )
    router.add_api_route(
        LOGIN_PATH,
        sign_in.log_in,
        include_in_schema=False,
        methods=["POST"],
        response_class=HTMLResponse,
        status_code=303,
        response_description="signed in: the session cookie is set; to `next` (a path of "
        "this site) or `/`",
        responses=LOGIN_REFUSALS,
    )
    router.add_api_route(
        LOGOUT_PATH,
        sign_in.log_out,
        include_in_schema=False,
        methods=["POST"],
        status_code=303,
        response_description="signed out: the session ends, its cookie is cleared; to /login",
        responses={
            403: {
                "description": "the form's `csrf_token` (or `X-CSRF-Token`) is not the "
                "session's, or the post comes from another origin"
            },
            415: {"description": "neither a form nor JSON"},
        },
    )
    router.include_router(accounts_api_router(state, sign_in.hashing))
    return router
