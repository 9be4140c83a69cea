"""The dashboard's pages, its static files and its live endpoint.

Every page needs the ``read`` scope (the guard has already demanded a credential); its
actions are buttons whose script calls the ``/api`` routes, which check their own scopes.
Pages are rendered by Jinja2 with autoescape, and every value a template prints passes the
config's redactor first (the environment's ``finalize``), so neither markup nor a secret
from a probe's message, a step's output or a channel's error reaches a page.

``GET /ui/live?after=N`` is what an open page polls (every second): the results stored
after result id ``N`` (newest per check), and the cursor to ask after next.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import re
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from upkeep.alerting import routing
from upkeep.core.access import Scope
from upkeep.web.inputs import MAX_RECORD_ID, RecordId, needs

if TYPE_CHECKING:
    from collections.abc import Callable

    from jinja2 import Environment
    from markupsafe import Markup
    from starlette.types import Receive, Send
    from starlette.types import Scope as AsgiScope

    from upkeep.alerting.stats import ReliabilityFigures
    from upkeep.core.access import Principal
    from upkeep.reports.views import CheckRow, LatestResult, Overview, StatusStrips, StoredCheck
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
"""The static files served, by suffix; nothing else under ``static/`` is served."""
UPTIME_MAX_AGE_S = 60.0
"""Uptime figures (three ``period_stats`` passes) are refreshed in the background once
this old; the page says as of when. Status, since-when and messages are current on every
request."""
GZIP_FROM_BYTES = 4096
"""A page at least this large is compressed for a client that accepts gzip."""
TAIL_BATCH = 20000
"""New results are read at most this many at a time."""
LIVE_POLL_MS = 1000
"""How often an open page asks ``/ui/live`` for new results."""
MAX_QUERY_TEXT = 200
"""The longest search text or filter value a page accepts (longer is cut)."""
MAX_LABEL_FILTERS = 16
CHECK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,199}$")
"""The characters a check's name may have in a page's path."""
PERIODS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
"""The periods a check's chart can show."""
STATUSES = ("ok", "warning", "critical", "unknown", "none")
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
}
"""Pages run no inline script: the CSP allows scripts from this server only (charts carry
inline styles, which matplotlib writes)."""


class _Page(HTMLResponse):
    """A page, sent gzip-compressed to a client that accepts it (every browser does): the
    overview of 1,000 checks is a few hundred KB of repetitive markup, a few tens
    compressed."""

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        """Send the page, compressed when the request's Accept-Encoding names gzip."""
        accepted = b",".join(
            value for key, value in scope.get("headers", []) if key.lower() == b"accept-encoding"
        )
        if len(self.body) >= GZIP_FROM_BYTES and b"gzip" in accepted.lower():
            self.body = gzip.compress(self.body, compresslevel=5)
            self.headers["content-encoding"] = "gzip"
            self.headers["content-length"] = str(len(self.body))
        self.headers["vary"] = "Accept-Encoding"
        await super().__call__(scope, receive, send)


