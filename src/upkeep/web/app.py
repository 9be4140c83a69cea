"""The daemon's HTTP application: ``/healthz``, ``/metrics``, the runs and alerts API,
signing in (``/login``) and the accounts API.

Served by uvicorn inside the daemon's event loop on ``engine.listen`` (loopback by
default; see ``upkeep.web.server``). ``/healthz`` and ``/metrics`` answer anyone; every
other request, reading or changing, passes ``upkeep.web.guard.ApiGuard`` first: an API
token or a signed-in user's session, a Host of this server, JSON from the same origin
(and a session's CSRF token) for changes, a capped body. A change is recorded as made by
the token's or user's name (``api:<name>``, ``user:<name>``).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from upkeep.core.access import Scope
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.web.alerts import alert_router
from upkeep.web.backups import backup_router
from upkeep.web.checks import check_router
from upkeep.web.docs_ui import declare_bearer, docs_router
from upkeep.web.guard import (
    CHANGE_REFUSALS,
    READ_REFUSALS,
    ApiGuard,
    GuardSettings,
)
from upkeep.web.incidents import incident_router
from upkeep.web.inputs import ApiBody, Approver, Comment, RecordId, RunbookName, needs
from upkeep.web.jobs import JobTable
from upkeep.web.models import RunModel
from upkeep.web.notify import notify_router
from upkeep.web.runbooks import runbook_router
from upkeep.web.windows import window_router

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from upkeep.alerting.guard import StoreHealth
    from upkeep.config.loader import CompiledCheck, LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.engine.metrics import DaemonMetrics
    from upkeep.engine.scheduler import SchedulerStats
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store


logger = logging.getLogger(__name__)


@dataclass
class DaemonState:
    """What the HTTP side reads from the daemon; the daemon updates it as things change."""

    instance_id: str
    loaded: LoadedConfig
    store: Store
    metrics: DaemonMetrics
    role: str = "standby"
    started_at: datetime = field(default_factory=SYSTEM_CLOCK.now)
    stats: SchedulerStats | None = None
    listen: str | None = None
    """The address served (``--listen`` or ``engine.listen``); its host is an allowed Host."""
    store_health: Callable[[], StoreHealth] | None = None
    """The store's health as the daemon's ``StoreGuard`` knows it (None: not guarded)."""
    clock: Clock = SYSTEM_CLOCK
    """The daemon's one clock: acknowledgements are stamped on the time its ticks read."""
    run_checks_now: (
        Callable[[Sequence[CompiledCheck]], Awaitable[tuple[list[CheckResult], list[str]]]] | None
    ) = None
    """Run checks now and record their results through the daemon's pipeline (stored,
    alerted on); return the results and what went wrong recording them. None: no daemon
    (the API answers 503)."""
    record_results: Callable[[Sequence[CheckResult]], Awaitable[list[str]]] | None = None
    """Record results made elsewhere (a drill's verdict) through the daemon's pipeline;
    return what went wrong. None: no daemon."""
    start_runbook: Callable[[str, bool, str], Awaitable[int]] | None = None
    """Start a run of a runbook (name, dry run, who) in the leading daemon and return its
    id once recorded; raise ``upkeep.web.runbooks.RunRefused`` if it may not start. None
    while this daemon does not lead."""
    jobs: JobTable = field(default_factory=JobTable)
    """The backups, verifications and drills the API started (``upkeep.web.jobs``)."""
    on_ping: Callable[[tuple[str, ...]], None] | None = None
    """Told the heartbeat targets a ping just came for (stored already), so the daemon
    runs their checks now (None: nobody to tell; they run at their interval)."""


class Decision(ApiBody):
    """The body of an approve or reject request."""

    comment: Comment = ""


def _guard_settings(state: DaemonState) -> Any:
    """Return a function giving the guard's settings for the config in force (a reload
    replaces ``state.loaded``; the settings follow it)."""
    cache: dict[str, tuple[object, GuardSettings]] = {}

    def settings() -> GuardSettings:
        loaded = state.loaded
        listen = state.listen or loaded.config.engine.listen
        found = cache.get(listen)
        if found is None or found[0] is not loaded:
            found = (loaded, GuardSettings.from_config(loaded.config, listen))
            cache.clear()
            cache[listen] = found
        return found[1]

    return settings


LOCATION_PART_CHARS = 64
"""A key a client sent is named in a 422 by at most this many characters of it."""


