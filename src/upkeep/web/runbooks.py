"""The runbooks API: runbooks with their next firings, and starting a run (or a dry run)
in the daemon that leads."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import ApiBody, Runner, needs
from upkeep.web.models import Answer
from upkeep.web.queries import RunbookPathName

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState


class RunbookSummary(Answer):
    """A configured runbook (``upkeep runbooks --json``) with its next firings."""

    runbook: str
    description: str
    schedule: str | None
    timezone: str
    window: str | None
    steps: list[str] = Field(description="each step's kind, in order")
    next: str | None = Field(description="its next firing (ISO 8601); null if unscheduled")
    firings: list[str] = Field(description="its next firings (ISO 8601), `count` at most")
    on_alert: dict[str, Any] | None = Field(
        default=None,
        description="the alerts that start it and its guard rails, as `on_alert:` writes "
        "them; null if no alert does",
    )


class RunRequest(ApiBody):
    """How to run a runbook now."""

    dry_run: bool = Field(
        default=False, description="record the plan only, as `upkeep run --dry-run`"
    )
    force: bool = Field(default=False, description="run even though the runbook's window is closed")


class RunStarted(Answer):
    """A run the daemon started; follow it at `GET /api/runs/{run_id}`."""

    run_id: int
    runbook: str
    dry_run: bool
    triggered_by: str


class RunRefused(Exception):  # noqa: N818 - reads as the refusal it is
    """The daemon would not start a run: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _summaries(state: DaemonState, count: int) -> list[RunbookSummary]:
    from zoneinfo import ZoneInfo

    from upkeep.config.schedule import CronSchedule
    from upkeep.engine.runbooks import runbook_summaries

    config = state.loaded.config
    now = datetime.now(UTC)
    found: list[RunbookSummary] = []
    for row in runbook_summaries(config, now):
        firings: list[str] = []
        schedule = row["schedule"]
        if schedule is not None:
            cron = CronSchedule(schedule, ZoneInfo(row["timezone"]))
            moment = now
            for _ in range(count):
                moment = cron.next_after(moment)
                firings.append(moment.isoformat())
        found.append(RunbookSummary.model_validate({**row, "firings": firings}))
    return found


def _window_refusal(state: DaemonState, name: str) -> str | None:
    """Return why a real run of runbook ``name`` may not start now (its window is
    closed), or None if it may."""
    from upkeep.alerting.windows import WindowCalendar

    loaded = state.loaded
    runbook = loaded.config.runbooks[name]
    if runbook.window is None:
        return None
    now = datetime.now(UTC)
    calendar = WindowCalendar(loaded.config, state.store.runs.list_windows(ending_after=now))
    if calendar.is_open(runbook.window, now):
        return None
    opening = calendar.next_opening(runbook.window, now)
    when = opening.start.isoformat() if opening else "never"
    return (
        f"runbook {name} runs only inside window {runbook.window}, which is closed; it next "
        f"opens {when}. Send force: true to run it now anyway"
    )


def runbook_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the runbooks API routes."""
    router = APIRouter()

    @router.get(
        "/api/runbooks",
        responses=READ_REFUSALS,
        response_description="every runbook with its schedule, window, steps and next firings",
        dependencies=[needs(Scope.READ)],
    )
    async def list_runbooks(
        count: Annotated[
            int, Query(ge=1, le=50, description="how many next firings to list per runbook")
        ] = 5,
    ) -> list[RunbookSummary]:
        """List the runbooks as `upkeep runbooks --json` does, with their next firings
        (`upkeep schedule`)."""
        return await asyncio.to_thread(_summaries, state, count)

    @router.post(
        "/api/runbooks/{name}/run",
        status_code=202,
        responses={
            **CHANGE_REFUSALS,
            404: {"description": "no runbook of this name"},
            409: {
                "description": "its window is closed (send `force`), or a run of it is "
                "already going"
            },
            503: {
                "description": "this daemon does not lead (a standby runs nothing), or no "
                "daemon runs here"
            },
        },
        response_description="the run started: follow it at `GET /api/runs/{run_id}`",
    )
    async def run_runbook(
        name: RunbookPathName, who: Runner, body: RunRequest | None = None
    ) -> RunStarted:
        """Run a runbook now in the leading daemon, as `upkeep run` (recorded as triggered
        by the caller); a dry run records the runbook's plan only. The body may be left
        out (a real run). Approval steps wait for `POST /api/runs/{id}/approve`."""
        request = body or RunRequest()
        if name not in state.loaded.config.runbooks:
            raise HTTPException(status_code=404, detail=f"no runbook named {name!r}")
        start = state.start_runbook
        if start is None:
            raise HTTPException(
                status_code=503,
                detail=f"this daemon is {state.role}: only the leading daemon runs runbooks",
            )
        if not request.dry_run and not request.force:
            refusal = await asyncio.to_thread(_window_refusal, state, name)
            if refusal is not None:
                raise HTTPException(status_code=409, detail=refusal)
        try:
            run_id = await start(name, request.dry_run, who.actor)
        except RunRefused as refused:
            raise HTTPException(status_code=refused.status, detail=str(refused)) from None
        return RunStarted(
            run_id=run_id, runbook=name, dry_run=request.dry_run, triggered_by=who.actor
        )

    return router