@dataclass
class _Board:
    """What the overview keeps between requests, so a request reads only what is new.

    The newest result of each check, the checks the store knows and the hourly strips are
    loaded once, then fed with the results stored since (the primary key is the cursor:
    a range scan of the newest rows). The uptime figures are recomputed in the background
    once older than ``UPTIME_MAX_AGE_S``; a request meanwhile shows the previous ones (the
    page says as of when)."""

    strips: StatusStrips | None = None
    latest: dict[str, LatestResult] = field(default_factory=dict)
    registered: dict[str, StoredCheck] = field(default_factory=dict)
    cursor: int = 0
    loaded_for: int = -1
    uptime: dict[str, dict[str, ReliabilityFigures]] = field(default_factory=dict)
    uptime_at: datetime | None = None
    uptime_taken: float = 0.0
    uptime_for: int = -1
    refreshing: bool = False
    rows: dict[str, tuple[tuple[Any, ...], CheckRow]] = field(default_factory=dict)
    fragments: dict[str, tuple[CheckRow, str, Markup]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    uptime_lock: threading.Lock = field(default_factory=threading.Lock)


def _templates(state: DaemonState) -> Environment:
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    def finalize(value: Any) -> Any:
        # Every printed text is masked: the one place a secret could slip past a template.
        # Markup is already a page's fragment (a row rendered by its own template, whose
        # texts were masked there; a chart): masking it again could cut through markup.
        if isinstance(value, str) and not isinstance(value, Markup):
            return state.loaded.redactor.redact(value)
        return value

    environment = Environment(
        loader=PackageLoader("upkeep.web.ui", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    environment.filters["ago"] = _ago
    environment.filters["when"] = _when
    environment.filters["duration"] = _duration
    environment.filters["percent"] = _percent
    environment.globals["icons"] = _icons()
    return environment


def _icons() -> dict[str, str]:
    from upkeep.reports.views import STATUS_ICONS

    extra = {
        "firing": STATUS_ICONS["critical"],
        "pending": STATUS_ICONS["warning"],
        "resolved": STATUS_ICONS["ok"],
        "succeeded": STATUS_ICONS["ok"],
        "passed": STATUS_ICONS["ok"],
        "sent": STATUS_ICONS["ok"],
        "failed": STATUS_ICONS["critical"],
        "dead": STATUS_ICONS["critical"],
        "rejected": STATUS_ICONS["critical"],
        "interrupted": STATUS_ICONS["critical"],
        "waiting": "\u23f8",
        "running": "\u21bb",
        "planned": "\u2026",
        "done": STATUS_ICONS["ok"],
        "approved": STATUS_ICONS["ok"],
        "todo": "\u2610",
        "timed_out": STATUS_ICONS["critical"],
        "expired": STATUS_ICONS["critical"],
        "cancelled": STATUS_ICONS["critical"],
        "missed": STATUS_ICONS["warning"],
        "not_run": STATUS_ICONS["none"],
        "muted": "\u2205",
        # A remediation trigger's states (the alert page): started, suppressed, done.
        "started": "\u21bb",
        "suppressed": "\u2205",
    }
    return {**STATUS_ICONS, **extra}


def _ago(moment: datetime | None, now: datetime | None = None) -> str:
    from upkeep.core.text import human_duration

    if moment is None:
        return "-"
    span = (now or datetime.now(UTC)) - moment
    return "just now" if span < timedelta(seconds=1) else f"{human_duration(span)} ago"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    from upkeep.core.text import human_duration

    return "-" if seconds is None else human_duration(seconds)


def _percent(value: float | None) -> str:
    from upkeep.reports.views import percent_text

    return percent_text(value)


def _cut(text: str | None) -> str:
    return (text or "")[:MAX_QUERY_TEXT]


def _label_filters(pairs: list[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs[:MAX_LABEL_FILTERS]:
        key, separator, value = pair.partition("=")
        if separator and key.strip():
            found[_cut(key.strip())] = _cut(value.strip())
    return found


def _matchers(text: str) -> tuple[dict[str, str], list[str]]:
    """Given matchers a person typed (``key=pattern``, by spaces, commas or lines), return
    them and the parts that are not matchers."""
    from upkeep.web.alerts import MAX_MATCHERS

    found: dict[str, str] = {}
    problems: list[str] = []
    for part in re.split(r"[\s,]+", text.strip())[: MAX_MATCHERS + 1]:
        if not part:
            continue
        key, separator, value = part.partition("=")
        if not separator or not key:
            problems.append(part[:MAX_QUERY_TEXT])
        else:
            found[key[:MAX_QUERY_TEXT]] = value[:MAX_QUERY_TEXT]
    return found, problems


def _read_static(name: str) -> tuple[bytes, str] | None:
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in STATIC_TYPES or not re.fullmatch(r"[a-z0-9-]+\.[a-z]+", name):
        return None
    resource = resources.files("upkeep.web.ui").joinpath("static", name)
    if not resource.is_file():
        return None
    return resource.read_bytes(), STATIC_TYPES[suffix]


_REQUEST: ContextVar[Request | None] = ContextVar("upkeep_dashboard_request", default=None)
"""The request a page is being rendered for (its session's user and CSRF token)."""


async def _remember_request(request: Request) -> None:
    # An async dependency runs in the request's own task, before the route: what it sets
    # is what the route's render() reads.
    _REQUEST.set(request)


def _account_context() -> dict[str, Any]:
    """Return who the page is for, the CSRF token its changes send (empty for a token's
    request, which needs none) and ``may``, which says whether they hold a scope."""
    from upkeep.web.auth import csrf_token, current_principal

    request = _REQUEST.get()
    if request is None:
        return {"principal": None, "csrf_token": "", "may": _allowed_to(None)}
    principal = current_principal(request)
    return {
        "principal": principal,
        "csrf_token": csrf_token(request) or "",
        "may": _allowed_to(principal),
    }


def _allowed_to(principal: Principal | None) -> Callable[[str], bool]:
    """Given who a page is for, return ``may(scope name)``: whether its forms for that
    scope are worth showing (the API checks again). Without a principal, every form is."""

    def may(scope: str) -> bool:
        return principal is None or principal.allows(Scope(scope))

    return may


class _Dashboard:
    """What every page route shares: the state, the templates, the overview's board."""

    def __init__(self, state: DaemonState) -> None:
        self.state = state
        self.environment = _templates(state)
        self.board = _Board()

    def render(
        self,
        template: str,
        status_code: int = 200,
        started: tuple[float, float] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        """Given a template and what it shows, return the page; with ``started`` (readings
        of ``perf_counter`` and ``process_time``), say how long it took in a
        ``Server-Timing`` header."""
        now = self.state.clock.now()
        page = self.environment.get_template(template).render(
            now=now,
            zone=self.state.loaded.config.timezone,
            poll_ms=LIVE_POLL_MS,
            **_account_context(),
            **context,
        )
        headers = dict(PAGE_HEADERS)
        if started is not None:
            wall_started, cpu_started = started
            # Wall time from the route's start, and the CPU time this process spent meanwhile
            # (on a busy machine the first waits for the CPU; the second does not).
            wall_ms = (time.perf_counter() - wall_started) * 1000
            cpu_ms = (time.process_time() - cpu_started) * 1000
            headers["Server-Timing"] = f"page;dur={wall_ms:.1f}, cpu;dur={cpu_ms:.1f}"
        return _Page(page, status_code=status_code, headers=headers)

    def board_now(
        self, now: datetime
    ) -> tuple[StatusStrips, dict[str, LatestResult], dict[str, StoredCheck], int]:
        """Return the strips, each check's newest result, the stored checks and the result
        cursor, brought up to date with the results stored since the last request; all
        loaded afresh the first time and when the config changes."""
        from upkeep.reports import views

        board = self.board
        engine = self.state.store.engine
        redactor = self.state.loaded.redactor
        with board.lock:
            if board.strips is None or board.loaded_for != id(self.state.loaded):
                # The cursor first: a result stored while the rest loads is read again
                # from the tail, which changes nothing it already counted.
                _, board.cursor = views.results_after(engine, 0, redactor)
                board.latest = views.latest_results(engine, redactor)
                board.registered = views.stored_checks(engine)
                board.strips = views.load_strips(engine, now)
                board.loaded_for = id(self.state.loaded)
            else:
                while True:
                    found, board.cursor = views.results_after(
                        engine, board.cursor, redactor, limit=TAIL_BATCH
                    )
                    unknown = False
                    for result in found:
                        board.strips.add(result.check, result.at, result.status)
                        known = board.latest.get(result.check)
                        if known is None or known.result_id < result.result_id:
                            board.latest[result.check] = result
                        unknown = unknown or result.check not in board.registered
                    if unknown:
                        board.registered = views.stored_checks(engine)
                    if len(found) < TAIL_BATCH:
                        break
                board.strips.forget_before(now - timedelta(hours=views.STRIP_HOURS + 1))
            return board.strips, dict(board.latest), board.registered, board.cursor

    def row_fragments(self, model: Overview, now: datetime) -> dict[str, Markup]:
        """Given the overview's model and the time, return each shown check's table row,
        rendered by ``overview_row.html``; a row is rendered again only when it or its
        since-when text changed, so a page of 1,000 unchanged checks costs little more
        than joining them."""
        from markupsafe import Markup

        template = self.environment.get_template("overview_row.html")
        fragments: dict[str, Markup] = {}
        cache = self.board.fragments
        for group in model.groups:
            for row in group.rows:
                since = _ago(row.since, now)
                found = cache.get(row.name)
                if found is not None and found[0] is row and found[1] == since:
                    fragments[row.name] = found[2]
                    continue
                # The row template autoescapes and masks like every page: its output is
                # markup, safe to insert as such.
                html = Markup(template.render(row=row, since=since))  # noqa: S704
                cache[row.name] = (row, since, html)
                fragments[row.name] = html
        return fragments

    def uptime_now(self) -> tuple[dict[str, dict[str, ReliabilityFigures]], datetime]:
        """Return each check's uptime figures per period and as of when: computed now the
        first time (and after a config change), else the last ones, refreshed in the
        background once older than ``UPTIME_MAX_AGE_S``."""
        board = self.board
        with board.uptime_lock:
            if board.uptime_at is None or board.uptime_for != id(self.state.loaded):
                self._compute_uptime()
            elif time.monotonic() - board.uptime_taken > UPTIME_MAX_AGE_S and not board.refreshing:
                board.refreshing = True
                threading.Thread(
                    target=self._refresh_uptime, name="dashboard-uptime", daemon=True
                ).start()
            if board.uptime_at is None:  # pragma: no cover - _compute_uptime sets it
                raise RuntimeError("no uptime figures")
            return board.uptime, board.uptime_at

    def _compute_uptime(self) -> None:
        from upkeep.reports import views

        now = self.state.clock.now()
        figures = views.uptime_by_period(
            self.state.store.engine, now, views.response_targets(self.state.loaded)
        )
        self.board.uptime, self.board.uptime_at = figures, now
        self.board.uptime_taken = time.monotonic()
        self.board.uptime_for = id(self.state.loaded)

    def _refresh_uptime(self) -> None:
        from upkeep.reports import views

        try:
            now = self.state.clock.now()
            figures = views.uptime_by_period(
                self.state.store.engine, now, views.response_targets(self.state.loaded)
            )
            with self.board.uptime_lock:
                self.board.uptime, self.board.uptime_at = figures, now
                self.board.uptime_taken = time.monotonic()
        except Exception:  # the old figures stay; the next request tries again
            logger.warning("could not refresh the dashboard's uptime figures", exc_info=True)
        finally:
            self.board.refreshing = False


def dashboard_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the dashboard's routes: the pages, ``/static/...``
    (open: it holds nothing secret) and ``/ui/live``."""
    router = APIRouter(include_in_schema=False, dependencies=[Depends(_remember_request)])
    dashboard = _Dashboard(state)
    _static_and_live(router, dashboard)
    _overview_and_check(router, dashboard)
    _alert_pages(router, dashboard)
    _operation_pages(router, dashboard)
    return router


def _static_and_live(router: APIRouter, dashboard: _Dashboard) -> None:
    """Add the static files and the live endpoint."""
    from upkeep.reports import views

    state = dashboard.state
    read = [needs(Scope.READ)]
    static_cache: dict[str, tuple[bytes, str]] = {}

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        """A stylesheet or script of the dashboard (open: no secret in it)."""
        found = static_cache.get(name)
        if found is None:
            found = _read_static(name)
            if found is None:
                raise HTTPException(status_code=404, detail="no such file")
            static_cache[name] = found
        body, media_type = found
        return Response(
            body,
            media_type=media_type,
            headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    @router.get("/ui/live", dependencies=read)
    async def live(
        after: Annotated[int, Query(ge=0, le=MAX_RECORD_ID)] = 0,
        run: Annotated[int | None, Query(ge=1, le=MAX_RECORD_ID)] = None,
    ) -> JSONResponse:
        """The results stored after result id ``after`` (the newest of each check, message
        masked), the cursor to ask after next, and with ``run`` that run's steps."""

        def collect() -> dict[str, Any]:
            found, cursor = views.results_after(
                state.store.engine, after, state.loaded.redactor, limit=5000
            )
            newest: dict[str, views.LatestResult] = {}
            for result in found:
                newest[result.check] = result
            since = views.status_since(state.store.engine) if newest else {}
            body: dict[str, Any] = {
                "cursor": cursor,
                "more": len(found) >= 5000,
                "checks": [
                    {
                        "check": result.check,
                        "status": result.status.label,
                        "icon": views.STATUS_ICONS[result.status.label],
                        "at": result.at.isoformat(),
                        "since": since[result.check].isoformat() if result.check in since else None,
                        "message": views.shorten(result.message, views.OVERVIEW_MESSAGE_CHARS),
                    }
                    for result in newest.values()
                ],
            }
            if run is not None:
                record = state.store.runs.get_run(run)
                body["run"] = _run_json(record, state) if record is not None else None
            return body

        return JSONResponse(await asyncio.to_thread(collect), headers={"Cache-Control": "no-store"})


def _overview_and_check(router: APIRouter, dashboard: _Dashboard) -> None:
    """Add the overview and a check's page."""
    from upkeep.reports import views

    state = dashboard.state
    render = dashboard.render
    read = [needs(Scope.READ)]
    # --- pages -------------------------------------------------------------------------------

    @router.get("/", dependencies=read)
    async def overview(
        group: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT)] = None,
        label: Annotated[list[str] | None, Query()] = None,
        status: Annotated[str | None, Query(max_length=20)] = None,
        q: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT)] = None,
    ) -> HTMLResponse:
        """Every check grouped by a label, with status, since-when, message, strip, uptime."""
        started = (time.perf_counter(), time.process_time())
        now = state.clock.now()
        wanted = views.OverviewFilter(
            group_by=_cut(group),
            labels=_label_filters(label or []),
            status=status if status in STATUSES else "",
            search=_cut(q).strip(),
        )

        def build() -> tuple[views.Overview, datetime, dict[str, Markup]]:
            engine = state.store.engine
            strips, latest, registered, cursor = dashboard.board_now(now)
            uptime, uptime_at = dashboard.uptime_now()
            model = views.build_overview(
                state.loaded,
                registered,
                latest,
                views.status_since(
                    engine, {name: check.first_seen for name, check in registered.items()}
                ),
                strips,
                uptime,
                wanted,
                now,
                cursor,
                dashboard.board.rows,
            )
            return model, uptime_at, dashboard.row_fragments(model, now)

        model, uptime_at, rows = await asyncio.to_thread(build)
        return render(
            "overview.html",
            started=started,
            page="overview",
            model=model,
            rows=rows,
            wanted=wanted,
            uptime_at=uptime_at,
            periods=[name for name, _ in views.UPTIME_PERIODS],
            statuses=STATUSES,
        )

    @router.get("/checks/{name:path}", dependencies=read)
    async def check_page(
        name: str,
        metric: Annotated[str | None, Query(max_length=MAX_QUERY_TEXT)] = None,
        period: Annotated[str, Query(max_length=8)] = "24h",
    ) -> HTMLResponse:
        """A check: its metric chart with thresholds, incidents, alert, route, silences."""
        if not CHECK_NAME.fullmatch(name):
            raise HTTPException(status_code=404, detail="no such check")
        now = state.clock.now()
        span = PERIODS.get(period)
        if span is None:
            period, span = "24h", PERIODS["24h"]

        context = await asyncio.to_thread(_check_context, state, name, metric, span, now)
        if context is None:
            return render("missing.html", status_code=404, page="", what=f"check {name}")
        return render(
            "check.html",
            page="check",
            period=period,
            periods=list(PERIODS),
            check_chart=context.pop("chart"),
            **context,
        )


def _alert_pages(router: APIRouter, dashboard: _Dashboard) -> None:
    """Add the alerts pages and the silence preview."""

    state = dashboard.state
    render = dashboard.render
    read = [needs(Scope.READ)]

    @router.get("/alerts", dependencies=read)
    async def alerts_page(
        matchers: Annotated[str | None, Query(max_length=2000)] = None,
    ) -> HTMLResponse:
        """Open alerts (ack, silence), silences with a preview of new matchers, incidents."""
        now = state.clock.now()
        typed, problems = _matchers(matchers or "")

        def build() -> dict[str, Any]:
            from upkeep.alerting.stats import load_incidents

            open_alerts = state.store.alerts.list_alerts(open_only=True, limit=1000)
            preview = (
                routing.silence_preview(typed, open_alerts, state.loaded.checks.values())
                if typed
                else None
            )
            incidents = load_incidents(state.store.engine, now - timedelta(days=7), now)
            incidents.reverse()
            return {
                "open_alerts": open_alerts,
                "silences": state.store.alerts.silences(now=now),
                "preview": preview,
                "incidents": incidents[:100],
            }

        context = await asyncio.to_thread(build)
        return render(
            "alerts.html",
            page="alerts",
            matchers=matchers or "",
            problems=problems,
            **context,
        )

    @router.get("/ui/silence-preview", dependencies=read)
    async def silence_preview(
        matchers: Annotated[str, Query(max_length=2000)] = "",
    ) -> HTMLResponse:
        """The preview fragment of the silence form: what the matchers select now."""
        typed, problems = _matchers(matchers)

        def build() -> routing.SilencePreview | None:
            if not typed:
                return None
            open_alerts = state.store.alerts.list_alerts(open_only=True, limit=1000)
            return routing.silence_preview(typed, open_alerts, state.loaded.checks.values())

        preview = await asyncio.to_thread(build)
        return render("preview.html", preview=preview, problems=problems, matchers=matchers)

    @router.get("/alerts/{alert_id}", dependencies=read)
    async def alert_page(alert_id: RecordId) -> HTMLResponse:
        """One alert: its state, acknowledgement, timeline, the runbooks its firing
        started (or why not), notifications; ack and note."""

        def build() -> dict[str, Any] | None:
            record = state.store.alerts.get(alert_id)
            if record is None:
                return None
            return {
                "alert": record,
                "events": state.store.alerts.events(alert_id),
                "deliveries": state.store.outbox.for_alert(alert_id),
                "remediations": state.store.remediations.for_alert(alert_id),
            }

        context = await asyncio.to_thread(build)
        if context is None:
            return render("missing.html", status_code=404, page="", what=f"alert {alert_id}")
        return render("alert.html", page="alerts", **context)


def _operation_pages(router: APIRouter, dashboard: _Dashboard) -> None:
    """Add runs, runbooks, backups and the outbox."""
    from upkeep.reports import views

    state = dashboard.state
    render = dashboard.render
    read = [needs(Scope.READ)]

    @router.get("/runs", dependencies=read)
    async def runs_page() -> HTMLResponse:
        """Recent runs; those waiting for approval first, with approve and reject."""

        def build() -> dict[str, Any]:
            from upkeep.store.runs import RunStatus

            waiting = [
                record
                for summary in state.store.runs.list_runs(statuses=[RunStatus.WAITING], limit=100)
                if (record := state.store.runs.get_run(summary.id)) is not None
            ]
            return {"waiting": waiting, "runs": state.store.runs.list_runs(limit=200)}

        return render("runs.html", page="runs", **await asyncio.to_thread(build))

    @router.get("/runs/{run_id}", dependencies=read)
    async def run_page(run_id: RecordId) -> HTMLResponse:
        """One run: its steps with live progress and output, approve or reject a waiting
        step."""
        record = await asyncio.to_thread(state.store.runs.get_run, run_id)
        if record is None:
            return render("missing.html", status_code=404, page="", what=f"run {run_id}")
        return render("run.html", page="runs", run=record)

    @router.get("/runbooks", dependencies=read)
    async def runbooks_page() -> HTMLResponse:
        """Every runbook: schedule, next firings, last run; dry run, then run now."""
        now = state.clock.now()

        def build() -> dict[str, Any]:
            firings = views.next_firings(state.loaded, state.store, now)
            last = {}
            for name in state.loaded.config.runbooks:
                found = state.store.runs.list_runs(runbook=name, limit=1)
                last[name] = found[0] if found else None
            return {"firings": firings, "last": last}

        context = await asyncio.to_thread(build)
        return render(
            "runbooks.html", page="runbooks", runbooks=state.loaded.config.runbooks, **context
        )

    @router.get("/backups", dependencies=read)
    async def backups_page() -> HTMLResponse:
        """Backup sources: newest backup, verification, last drill against RTO/RPO; windows."""
        now = state.clock.now()

        def build() -> dict[str, Any]:
            from upkeep.alerting.windows import WindowCalendar

            calendar = WindowCalendar(
                state.loaded.config, state.store.runs.list_windows(ending_after=now)
            )
            return {
                "sources": views.backup_sources(state.loaded, state.store),
                "windows": calendar.entries(now),
            }

        return render("backups.html", page="backups", **await asyncio.to_thread(build))

    @router.get("/outbox", dependencies=read)
    async def outbox_page() -> HTMLResponse:
        """The outbox: counts per status, pending and dead notifications with reasons."""

        def build() -> dict[str, Any]:
            from upkeep.store.outbox import OutboxStatus

            return {
                "counts": state.store.outbox.counts(),
                "pending": state.store.outbox.list_rows(status=OutboxStatus.PENDING, limit=200),
                "sending": state.store.outbox.list_rows(status=OutboxStatus.SENDING, limit=50),
                "dead": state.store.outbox.list_rows(status=OutboxStatus.DEAD, limit=200),
            }

        return render("outbox.html", page="outbox", **await asyncio.to_thread(build))


def _run_json(record: Any, state: DaemonState) -> dict[str, Any]:
    """Given a run, return its status and steps for the live endpoint, texts masked."""
    redact = state.loaded.redactor.redact
    return {
        "id": record.id,
        "status": str(record.status),
        "message": redact(record.message),
        "finished": record.finished_at is not None,
        "steps": [
            {
                "number": step.position + 1,
                "phase": step.phase,
                "status": str(step.status),
                "attempts": step.attempts,
                "output": redact(step.output),
                "decision": str(step.decision) if step.decision else None,
                "decided_by": step.decided_by,
            }
            for step in record.steps
        ],
    }


def _check_context(
    state: DaemonState, name: str, metric: str | None, span: timedelta, now: datetime
) -> dict[str, Any] | None:
    """Given the state, a check's name, the metric asked for, the chart's period and the
    time, return what the check's page shows; None if no such check is configured or
    stored."""
    from upkeep.alerting.routing import AlertFacts, matching_routes, route_ids
    from upkeep.alerting.stats import load_incidents
    from upkeep.reports import views
    from upkeep.reports.charts import metric_chart

    engine = state.store.engine
    compiled = state.loaded.checks.get(name)
    registered = views.stored_checks(engine).get(name)
    if compiled is None and registered is None:
        return None
    recent = state.store.history(name, limit=200)
    metrics = views.known_metrics(compiled, (result.metrics for result in recent))
    chosen = metric if metric in metrics else views.default_metric(compiled, recent)
    times, values = views.metric_series(state.store, name, chosen, now - span, now)
    lines = views.thresholds(compiled, chosen)
    chart = metric_chart(times, values, title=f"{name}: {chosen}", thresholds=lines)
    incidents = [
        incident
        for incident in load_incidents(engine, now - timedelta(days=30), now)
        if incident.check == name
    ]
    incidents.reverse()
    open_alert = next(
        (
            record
            for record in state.store.alerts.list_alerts(open_only=True, limit=1000)
            if record.check == name
        ),
        None,
    )
    routes = state.loaded.config.routes
    facts = (
        AlertFacts(
            name,
            compiled.target_name,
            compiled.severity,
            open_alert.status.label if open_alert else "",
            compiled.labels,
        )
        if compiled is not None
        else None
    )
    ids = route_ids(routes)
    matched = (
        [
            {"id": ids[index], "notify": list(routes[index].notify)}
            for index in matching_routes(routes, facts)
        ]
        if facts is not None
        else []
    )
    silences = views.silences_covering(compiled, name, state.store.alerts.silences(now=now), now)
    latest = recent[0] if recent else None
    _, cursor = views.results_after(engine, 0, state.loaded.redactor)
    return {
        "cursor": cursor,
        "name": name,
        "compiled": compiled,
        "registered": registered,
        "latest": latest,
        "latest_message": state.loaded.redactor.redact(latest.message) if latest else "",
        "metrics": metrics,
        "metric": chosen,
        "thresholds": lines,
        "chart": chart,
        "points": len(times),
        "incidents": incidents,
        "open_alert": open_alert,
        "routes": matched,
        "silences": silences,
        "since": views.status_since(engine).get(name),
        "recent": recent[:20],
    }
