"""The alerts API: alerts with their timelines, acknowledgement, and silences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import (
    Acker,
    ApiBody,
    Comment,
    RecordId,
    Word,
    api_duration,
    invalid,
    needs,
)
from upkeep.web.models import (
    AlertDetail,
    AlertModel,
    Removed,
    SilenceAdded,
    SilenceModel,
)

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

MAX_MATCHERS = 32
"""A silence matches on at most this many fields."""


class Acknowledgement(ApiBody):
    """The body of an acknowledge request: for how long (until resolved if absent), why."""

    comment: Comment = ""
    for_: str | None = Field(
        default=None,
        alias="for",
        max_length=40,
        description="a duration such as 30m, 2h or 7d (at most 1y): escalation starts again "
        "when it lapses; absent: until the alert resolves",
    )


class SilenceRequest(ApiBody):
    """The body of a request adding a silence: what it matches, for how long, why."""

    matchers: dict[Word, Word] = Field(
        min_length=1,
        max_length=MAX_MATCHERS,
        description="what it mutes, every pair must match: `check`, `target`, `severity`, "
        "`status` or a label name, each with a shell-style pattern such as `db-*`",
    )
    for_: str = Field(
        alias="for",
        max_length=40,
        description="how long it mutes from now: a duration such as 30m, 2h or 7d (at most 1y)",
    )
    comment: Comment = ""


def alert_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the alerts API routes (the guard has admitted every
    request that reaches them; ``actor`` names its token)."""
    router = APIRouter()

    @router.get(
        "/api/alerts",
        responses=READ_REFUSALS,
        response_description="alerts, newest first",
        response_model=list[AlertModel],
        dependencies=[needs(Scope.READ)],
    )
    async def list_alerts(
        include_resolved: Annotated[
            bool, Query(alias="all", description="resolved alerts too, not only open ones")
        ] = False,
        limit: Annotated[int, Query(description="at most this many (1 to 1000)")] = 200,
    ) -> list[dict[str, Any]]:
        """List alerts: check, target, severity, state, since when, acknowledgement."""
        records = await asyncio.to_thread(
            state.store.alerts.list_alerts,
            open_only=not include_resolved,
            limit=max(1, min(limit, 1000)),
        )
        return [record.to_json() for record in records]

    @router.get(
        "/api/alerts/{alert_id}",
        responses={**READ_REFUSALS, 404: {"description": "no alert with this id"}},
        response_description="the alert with its timeline and notifications",
        response_model=AlertDetail,
        dependencies=[needs(Scope.READ)],
    )
    async def show_alert(alert_id: RecordId) -> dict[str, Any]:
        """Show one alert with its timeline (opened, notified, escalated, acknowledged,
        notes, resolved) and the notifications sent for it."""
        record = await asyncio.to_thread(state.store.alerts.get, alert_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no alert {alert_id}")
        events = await asyncio.to_thread(state.store.alerts.events, alert_id)
        deliveries = await asyncio.to_thread(state.store.outbox.for_alert, alert_id)
        return {
            **record.to_json(),
            "timeline": [event.to_json() for event in events],
            "notifications": [row.delivery_json() for row in deliveries],
        }

    @router.post(
        "/api/alerts/{alert_id}/ack",
        responses={
            **CHANGE_REFUSALS,
            409: {"description": "no such alert, or it is already resolved"},
        },
        response_description="the acknowledged alert",
        response_model=AlertModel,
    )
    async def acknowledge(
        alert_id: RecordId, who: Acker, body: Acknowledgement | None = None
    ) -> dict[str, Any]:
        """Acknowledge an alert: escalation stops (until `for` lapses), recorded as made by
        the token's name. The body may be left out."""
        from upkeep.alerting.manager import AlertManager
        from upkeep.store.alerts import AlertError

        request = body or Acknowledgement()
        duration = api_duration(request.for_, "for") if request.for_ is not None else None
        manager = AlertManager(state.loaded, state.store, clock=state.clock)
        try:
            record = await asyncio.to_thread(
                lambda: manager.acknowledge(
                    alert_id, author=who.actor, duration=duration, comment=request.comment
                )
            )
        except AlertError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        return record.to_json()

    @router.get(
        "/api/silences",
        responses=READ_REFUSALS,
        response_description="silences, each with whether it mutes now",
        response_model=list[SilenceModel],
        dependencies=[needs(Scope.READ)],
    )
    async def list_silences() -> list[dict[str, Any]]:
        """List the silences added at run time."""
        found = await asyncio.to_thread(state.store.alerts.silences)
        now = datetime.now(UTC)
        return [silence.to_json(now) for silence in found]

    @router.post(
        "/api/silences",
        status_code=201,
        responses=CHANGE_REFUSALS,
        response_description="the new silence's `id` and `ends_at`",
        response_model=SilenceAdded,
    )
    async def add_silence(body: SilenceRequest, who: Acker) -> dict[str, Any]:
        """Add a silence: alerts matching every matcher are muted from now for `for`; what
        was muted is recorded, and an alert still firing when it ends is notified then."""
        from upkeep.store.alerts import AlertError

        length = api_duration(body.for_, "for")
        now = datetime.now(UTC)
        try:
            silence = await asyncio.to_thread(
                lambda: state.store.alerts.add_silence(
                    body.matchers,
                    starts_at=now,
                    ends_at=now + length,
                    author=who.actor,
                    comment=body.comment,
                )
            )
        except AlertError as error:
            raise invalid(("body", "matchers"), str(error)) from None
        return {"id": silence.id, "ends_at": silence.ends_at.isoformat()}

    @router.delete(
        "/api/silences/{silence_id}",
        responses={**CHANGE_REFUSALS, 404: {"description": "no active silence with this id"}},
        response_description="`id` and `removed: true`",
        response_model=Removed,
    )
    async def remove_silence(silence_id: RecordId, who: Acker) -> dict[str, Any]:
        """Remove an active silence (recorded as removed by the token's name)."""
        removed = await asyncio.to_thread(
            lambda: state.store.alerts.remove_silence(silence_id, by=who.actor)
        )
        if not removed:
            raise HTTPException(status_code=404, detail=f"no active silence {silence_id}")
        return {"id": silence_id, "removed": True}

    return router
