"""The alerts API: alerts with their timelines, acknowledgement, and silences."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState


class Acknowledgement(BaseModel):
    """The body of an acknowledge request."""

    by: str = Field(default="api", max_length=200)
    comment: str = Field(default="", max_length=2000)
    for_: str | None = Field(default=None, alias="for", max_length=40)


class SilenceRequest(BaseModel):
    """The body of a request adding a silence."""

    matchers: dict[str, str] = Field(min_length=1)
    for_: str = Field(alias="for", max_length=40)
    by: str = Field(default="api", max_length=200)
    comment: str = Field(default="", max_length=2000)


def alert_router(state: DaemonState, authorise: Callable[[str | None], None]) -> APIRouter:
    """Given the daemon's state and its bearer-token check, return the alerts API routes."""
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
    async def show_alert(alert_id: int) -> dict[str, Any]:
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
        alert_id: int, body: Acknowledgement | None = None, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        from upkeep.alerting.manager import AlertManager
        from upkeep.config.durations import parse_duration
        from upkeep.store.alerts import AlertError

        authorise(authorization)
        request = body or Acknowledgement()
        try:
            duration = parse_duration(request.for_) if request.for_ else None
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        if duration is not None and duration.total_seconds() <= 0:
            raise HTTPException(status_code=422, detail="for must be longer than 0s")
        manager = AlertManager(state.loaded, state.store)
        try:
            record = await asyncio.to_thread(
                lambda: manager.acknowledge(
                    alert_id, author=request.by, duration=duration, comment=request.comment
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
    async def add_silence(
        body: SilenceRequest, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        from upkeep.config.durations import parse_duration
        from upkeep.store.alerts import AlertError

        authorise(authorization)
        try:
            length = parse_duration(body.for_)
        except ValueError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        now = datetime.now(UTC)
        try:
            silence = await asyncio.to_thread(
                lambda: state.store.alerts.add_silence(
                    body.matchers,
                    starts_at=now,
                    ends_at=now + length,
                    author=body.by,
                    comment=body.comment,
                )
            )
        except AlertError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return {"id": silence.id, "ends_at": silence.ends_at.isoformat()}

    @router.delete("/api/silences/{silence_id}")
    async def remove_silence(
        silence_id: int, by: str = "api", authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        authorise(authorization)
        removed = await asyncio.to_thread(
            lambda: state.store.alerts.remove_silence(silence_id, by=by)
        )
        if not removed:
            raise HTTPException(status_code=404, detail=f"no active silence {silence_id}")
        return {"id": silence_id, "removed": True}

    return router
