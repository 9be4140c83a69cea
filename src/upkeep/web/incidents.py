"""The incidents API (``upkeep incidents``, with its ``show`` and ``note``) and reliability
figures (``upkeep stats``), read through the same ``upkeep.alerting.stats`` functions."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import AfterValidator, Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import Acker, ApiBody, Comment, RecordId, invalid, needs
from upkeep.web.models import Answer, DeliveryModel, EventModel
from upkeep.web.queries import Filters, Since, label_filters, period_start

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)


class Incident(Answer):
    """An incident (a fired alert) as `upkeep incidents --json` shows it."""

    id: int
    check: str
    target: str
    severity: str
    state: str
    labels: dict[str, str]
    message: str
    opened_at: str | None
    fired_at: str | None
    resolved_at: str | None
    duration_s: float
    ongoing: bool
    first_acked_at: str | None
    acked_by: str | None


class IncidentDetail(Incident):
    """An incident with its timeline and the notifications sent for it."""

    timeline: list[EventModel]
    notifications: list[DeliveryModel]


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("the note is empty")
    return text


class NoteRequest(ApiBody):
    """A note for an incident's timeline."""

    text: Annotated[Comment, AfterValidator(_not_blank)] = Field(
        description="what to note (not empty)"
    )


class NoteAdded(Answer):
    """The note recorded."""

    incident: int
    author: str
    at: str


class Figures(Answer):
    """One check's or target's figures over the period (seconds, percentages, counts)."""

    scope: str
    name: str
    observed_s: float
    downtime_s: float
    uptime_percent: float | None
    incidents: int
    outages: int
    open_incidents: int
    mttr_s: float | None
    mtbf_s: float | None
    mtta_s: float | None
    acked: int
    unacked: int
    response_met: int
    response_missed: int
    response_target_met_percent: float | None


class Stats(Answer):
    """`upkeep stats --json`'s document."""

    since: str
    until: str
    checks: list[Figures]
    targets: list[Figures]


def incident_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the incidents and stats API routes."""
    router = APIRouter()

    @router.get(
        "/api/incidents",
        responses=READ_REFUSALS,
        response_description="incidents overlapping the period, newest first",
        dependencies=[needs(Scope.READ)],
    )
    async def list_incidents(
        since: Since = "7d",
        label: Filters = [],  # noqa: B006 - FastAPI copies a query default
        open_only: Annotated[
            bool, Query(alias="open", description="only unresolved incidents")
        ] = False,
    ) -> list[Incident]:
        """List incidents as `upkeep incidents --json`: fired alerts overlapping
        `since`..now, filtered by labels."""
        from zoneinfo import ZoneInfo

        from upkeep.alerting.stats import incident_to_json, load_incidents

        now = datetime.now(UTC)
        start = period_start(since, ZoneInfo(state.loaded.config.timezone), now)
        labels = label_filters(label)
        if start >= now:
            return []
        found = await asyncio.to_thread(
            load_incidents, state.store.engine, start, now, labels, open_only=open_only
        )
        found.reverse()
        return [Incident.model_validate(incident_to_json(incident, now)) for incident in found]

    @router.get(
        "/api/incidents/{incident_id}",
        responses={**READ_REFUSALS, 404: {"description": "no incident with this id"}},
        response_description="the incident with its timeline and notifications",
        dependencies=[needs(Scope.READ)],
    )
    async def show_incident(incident_id: RecordId) -> IncidentDetail:
        """Show one incident as `upkeep incidents show --json`."""
        from upkeep.alerting.stats import incident_to_json, load_incident

        def read() -> IncidentDetail | None:
            incident = load_incident(state.store.engine, incident_id)
            if incident is None:
                return None
            return IncidentDetail.model_validate(
                {
                    **incident_to_json(incident, datetime.now(UTC)),
                    "timeline": [e.to_json() for e in state.store.alerts.events(incident_id)],
                    "notifications": [
                        row.delivery_json() for row in state.store.outbox.for_alert(incident_id)
                    ],
                }
            )

        found = await asyncio.to_thread(read)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
        return found

    @router.post(
        "/api/incidents/{incident_id}/notes",
        status_code=201,
        responses={**CHANGE_REFUSALS, 404: {"description": "no incident (or alert) with this id"}},
        response_description="the note recorded in the timeline",
    )
    async def add_note(incident_id: RecordId, body: NoteRequest, who: Acker) -> NoteAdded:
        """Add a note to an incident's timeline, as `upkeep incidents note` (by the caller)."""
        at = datetime.now(UTC)
        added = await asyncio.to_thread(
            state.store.alerts.add_note, incident_id, body.text, who.actor, at
        )
        if not added:
            raise HTTPException(status_code=404, detail=f"no incident {incident_id}")
        return NoteAdded(incident=incident_id, author=who.actor, at=at.isoformat())

    @router.get(
        "/api/stats",
        responses={
            **READ_REFUSALS,
            422: {"description": "a bad `since` or label, or one not in the past"},
        },
        response_description="`upkeep stats --json`'s document",
        dependencies=[needs(Scope.READ)],
    )
    async def stats(
        since: Since = "30d",
        label: Filters = [],  # noqa: B006 - FastAPI copies a query default
    ) -> Stats:
        """Uptime, incidents, MTTR, MTBF, MTTA and response targets met per check and per
        target over `since`..now: exactly `upkeep stats --json` (`alerting.stats.period_stats`)."""
        from zoneinfo import ZoneInfo

        from upkeep.alerting.stats import period_stats, stats_document

        now = datetime.now(UTC)
        start = period_start(since, ZoneInfo(state.loaded.config.timezone), now)
        labels = label_filters(label)
        if start >= now:
            raise invalid(("query", "since"), "since must be in the past")
        targets = {
            str(severity): target
            for severity, target in state.loaded.config.alerting.response_targets.items()
        }
        figures = await asyncio.to_thread(
            period_stats, state.store.engine, start, now, labels, targets
        )
        return Stats.model_validate(stats_document(start, now, figures))

    return router
