"""The maintenance windows API: config and one-off windows, adding and removing one-offs
(as ``upkeep window add|list|remove``)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, HTTPException
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
from upkeep.web.models import Answer, Removed
from upkeep.web.queries import NAME_PATTERN

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)


class WindowRow(Answer):
    """A window as `upkeep window list --json` shows it."""

    id: int | None = Field(description="a one-off window's id; null for a config window")
    name: str
    source: str = Field(description="`config`, or `one-off by <who>`")
    schedule: str | None
    open_now: bool
    until: str | None = Field(description="when the current opening ends (ISO 8601)")
    next_opening: str | None = Field(description="when it next opens (ISO 8601)")
    comment: str


class WindowRequest(ApiBody):
    """A one-off maintenance window: a name (a config window's adds an opening of it),
    when it starts, how long, what it mutes."""

    name: str = Field(pattern=NAME_PATTERN, max_length=200, description="the window's name")
    start: str = Field(
        default="now",
        max_length=40,
        description="`now` or an ISO time (in the config's timezone unless it names one)",
    )
    duration: str = Field(
        max_length=40, description="how long it stays open: 30m, 2h, 1d (at most 1y)"
    )
    comment: Comment = ""
    mute_labels: dict[Word, Word] = Field(
        default_factory=dict,
        max_length=32,
        description="mute only alerts carrying these labels (`--mute-label`); empty: "
        "runbooks waiting for this window may run, and routes muting it mute",
    )


class WindowAdded(Answer):
    """The window recorded."""

    id: int
    name: str
    starts_at: str
    ends_at: str
    created_by: str


def window_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the windows API routes."""
    router = APIRouter()

    @router.get(
        "/api/windows",
        responses=READ_REFUSALS,
        response_description="config windows and one-off windows not yet over",
        dependencies=[needs(Scope.READ)],
    )
    async def list_windows() -> list[WindowRow]:
        """List maintenance windows as `upkeep window list --json`: open now or when
        they next open."""
        from upkeep.alerting.windows import window_rows

        now = datetime.now(UTC)
        one_offs = await asyncio.to_thread(state.store.runs.list_windows, ending_after=now)
        return [
            WindowRow.model_validate(row) for row in window_rows(state.loaded.config, one_offs, now)
        ]

    @router.post(
        "/api/windows",
        status_code=201,
        responses=CHANGE_REFUSALS,
        response_description="the window recorded",
    )
    async def add_window(body: WindowRequest, who: Acker) -> WindowAdded:
        """Add a one-off maintenance window, as `upkeep window add` (recorded as made by
        the caller)."""
        from zoneinfo import ZoneInfo

        from upkeep.core.moments import start_time

        length = api_duration(body.duration, "duration")
        try:
            starts_at = start_time(
                body.start, ZoneInfo(state.loaded.config.timezone), datetime.now(UTC)
            )
        except (ValueError, OverflowError):
            raise invalid(
                ("body", "start"), "start must be 'now' or an ISO time of the years 1970 to 9000"
            ) from None
        mute: dict[str, Any] | None = {"labels": body.mute_labels} if body.mute_labels else None
        window = await asyncio.to_thread(
            lambda: state.store.runs.add_window(
                body.name,
                starts_at,
                starts_at + length,
                created_by=who.actor,
                comment=body.comment,
                mute=mute,
            )
        )
        return WindowAdded(
            id=window.id,
            name=window.name,
            starts_at=window.starts_at.isoformat(),
            ends_at=window.ends_at.isoformat(),
            created_by=window.created_by,
        )

    @router.delete(
        "/api/windows/{window_id}",
        responses={**CHANGE_REFUSALS, 404: {"description": "no one-off window with this id"}},
        response_description="`id` and `removed: true`",
    )
    async def remove_window(window_id: RecordId, who: Acker) -> Removed:
        """Remove a one-off window, as `upkeep window remove` (config windows stay)."""
        removed = await asyncio.to_thread(
            lambda: state.store.runs.remove_window(window_id, by=who.actor)
        )
        if not removed:
            raise HTTPException(status_code=404, detail=f"no one-off window {window_id}")
        return Removed(id=window_id, removed=True)

    return router
