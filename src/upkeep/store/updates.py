"""Public updates on incidents: what an operator chose to tell the status page's readers.

An incident's message, its notes and its checks' outputs are for operators; the public
status page shows only these updates, each published on purpose (``upkeep incidents
publish`` or ``POST /api/incidents/{id}/updates``) and redacted before it is stored.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from upkeep.store.rows import inserted_id
from upkeep.store.schema import alerts, incident_updates

if TYPE_CHECKING:
    from sqlalchemy import Engine

MAX_UPDATE_CHARS = 4000
"""A published update is at most this long: a status page says what happens, briefly."""
_IN_CHUNK = 500


@dataclass(frozen=True)
class IncidentUpdate:
    """One published update on an incident."""

    id: int
    incident_id: int
    at: datetime
    author: str
    text: str

    def to_json(self) -> dict[str, Any]:
        """Return the update as JSON (time as ISO 8601); the author is left out: the
        public sees what was said, not which operator account said it."""
        return {
            "id": self.id,
            "incident": self.incident_id,
            "at": self.at.isoformat(),
            "text": self.text,
        }


def publish_update(
    engine: Engine, incident_id: int, text: str, author: str, at: datetime
) -> IncidentUpdate | None:
    """Given a store's engine, an incident (a fired alert), the update's text (already
    redacted by the caller), its author and time, store it and return it; return None,
    writing nothing, if there is no such incident. Raise ValueError if the text is empty
    or longer than ``MAX_UPDATE_CHARS``."""
    if not text.strip():
        raise ValueError("the update is empty")
    if len(text) > MAX_UPDATE_CHARS:
        raise ValueError(f"the update is longer than {MAX_UPDATE_CHARS} characters")
    with engine.begin() as connection:
        exists = connection.execute(
            select(alerts.c.id).where(alerts.c.id == incident_id, alerts.c.fired_at.is_not(None))
        ).first()
        if exists is None:
            return None
        new_id = inserted_id(
            connection.execute(
                insert(incident_updates).values(
                    alert_id=incident_id, at=at, author=author, text=text
                )
            )
        )
    return IncidentUpdate(new_id, incident_id, at, author, text)


def published_updates(
    engine: Engine, incident_ids: Collection[int]
) -> dict[int, list[IncidentUpdate]]:
    """Given a store's engine and incident ids, return the published updates of each that
    has any, oldest first."""
    found: dict[int, list[IncidentUpdate]] = {}
    wanted = sorted(set(incident_ids))
    with engine.connect() as connection:
        for start in range(0, len(wanted), _IN_CHUNK):
            rows = connection.execute(
                select(incident_updates)
                .where(incident_updates.c.alert_id.in_(wanted[start : start + _IN_CHUNK]))
                .order_by(incident_updates.c.at, incident_updates.c.id)
            )
            for row in rows:
                found.setdefault(int(row.alert_id), []).append(
                    IncidentUpdate(int(row.id), int(row.alert_id), row.at, row.author, row.text)
                )
    return found
