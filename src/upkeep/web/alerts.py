"""The alerts API: alerts with their timelines, acknowledgement, and silences."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.web.inputs import Actor, ApiBody, Comment, RecordId, Word, api_duration

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

MAX_MATCHERS = 32
"""A silence matches on at most this many fields."""


class Acknowledgement(ApiBody):
    """The body of an acknowledge request: for how long (until resolved if absent), why."""

    comment: Comment = ""
    for_: str | None = Field(default=None, alias="for", max_length=40)


class SilenceRequest(ApiBody):
    """The body of a request adding a silence: what it matches, for how long, why."""

    matchers: dict[Word, Word] = Field(min_length=1, max_length=MAX_MATCHERS)
    for_: str = Field(alias="for", max_length=40)
    comment: Comment = ""


def alert_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the alerts API routes (the guard has admitted every
    request that reaches them; ``actor`` names its token)."""
    router = APIRouter()

    @router.get("/api/alerts")
    async def list_alerts(
        include_resolved: Annotated[bool, Query(alias="all")] = False, limit: int = 200
    ) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(
            state.store.alerts.list_alerts,
            open_only=not include_resolved,
            limit=max(1, min(limit, 1000)),
        )
        return [record.to_json() for record in records]

    @router.get("/api/alerts/{alert_id}")
    async def show_alert(alert_id: RecordId) -> dict[str, Any]:
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

    @router.post("/api/alerts/{alert_id}/ack")
    async def acknowledge(
        alert_id: RecordId, by: Actor, body: Acknowledgement | None = None
    ) -> dict[str, Any]:
        from upkeep.alerting.manager import AlertManager
        from upkeep.store.alerts import AlertError

        request = body or Acknowledgement()
        duration = api_duration(request.for_, "for") if request.for_ is not None else None
        manager = AlertManager(state.loaded, state.store, clock=state.clock)
        try:
            record = await asyncio.to_thread(
                lambda: manager.acknowledge(
                    alert_id, author=by, duration=duration, comment=request.comment
                )
            )
        except AlertError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        return record.to_json()

    @router.get("/api/silences")
    async def list_silences() -> list[dict[str, Any]]:
        found = await asyncio.to_thread(state.store.alerts.silences)
        now = datetime.now(UTC)
        return [silence.to_json(now) for silence in found]

    @router.post("/api/silences", status_code=201)
    async def add_silence(body: SilenceRequest, by: Actor) -> dict[str, Any]:
        from upkeep.store.alerts import AlertError

        length = api_duration(body.for_, "for")
        now = datetime.now(UTC)
        try:
            silence = await asyncio.to_thread(
                lambda: state.store.alerts.add_silence(
                    body.matchers,
                    starts_at=now,
                    ends_at=now + length,
                    author=by,
                    comment=body.comment,
                )
            )
        except AlertError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return {"id": silence.id, "ends_at": silence.ends_at.isoformat()}

    @router.delete("/api/silences/{silence_id}")
    async def remove_silence(silence_id: RecordId, by: Actor) -> dict[str, Any]:
        removed = await asyncio.to_thread(
            lambda: state.store.alerts.remove_silence(silence_id, by=by)
        )
        if not removed:
            raise HTTPException(status_code=404, detail=f"no active silence {silence_id}")
        return {"id": silence_id, "removed": True}

    return router
