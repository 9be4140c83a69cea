"""The notifications API: the outbox (``upkeep notify outbox``) and a test message to a
channel (``upkeep notify test``)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import ApiBody, Runner, needs
from upkeep.web.models import Answer
from upkeep.web.queries import NAME_PATTERN

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState


class OutboxEntry(Answer):
    """One notification in the outbox (`upkeep notify outbox --json`)."""

    id: int
    key: str
    channel: str
    kind: str
    alert_id: int | None
    check: str | None
    severity: str | None
    title: str
    status: str
    muted_by: str | None
    attempts: int
    created_at: str | None
    next_attempt_at: str | None
    sent_at: str | None
    last_error: str | None
    batch: str | None


class Outbox(Answer):
    """How many notifications are in each status, and the latest ones, newest first."""

    counts: dict[str, int]
    rows: list[OutboxEntry]


class TestRequest(ApiBody):
    """Which channel to send a test message to."""

    channel: str = Field(pattern=NAME_PATTERN, max_length=200, description="a channel's name")


class TestSent(Answer):
    """The channel took the test message."""

    channel: str
    sent: bool


def _outbox(state: DaemonState, status: str | None, limit: int) -> Outbox:
    from upkeep.store.outbox import OutboxStatus

    store = state.store
    rows = store.outbox.list_rows(
        status=None if status is None else OutboxStatus(status), limit=limit
    )
    counts = store.outbox.counts()
    alert_ids = {row.alert_id for row in rows if row.alert_id is not None}
    checks = {
        alert_id: record.check
        for alert_id in alert_ids
        if (record := store.alerts.get(alert_id)) is not None
    }
    redact = state.loaded.redactor.redact
    return Outbox.model_validate(
        {
            "counts": counts,
            "rows": [
                row.to_json(checks.get(row.alert_id) if row.alert_id is not None else None, redact)
                for row in rows
            ],
        }
    )


def notify_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the notifications API routes."""
    router = APIRouter()

    @router.get(
        "/api/outbox",
        responses=READ_REFUSALS,
        response_description="counts per status and the latest notifications",
        dependencies=[needs(Scope.READ)],
    )
    async def outbox(
        status: Annotated[
            Literal["pending", "sending", "sent", "dead", "muted"] | None,
            Query(description="only notifications in this status"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 50,
    ) -> Outbox:
        """The outbox as `upkeep notify outbox --json`: what waits to be sent, what was
        sent, and what died, with the last error (redacted)."""
        return await asyncio.to_thread(_outbox, state, status, limit)

    @router.post(
        "/api/notify/test",
        responses={
            **CHANGE_REFUSALS,
            404: {"description": "no channel of this name"},
            502: {"description": "the channel did not take the message (the error, redacted)"},
        },
        response_description="the channel took the message",
    )
    async def notify_test(body: TestRequest, who: Runner) -> TestSent:
        """Send a test message to a channel now, not through the outbox, as `upkeep notify
        test CHANNEL`."""
        from upkeep.notify.channels import send

        loaded = state.loaded
        url = loaded.config.channels.get(body.channel)
        if url is None:
            raise HTTPException(status_code=404, detail=f"no channel named {body.channel!r}")
        host = socket.gethostname()
        now = datetime.now(UTC)
        result = await asyncio.to_thread(
            send,
            url,
            f"upkeep test notification from {host}",
            f"A test message sent by {who.actor} through the API of upkeep on {host} at "
            f"{now.isoformat(timespec='seconds')}. If you can read this, channel "
            f"{body.channel} works.",
            "info",
            f"test:{body.channel}:{uuid.uuid4().hex[:12]}",
            loaded.config.alerting.delivery.timeout.total_seconds(),
            loaded.redactor,
        )
        if not result.ok:
            raise HTTPException(status_code=502, detail=f"{body.channel}: {result.error}")
        return TestSent(channel=body.channel, sent=True)

    return router
