"""The daemon's HTTP application: ``/healthz``, ``/metrics`` and the runs API.

Served by uvicorn inside the daemon's event loop on ``engine.listen`` (loopback by
default), and the alerts API: alerts with their timelines, acknowledgement, silences.
Endpoints that change something (approve, reject, ack, silences) need
``Authorization: Bearer <engine.api_token>`` when a token is configured.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Header, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
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
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stats: SchedulerStats | None = None


class Decision(BaseModel):
    """The body of an approve or reject request."""

    by: str = Field(default="api", max_length=200)
    comment: str = Field(default="", max_length=2000)


def run_to_json(record: RunRecord) -> dict[str, Any]:
    """Given a stored run, return its JSON shape (times as ISO 8601, steps included)."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": record.id,
        "runbook": record.runbook,
        "trigger": record.trigger,
        "triggered_by": record.triggered_by,
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
                "name": step.name,
                "kind": step.kind,
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


def create_app(state: DaemonState) -> FastAPI:
    """Given the daemon's state, return the FastAPI application serving it."""
    app = FastAPI(title="upkeep", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")

    def authorise(authorization: str | None) -> None:
        token = state.loaded.config.engine.api_token
        if token is None:
            return
        expected = f"Bearer {token}"
        if authorization is None or not hmac.compare_digest(authorization, expected):
            raise HTTPException(status_code=401, detail="a valid bearer token is required")

    @app.get("/healthz")
    async def healthz() -> Response:
        try:
            await asyncio.to_thread(state.store.runs.list_instances)
        except Exception as error:  # noqa: BLE001 - any store failure makes the daemon unhealthy
            detail = state.loaded.redactor.redact(f"store unreachable: {type(error).__name__}")
            return Response(
                content=f'{{"status": "unhealthy", "reason": "{detail}"}}',
                status_code=503,
                media_type="application/json",
            )
        import orjson

        body = {
            "status": "ok",
            "role": state.role,
            "instance": state.instance_id,
            "started_at": state.started_at.isoformat(),
            "checks": sum(1 for check in state.loaded.checks.values() if check.enabled),
            "runbooks": len(state.loaded.config.runbooks),
        }
        return Response(content=orjson.dumps(body), media_type="application/json")

    @app.get("/metrics")
    async def metrics() -> Response:
        if state.stats is not None:
            state.metrics.update_from(state.stats)
        try:
            await asyncio.to_thread(state.metrics.update_alerting, state.store)
        except Exception:  # noqa: BLE001 - the other metrics still answer when the store does not
            logger.warning("could not read alert gauges from the store", exc_info=False)
        payload = await asyncio.to_thread(generate_latest, state.metrics.registry)
        return Response(content=payload, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/runs")
    async def list_runs(limit: int = 50, runbook: str | None = None) -> list[dict[str, Any]]:
        records = await asyncio.to_thread(
            state.store.runs.list_runs, runbook=runbook, limit=max(1, min(limit, 1000))
        )
        return [run_to_json(record) for record in records]

    @app.get("/api/runs/{run_id}")
    async def show_run(run_id: int) -> dict[str, Any]:
        record = await asyncio.to_thread(state.store.runs.get_run, run_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return run_to_json(record)

    async def decide(run_id: int, decision: str, body: Decision) -> dict[str, Any]:
        try:
            await asyncio.to_thread(
                state.store.runs.decide, run_id, decision, body.by, body.comment
            )
        except LookupError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        record = await asyncio.to_thread(state.store.runs.get_run, run_id)
        if record is None:
            raise HTTPException(status_code=404, detail=f"no run {run_id}")
        return run_to_json(record)

    @app.post("/api/runs/{run_id}/approve")
    async def approve(
        run_id: int, body: Decision | None = None, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        authorise(authorization)
        return await decide(run_id, "approved", body or Decision())

    @app.post("/api/runs/{run_id}/reject")
    async def reject(
        run_id: int, body: Decision | None = None, authorization: str | None = Header(None)
    ) -> dict[str, Any]:
        authorise(authorization)
        return await decide(run_id, "rejected", body or Decision())

    from upkeep.web.alerts import alert_router

    app.include_router(alert_router(state, authorise))
    return app
