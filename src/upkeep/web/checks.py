"""The checks API: configured checks with their latest status, their history, running
them now through the daemon's pipeline, and which alerts and checks matchers select."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import ApiBody, Runner, Word, invalid, needs
from upkeep.web.models import AlertModel, Answer
from upkeep.web.queries import CheckName, Since, label_filters, period_start

if TYPE_CHECKING:
    from upkeep.config.loader import CompiledCheck
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)

MAX_NAMES = 1000
"""A run-now request names at most this many checks."""


class CheckSummary(Answer):
    """A configured check and what it last said."""

    name: str
    target: str
    probe: str = Field(description="`kind.probe`, e.g. `postgres.connections`")
    severity: str
    labels: dict[str, str]
    enabled: bool
    every_s: float = Field(description="how often the daemon runs it, in seconds")
    status: str | None = Field(description="its latest status; null before its first result")
    since: str | None = Field(
        description="since when it has been failing (ISO 8601); null while ok or unknown"
    )
    last_at: str | None = Field(description="when its latest result came (ISO 8601)")
    message: str | None = Field(description="its latest result's message")


class StoredResultModel(Answer):
    """A check result (``upkeep check --json`` / ``upkeep history --json``)."""

    check: str
    target: str
    status: str
    metrics: dict[str, Any]
    message: str
    duration_ms: float
    at: str


class History(Answer):
    """Stored results, newest first (``upkeep history --json``)."""

    results: list[StoredResultModel]


class CheckRunRequest(ApiBody):
    """Which checks to run now: by name, or every enabled one carrying the labels."""

    names: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None,
        max_length=MAX_NAMES,
        description="the checks to run (disabled ones too); null or absent: every enabled one",
    )
    labels: dict[Word, Word] = Field(
        default_factory=dict,
        max_length=32,
        description="only checks carrying every one of these labels",
    )


class CheckRunAnswer(Answer):
    """The results of a run now (``upkeep check --json``), and what went wrong recording them."""

    results: list[StoredResultModel]
    worst: str
    problems: list[str] = Field(
        description="what went wrong storing or alerting (the store failed, the spill took "
        "the results); empty when all is well"
    )


class SilencePreview(Answer):
    """What a silence with these matchers would mute now."""

    matchers: dict[str, str]
    alerts: list[AlertModel] = Field(description="open alerts it matches")
    checks: list[str] = Field(
        description="configured checks whose alerts it would match (by check, target, "
        "severity and labels; a `status` matcher is judged on `critical`)"
    )


def _summaries(state: DaemonState) -> list[CheckSummary]:
    from upkeep.core.status import Status

    loaded = state.loaded
    store = state.store
    names = sorted(loaded.checks)
    with store.engine.connect() as connection:
        states = store.alerts.states(connection, names)
    latest = store.latest()
    found: list[CheckSummary] = []
    for name in names:
        check = loaded.checks[name]
        last = latest.get(name)
        remembered = states.get(name)
        status = last.status if last else None
        failing = status is not None and status not in (Status.OK, Status.UNKNOWN)
        since = remembered.bad_since if remembered is not None and failing else None
        found.append(
            CheckSummary(
                name=name,
                target=check.target_name,
                probe=check.probe_name,
                severity=check.severity,
                labels=dict(check.labels),
                enabled=check.enabled,
                every_s=check.every.total_seconds(),
                status=status.label if status is not None else None,
                since=since.isoformat() if since is not None else None,
                last_at=last.at.isoformat() if last else None,
                message=loaded.redactor.redact(last.message) if last else None,
            )
        )
    return found


def preview_silence(
    state: DaemonState, matchers: dict[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Given matchers, return the open alerts they select now (as JSON) and the configured
    checks whose alerts they would select: ``alerting.routing.silence_preview``, the answer
    ``upkeep silence add`` and the dashboard show."""
    from upkeep.alerting.routing import silence_preview

    preview = silence_preview(
        matchers,
        state.store.alerts.list_alerts(open_only=True, limit=1000),
        state.loaded.checks.values(),
    )
    return [record.to_json() for record in preview.alerts], preview.checks


