"""The public status page's routes: ``/status`` (HTML), ``/status.json``, Atom and RSS
feeds and SVG badges, answered to anyone (GET and HEAD; ``web.guard.OPEN_PREFIXES``).

What they show is built at most every ``SNAPSHOT_TTL`` per config (one snapshot serves
every format), so a page read by many costs one computation; each answer carries a short
``Cache-Control`` and an ``ETag`` (a matching ``If-None-Match`` is a 304), and is gzipped
when the client accepts it. Nothing a client sends reaches a 500: an unknown component is
a 404, a bad ``period`` a 422.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import AfterValidator, Field

from upkeep.config.models import NAME_PATTERN
from upkeep.store.updates import MAX_UPDATE_CHARS
from upkeep.web.guard import CHANGE_REFUSALS
from upkeep.web.inputs import Acker, ApiBody, RecordId
from upkeep.web.status.figures import (
    ReportedHours,
    load_inputs,
    mean_response_ms,
    span_figures,
)
from upkeep.web.status.page import build_snapshot, percent_text, snapshot_json
from upkeep.web.status.render import (
    STATE_COLOURS,
    STATE_WORDS,
    atom_feed,
    badge_svg,
    render_html,
    rss_feed,
    uptime_colour,
)

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.web.app import DaemonState
    from upkeep.web.status.figures import StatusInputs
    from upkeep.web.status.page import StatusSnapshot

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 30.0
"""A snapshot is rebuilt when older than this (the answers' ``max-age`` too)."""
UPTIME_PERIODS = (timedelta(days=1), timedelta(days=365))
RESPONSE_PERIODS = (timedelta(hours=1), timedelta(days=365))
MAX_BODY_CACHE = 64
"""Rendered answers kept per snapshot (per base URL and format; the least recently asked
for dropped first)."""
ComponentName = Annotated[
    str, Path(pattern=NAME_PATTERN, max_length=200, description="a component's name")
]


Made = tuple[bytes, bytes, str]
"""A rendered answer: its body, the body gzipped, its ETag."""
Maker = Callable[["StatusSnapshot"], bytes]
"""Renders one answer (a format for a base URL, a badge) from a snapshot."""


@dataclass(frozen=True)
class _Current:
    loaded: LoadedConfig
    built_at: float
    generation: int
    snapshot: StatusSnapshot


def _made(content: bytes) -> Made:
    return (
        content,
        gzip.compress(content, compresslevel=6, mtime=0),
        '"' + hashlib.sha256(content).hexdigest()[:32] + '"',
    )


class StatusService:
    """Builds and keeps the snapshot of the config in force and the answers rendered
    from it; safe to share between threads.

    The first snapshot, and the first after a reload, is built when asked for. After
    that a stale one (older than ``SNAPSHOT_TTL_S``) keeps answering while one thread
    builds its successor and renders again every answer asked for since (up to
    ``MAX_BODY_CACHE``), then swaps both in at once: no reader waits for a rebuild or
    a render. Reported hours are remembered between builds (``ReportedHours``).
    """

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._building = False
        self._current: _Current | None = None
        self._hours = ReportedHours()
        self._bodies: dict[tuple[str, ...], Made] = {}
        """Answers rendered from the current snapshot."""
        self._makers: dict[tuple[str, ...], Maker] = {}
        """How to render each answer asked for, to render it again for the next snapshot."""
        self._period_inputs: dict[tuple[datetime, timedelta], StatusInputs] = {}

    def current(self) -> tuple[int, StatusSnapshot]:
        """Return the current snapshot and its generation (see the class)."""
        loaded = self.state.loaded
        with self._lock:
            found = self._current
            if found is not None and found.loaded is loaded:
                if time.monotonic() - found.built_at >= SNAPSHOT_TTL_S and not self._building:
                    self._building = True
                    threading.Thread(
                        target=self._rebuild, args=(loaded,), name="status-snapshot", daemon=True
                    ).start()
                return found.generation, found.snapshot
        with self._build_lock:
            with self._lock:
                found = self._current
                if found is not None and found.loaded is loaded:
                    return found.generation, found.snapshot
            return self._build(loaded, render=False)

    def _build(self, loaded: LoadedConfig, *, render: bool) -> tuple[int, StatusSnapshot]:
        """Build a snapshot (and, with ``render``, every answer asked for) and swap it in."""
        snapshot = build_snapshot(loaded, self.state.store, self.state.clock.now(), self._hours)
        bodies: dict[tuple[str, ...], Made] = {}
        if render:
            with self._lock:
                makers = list(self._makers.items())
            for key, maker in makers:
                try:
                    bodies[key] = _made(maker(snapshot))
                except Exception:
                    logger.debug("could not render %s ahead", key[0], exc_info=True)
        with self._lock:
            generation = (self._current.generation if self._current else 0) + 1
            self._current = _Current(loaded, time.monotonic(), generation, snapshot)
            self._bodies = bodies
            self._period_inputs = {}
            if not render:
                # A new config: what was asked of the old one may name what is gone.
                self._makers = {}
            return generation, snapshot

    def _rebuild(self, loaded: LoadedConfig) -> None:
        try:
            with self._build_lock:
                self._build(loaded, render=True)
        except Exception:
            logger.warning("could not rebuild the status page", exc_info=True)
        finally:
            with self._lock:
                self._building = False

    def body(self, key: tuple[str, ...], make: Maker) -> Made:
        """Given a key (format, base URL, ...) and how to render it from a snapshot,
        return the answer rendered from the current snapshot, rendering it once."""
        generation, snapshot = self.current()
        with self._lock:
            found = self._bodies.get(key) if self._generation_is(generation) else None
            if found is not None:
                # Least recently asked for goes first: a flood of new keys (a new Host on
                # every request) cannot push out what readers keep asking for.
                self._bodies[key] = self._bodies.pop(key)
                self._makers[key] = self._makers.pop(key, make)
        if found is not None:
            return found
        made = _made(make(snapshot))
        with self._lock:
            self._makers.pop(key, None)
            _keep_at_most(self._makers, MAX_BODY_CACHE - 1)
            self._makers[key] = make
            # Rendered from a snapshot replaced meanwhile: answered, never kept.
            if self._generation_is(generation):
                self._bodies.pop(key, None)
                _keep_at_most(self._bodies, MAX_BODY_CACHE - 1)
                self._bodies[key] = made
        return made

    def _generation_is(self, generation: int) -> bool:
        return self._current is not None and self._current.generation == generation

    def inputs_for(self, snapshot: StatusSnapshot, period: timedelta) -> StatusInputs:
        """Given a snapshot and a period ending at its time, return inputs covering the
        period: the snapshot's when they do, else read once per snapshot and period."""
        now = snapshot.generated_at
        if now - period >= snapshot.inputs.start:
            return snapshot.inputs
        key = (now, period)
        with self._lock:
            found = self._period_inputs.get(key)
        if found is not None:
            return found
        inputs = load_inputs(
            self.state.loaded, self.state.store, now - period, now, hours=self._hours
        )
        with self._lock:
            if len(self._period_inputs) >= MAX_BODY_CACHE:
                self._period_inputs.clear()
            self._period_inputs[key] = inputs
        return inputs


def _keep_at_most(found: dict[Any, Any], count: int) -> None:
    """Given a dict kept in order of last use and a count, drop its least recently used
    entries until at most that many are left."""
    while len(found) > count:
        del found[next(iter(found))]


def _period(text: str, bounds: tuple[timedelta, timedelta]) -> timedelta:
    """Given a ``period`` from the query and its bounds, return it; raise a 422 unless
    it is a duration within them."""
    from upkeep.core.durations import format_duration, parse_duration

    low, high = bounds
    message = f"period must be a duration from {format_duration(low)} to {format_duration(high)}, such as 30d"
    if len(text) > 20:
        raise HTTPException(status_code=422, detail=message)
    try:
        length = parse_duration(text)
    except (ValueError, OverflowError):
        raise HTTPException(status_code=422, detail=message) from None
    if not low <= length <= high:
        raise HTTPException(status_code=422, detail=message)
    return length


def _base_url(state: DaemonState, request: Request) -> str:
    """Return the base of absolute links: ``status_page.base_url``, else the address the
    request came to when its Host names this server (the guard does not check it on
    public pages, and a forged one must not end up in feeds), else
    ``alerting.public_url``, else the listen address."""
    from upkeep.web.guard import GuardSettings

    config = state.loaded.config
    if config.status_page.base_url:
        return config.status_page.base_url.rstrip("/")
    listen = state.listen or config.engine.listen
    host = request.headers.get("host", "")
    if host and host.isascii() and GuardSettings.from_config(config, listen).allows_host(host):
        return f"{request.url.scheme}://{host.strip()}"
    if config.alerting.public_url:
        return config.alerting.public_url.rstrip("/")
    return f"http://{listen}"


def _answer(
    request: Request, body: bytes, compressed: bytes, etag: str, media_type: str
) -> Response:
    headers = {
        "Cache-Control": f"public, max-age={int(SNAPSHOT_TTL_S)}",
        "ETag": etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
    }
    wanted = request.headers.get("if-none-match", "")
    if etag in (tag.strip() for tag in wanted.split(",")) or wanted.strip() == "*":
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        body = compressed
    return Response(content=body, media_type=media_type, headers=headers)


def status_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the public status page's routes (404 while
    ``status_page.enabled`` is false)."""
    router = APIRouter(tags=["status page"])
    service = StatusService(state)

    def enabled() -> None:
        if not state.loaded.config.status_page.enabled:
            raise HTTPException(status_code=404, detail="the status page is not enabled")

    async def served(
        request: Request, key: tuple[str, ...], make: Any, media_type: str
    ) -> Response:
        enabled()
        body, compressed, etag = await asyncio.to_thread(service.body, key, make)
        return _answer(request, body, compressed, etag, media_type)

    @_get_and_head(router, "/status", response_description="the page (HTML)")
    async def status_page(request: Request) -> Response:
        """The public status page: components, daily uptime, incidents, maintenance."""
        base = _base_url(state, request)
        return await served(
            request,
            ("html", base),
            lambda snapshot: render_html(snapshot, base).encode(),
            "text/html; charset=utf-8",
        )

    @_get_and_head(router, "/status.json", response_description="the page as JSON")
    async def status_json(request: Request) -> Response:
        """The status page as JSON (`schema` 1): components with state and daily figures,
        incidents with published updates, maintenance."""
        import orjson

        base = _base_url(state, request)
        return await served(
            request,
            ("json", base),
            lambda snapshot: orjson.dumps(snapshot_json(snapshot, base)),
            "application/json",
        )

    @_get_and_head(router, "/status/feed.atom", response_description="Atom 1.0")
    async def status_atom(request: Request) -> Response:
        """Incidents and maintenance as an Atom feed."""
        base = _base_url(state, request)
        return await served(
            request,
            ("atom", base),
            lambda snapshot: atom_feed(snapshot, base),
            "application/atom+xml; charset=utf-8",
        )

    @_get_and_head(router, "/status/feed.rss", response_description="RSS 2.0")
    async def status_rss(request: Request) -> Response:
        """Incidents and maintenance as an RSS feed."""
        base = _base_url(state, request)
        return await served(
            request,
            ("rss", base),
            lambda snapshot: rss_feed(snapshot, base),
            "application/rss+xml; charset=utf-8",
        )

    _badge_routes(router, state, service, enabled)
    _publish_route(router, state)
    return router


def _publish_route(router: APIRouter, state: DaemonState) -> None:
    """Add the route publishing an incident update (behind the guard: it is ``/api``)."""

    @router.post(
        "/api/incidents/{incident_id}/updates",
        status_code=201,
        responses={
            **CHANGE_REFUSALS,
            404: {"description": "no incident (fired alert) with this id"},
        },
        response_description="the published update: `id`, `incident`, `at`, `text`",
        tags=["incidents"],
    )
    async def publish(incident_id: RecordId, body: PublishedUpdate, who: Acker) -> dict[str, Any]:
        """Publish an update on an incident for the public status page, recorded as made
        by the caller; secrets are masked before it is stored. Nothing else of an
        incident (its message, notes, outputs) is ever shown there."""
        from upkeep.store.updates import publish_update

        text = state.loaded.redactor.redact(body.text)
        try:
            update = await asyncio.to_thread(
                publish_update, state.store.engine, incident_id, text, who.actor, state.clock.now()
            )
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        if update is None:
            raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
        return update.to_json()


def _get_and_head(router: APIRouter, path: str, **settings: Any) -> Callable[[Any], Any]:
    """Return a decorator adding a function as the GET route of a path and as its HEAD
    route (FastAPI answers HEAD only where it is declared; two routes, so each has its
    own operation id)."""

    # Every public route may answer these: the page switched off, and an unchanged answer.
    responses = {
        404: {"description": "the status page is not enabled, or no such component"},
        304: {"description": "unchanged since the `If-None-Match` ETag"},
        **settings.pop("responses", {}),
    }

    def register(function: Any) -> Any:
        router.add_api_route(path, function, methods=["GET"], responses=responses, **settings)
        router.add_api_route(path, function, methods=["HEAD"], responses=responses, **settings)
        return function

    return register


def _known(state: DaemonState, name: str) -> None:
    """Raise a 404 unless the status page has a component of this name."""
    if name not in {component.name for component in state.loaded.config.status_page.components}:
        raise HTTPException(status_code=404, detail="no such component")


def _badge_routes(
    router: APIRouter, state: DaemonState, service: StatusService, enabled: Callable[[], None]
) -> None:
    """Add the badge routes (state, uptime, response time of a component)."""

    async def served(request: Request, key: tuple[str, ...], make: Any) -> Response:
        body, compressed, etag = await asyncio.to_thread(service.body, key, make)
        return _answer(request, body, compressed, etag, "image/svg+xml")

    @_get_and_head(
        router,
        "/status/badge/{component}/status.svg",
        response_description="an SVG badge",
    )
    async def status_badge(request: Request, component: ComponentName) -> Response:
        """A badge of a component's state now."""
        enabled()
        _known(state, component)

        def make(snapshot: StatusSnapshot) -> bytes:
            view = next(view for view in snapshot.components if view.name == component)
            return badge_svg(component, STATE_WORDS[view.state].lower(), STATE_COLOURS[view.state])

        return await served(request, ("status-badge", component), make)

    @_get_and_head(
        router,
        "/status/badge/{component}/uptime.svg",
        responses={422: {"description": "a bad period"}},
        response_description="an SVG badge",
    )
    async def uptime_badge(
        request: Request,
        component: ComponentName,
        period: Annotated[str, Query(max_length=20, description="1d to 365d")] = "30d",
    ) -> Response:
        """A badge of a component's uptime over the period ending now (the page's rules:
        maintenance apart, unknown hours by `unknown_policy`)."""
        enabled()
        _known(state, component)
        length = _period(period, UPTIME_PERIODS)
        policy = state.loaded.config.status_page.unknown_policy

        def make(snapshot: StatusSnapshot) -> bytes:
            inputs = service.inputs_for(snapshot, length)
            now = snapshot.generated_at
            figures = span_figures(inputs, component, now - length, now, policy, now)
            uptime = figures.uptime_percent
            message = "no data" if uptime is None else percent_text(uptime)
            return badge_svg(f"uptime {period}", message, uptime_colour(uptime))

        return await served(request, ("uptime-badge", component, period), make)

    @_get_and_head(
        router,
        "/status/badge/{component}/response.svg",
        responses={422: {"description": "a bad period"}},
        response_description="an SVG badge",
    )
    async def response_badge(
        request: Request,
        component: ComponentName,
        period: Annotated[str, Query(max_length=20, description="1h to 365d")] = "24h",
    ) -> Response:
        """A badge of the mean response time (stored check durations) of a component's
        checks over the period ending now."""
        enabled()
        _known(state, component)
        length = _period(period, RESPONSE_PERIODS)

        def make(snapshot: StatusSnapshot) -> bytes:
            now = snapshot.generated_at
            names = snapshot.inputs.members.get(component, [])
            mean = mean_response_ms(state.store.engine, names, now - length, now)
            message = "no data" if mean is None else f"{mean:.0f} ms"
            colour = STATE_COLOURS["unknown"] if mean is None else "#1d4f91"
            return badge_svg(f"response {period}", message, colour)

        return await served(request, ("response-badge", component, period), make)


class PublishedUpdate(ApiBody):
    """The body of a request publishing an incident update."""

    text: Annotated[
        str,
        Field(min_length=1, max_length=MAX_UPDATE_CHARS, description="what the public page says"),
        AfterValidator(_printable_text),
    ]


def _printable_text(value: str) -> str:
    """Given an update's text, return it; raise ValueError if it is blank or holds a
    control character other than a newline or tab."""
    if not value.strip():
        raise ValueError("must not be blank")
    if any(not character.isprintable() and character not in "\n\t" for character in value):
        raise ValueError("must not contain control characters")
    return value