def _location(loc: Any) -> list[Any]:
    """Given where pydantic found a problem, return it with every key cut short: a key
    the client made up (an unknown field, a matcher) is input too, and may be huge."""
    return [
        f"{part[:LOCATION_PART_CHARS]}..."
        if isinstance(part, str) and len(part) > LOCATION_PART_CHARS
        else part
        for part in loc
    ]


async def _validation_failed(request: Request, error: Exception) -> Response:
    """Answer a request that does not validate with where and why, never with its input
    (which may be large, or a secret sent to the wrong field); keys are cut short."""
    problems = error.errors() if isinstance(error, RequestValidationError) else []
    detail = [
        {
            "loc": _location(problem.get("loc", ())),
            "msg": problem.get("msg"),
            "type": problem.get("type"),
        }
        for problem in problems
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


def run_to_json(record: RunRecord) -> dict[str, Any]:
    """Given a stored run, return its JSON shape (times as ISO 8601, steps included)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": record.id,
        "runbook": record.runbook,
        "trigger": record.trigger,
        "triggered_by": record.triggered_by,
        "alert_id": record.alert_id,
        "status": record.status,
        "dry_run": record.dry_run,
        "scheduled_for": iso(record.scheduled_for),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "duration_s": record.duration_s,
        "message": record.message,
        "steps": [
            {
                "position": step.position,
                # The number the text output and `upkeep approve --step` use (1-based).
                "number": step.position + 1,
                "name": step.name,
                "kind": step.kind,
                # main (the runbook's steps), rollback or finally.
                "phase": step.phase,
                "status": step.status,
                "started_at": iso(step.started_at),
                "finished_at": iso(step.finished_at),
                "attempts": step.attempts,
                "output": step.output,
                "detail": step.detail,
                "decision": step.decision,
                "decided_by": step.decided_by,
                "decided_at": iso(step.decided_at),
            }
            for step in record.steps
        ],
    }


async def health_answer(state: DaemonState) -> Response:
    """Given the daemon's state, return the ``/healthz`` answer.

    ``ok``; ``degraded`` (200, with the reasons) while the store fails but alerting works
    without it (the spill), or the store cannot be read; ``unhealthy`` (503) when alerting
    cannot work at all, or, for a daemon without a guard, when the store cannot be read.
    A degraded daemon answers 200 on purpose: a supervisor or load balancer that restarts
    on 503 would kill the one process still raising the alarm, and a restart mends no
    full or damaged disk. The store problem itself goes to the routes as ``upkeep:store``
    and to /metrics as ``upkeep_store_healthy 0``, where monitoring should look.
    """
    import orjson

    health = state.store_health() if state.store_health is not None else None
    problem: str | None = None
    try:
        await asyncio.to_thread(state.store.runs.list_instances)
    except Exception as error:  # noqa: BLE001 - any store failure is reported, never raised
        problem = state.loaded.redactor.redact(f"store unreachable: {type(error).__name__}")
    reasons = [*(health.reasons if health else []), *([problem] if problem else [])]
    if (health is None and problem is not None) or (health is not None and not health.alarm_ok):
        return Response(
            content=orjson.dumps(
                {"status": "unhealthy", "reason": "; ".join(reasons), "reasons": reasons}
            ),
            status_code=503,
            media_type="application/json",
        )
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ok",
        "role": state.role,
        "instance": state.instance_id,
        "started_at": state.started_at.isoformat(),
        "checks": sum(1 for check in state.loaded.checks.values() if check.enabled),
        "runbooks": len(state.loaded.config.runbooks),
    }
    if reasons:
        body["reasons"] = reasons
    if health is not None:
        body["store"] = health.to_json()
    return Response(content=orjson.dumps(body), media_type="application/json")


def _include_routers(
    app: FastAPI, state: DaemonState, guard_settings: Callable[[], GuardSettings]
) -> None:
    """Given the app, add every router of the HTTP face, then describe in the schema which
    operations need a bearer token (every one but the open paths and the pings)."""
    from upkeep.web.auth import auth_router
    from upkeep.web.pings import ping_router
    from upkeep.web.status.routes import status_router
    from upkeep.web.ui.routes import dashboard_router

    app.include_router(alert_router(state))
    app.include_router(auth_router(state, guard_settings))
    app.include_router(check_router(state))
    app.include_router(runbook_router(state))
    app.include_router(window_router(state))
    app.include_router(incident_router(state))
    app.include_router(backup_router(state))
    app.include_router(notify_router(state))
    app.include_router(docs_router())
    app.include_router(ping_router(state))
    app.include_router(dashboard_router(state))
    app.include_router(status_router(state))
    declare_bearer(app)


def create_app(state: DaemonState) -> FastAPI:
    """Given the daemon's state, return the FastAPI application serving it."""
    app = FastAPI(title="upkeep", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    guard_settings = _guard_settings(state)
    app.add_middleware(ApiGuard, settings=guard_settings, accounts=lambda: state.store.accounts)
    app.add_exception_handler(RequestValidationError, _validation_failed)

    @app.get(
        "/healthz",
        responses={503: {"description": "unhealthy: alerting cannot work, with the reasons"}},
        response_description="`ok`, or `degraded` with the reasons (the store fails, alerting "
        "works without it); role, instance, checks, runbooks",
    )
    async def healthz() -> Response:
        """The daemon's health, for a supervisor or load balancer (no token needed)."""
        return await health_answer(state)

    @app.get("/metrics", response_description="Prometheus text exposition format")
    async def metrics() -> Response:
        """Prometheus metrics: checks, runs, alerts, the store (no token needed)."""
        if state.stats is not None:
            state.metrics.update_from(state.stats)
        try:
            await asyncio.to_thread(state.metrics.update_alerting, state.store)
        except Exception:  # noqa: BLE001 - the other metrics still answer when the store does not
            logger.warning("could not read alert gauges from the store", exc_info=False)
        payload = await asyncio.to_thread(generate_latest, state.metrics.registry)
        return Response(content=payload, media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/api/runs",
        responses=READ_REFUSALS,
        response_description="runs, newest first",
        response_model=list[RunModel],
        dependencies=[needs(Scope.READ)],
    )
    async def list_runs(
        limit: Annotated[int, Query(description="at most this many (1 to 1000)")] = 50,
        runbook: Annotated[
            RunbookName | None, Query(description="only the runs of this runbook")
        ] = None,
    ) -> list[dict[str, Any]]:
        """List recorded runbook runs with their steps."""
        records = await asyncio.to_thread(
            state.store.runs.list_runs, runbook=runbook, limit=max(1, min(limit, 1000))
        )
        return [run_to_json(record) for record in records]

    @app.get(
        "/api/runs/{run_id}",
        responses={**READ_REFUSALS, 404: {"description": "no run with this id"}},
        response_description="the run: trigger, who, status, times, steps with output",
        response_model=RunModel,
        dependencies=[needs(Scope.READ)],
    )
    async def show_run(run_id: RecordId) -> dict[str, Any]:
        """Show one run and its steps."""
        record = await asyncio.to_thread(state.store.runs.get_run, run_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return run_to_json(record)

    from upkeep.store.runs import ApprovalDecision

    async def decide(
        run_id: int, decision: ApprovalDecision, body: Decision, by: str
    ) -> dict[str, Any]:
        try:
            await asyncio.to_thread(state.store.runs.decide, run_id, decision, by, body.comment)
        except LookupError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        record = await asyncio.to_thread(state.store.runs.get_run, run_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return run_to_json(record)

    decision_responses: dict[int | str, dict[str, Any]] = {
        **CHANGE_REFUSALS,
        409: {"description": "no such run, or it has no step waiting for approval"},
    }

    @app.post(
        "/api/runs/{run_id}/approve",
        responses=decision_responses,
        response_description="the run, which goes on",
        response_model=RunModel,
    )
    async def approve(
        run_id: RecordId, who: Approver, body: Decision | None = None
    ) -> dict[str, Any]:
        """Approve the approval step a run waits on (recorded as the token's name); the body
        may be left out."""
        return await decide(run_id, ApprovalDecision.APPROVED, body or Decision(), who.actor)

    @app.post(
        "/api/runs/{run_id}/reject",
        responses=decision_responses,
        response_description="the run, which stops",
        response_model=RunModel,
    )
    async def reject(
        run_id: RecordId, who: Approver, body: Decision | None = None
    ) -> dict[str, Any]:
        """Reject the approval step a run waits on: the run stops; the body may be left out."""
        return await decide(run_id, ApprovalDecision.REJECTED, body or Decision(), who.actor)

    _include_routers(app, state, guard_settings)
    return app