def check_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the checks API routes."""
    router = APIRouter()

    @router.get(
        "/api/checks",
        responses=READ_REFUSALS,
        response_description="every configured check with its latest status",
        dependencies=[needs(Scope.READ)],
    )
    async def list_checks() -> list[CheckSummary]:
        """List the configured checks: target, probe, labels, cadence, and the latest
        status with its message and since when it has been failing."""
        return await asyncio.to_thread(_summaries, state)

    @router.get(
        "/api/checks/{name}/history",
        responses={**READ_REFUSALS, 404: {"description": "no check of this name"}},
        response_description="results, newest first (`upkeep history --json`)",
        dependencies=[needs(Scope.READ)],
    )
    async def check_history(
        name: CheckName,
        since: Since = "24h",
        limit: Annotated[int, Query(ge=1, le=10000, description="at most this many")] = 1000,
    ) -> History:
        """A check's stored results since a time, as `upkeep history NAME --json`."""
        from zoneinfo import ZoneInfo

        loaded = state.loaded
        start = period_start(since, ZoneInfo(loaded.config.timezone), datetime.now(UTC))

        def read() -> History | None:
            if name not in loaded.checks and name not in state.store.known_checks():
                return None
            rows = state.store.history(name, since=start, limit=limit)
            return History.model_validate({"results": [row.to_json() for row in rows]})

        found = await asyncio.to_thread(read)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no check named {name!r}")
        return found

    run_responses: dict[int | str, dict[str, Any]] = {
        **CHANGE_REFUSALS,
        404: {"description": "a named check is not configured"},
        409: {"description": "no check matches the labels"},
        503: {"description": "no daemon runs checks here (the app serves without one)"},
    }

    async def run(selected: list[CompiledCheck], actor: str) -> CheckRunAnswer:
        from upkeep.core.status import worst

        runner = state.run_checks_now
        if runner is None:
            raise HTTPException(
                status_code=503, detail="checks cannot be run here: no daemon owns a pipeline"
            )
        # A result is no one's change; who asked for it is in the daemon's log.
        logger.info("%s runs checks now: %s", actor, ", ".join(check.name for check in selected))
        results, problems = await runner(selected)
        return CheckRunAnswer(
            results=[StoredResultModel.model_validate(result.to_json()) for result in results],
            worst=worst([result.status for result in results]).label,
            problems=problems,
        )

    @router.post(
        "/api/checks/run",
        responses=run_responses,
        response_description="the results (`upkeep check --json`), recorded and alerted on",
    )
    async def run_checks(who: Runner, body: CheckRunRequest | None = None) -> CheckRunAnswer:
        """Run checks now, as `upkeep check`: the results are stored and alerting sees
        them, as if the schedule had run them. The body may be left out (every enabled
        check)."""
        from upkeep.engine.runner import select_checks

        request = body or CheckRunRequest()
        try:
            selected = select_checks(
                state.loaded.checks.values(), request.names or (), request.labels
            )
        except KeyError:
            raise HTTPException(status_code=404, detail="a named check is not configured") from None
        if not selected:
            raise HTTPException(status_code=409, detail="no checks match")
        return await run(selected, who.actor)

    @router.post(
        "/api/checks/{name}/run",
        responses=run_responses,
        response_description="its result (`upkeep check NAME --json`), recorded and alerted on",
    )
    async def run_check(name: CheckName, who: Runner) -> CheckRunAnswer:
        """Run one check now (even a disabled one), as `upkeep check NAME`."""
        check = state.loaded.checks.get(name)
        if check is None:
            raise HTTPException(status_code=404, detail=f"no check named {name!r}")
        return await run([check], who.actor)

    @router.get(
        "/api/silences/preview",
        responses=READ_REFUSALS,
        response_description="the open alerts and configured checks the matchers select",
        dependencies=[needs(Scope.READ)],
    )
    async def silence_preview(
        matcher: Annotated[
            list[str],
            Query(
                description="`k=pattern`, repeatable (as a silence's matchers: `check`, "
                "`target`, `severity`, `status` or a label, shell-style patterns)"
            ),
        ],
    ) -> SilencePreview:
        """What a silence with these matchers would mute now, before adding it."""
        matchers = label_filters(matcher, "matcher")
        if not matchers:
            raise invalid(("query", "matcher"), "at least one matcher is needed")
        alerts, checks = await asyncio.to_thread(preview_silence, state, matchers)
        return SilencePreview.model_validate(
            {"matchers": matchers, "alerts": alerts, "checks": checks}
        )

    return router
