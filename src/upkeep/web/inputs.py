"""What the API accepts from a client: ids, texts, durations and the request's actor.

Every value a client sends is bounded here, so a bad one is a 4xx naming the field and
never reaches the store or date arithmetic as something that fails there (a 500).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from upkeep.core.access import Principal, Scope
from upkeep.web.guard import ACTOR_KEY, PRINCIPAL_KEY

MAX_RECORD_ID = 2**63 - 1
"""Ids are 64-bit signed integers in every store."""
MAX_API_DURATION = timedelta(days=365)
"""The longest acknowledgement or silence the API grants: a year. Longer is a mistake or
an attempt to mute an alert for good; remove the check instead."""

RecordId = Annotated[int, Path(ge=1, le=MAX_RECORD_ID, description="a record's id")]
"""A run, alert or silence id in a path: 1 to 2^63-1, else 422."""


def _printable(value: str) -> str:
    """Given a text, return it; raise ValueError if it holds a control character other
    than a newline or tab (a NUL cannot even be stored in PostgreSQL)."""
    if any(not character.isprintable() and character not in "\n\t" for character in value):
        raise ValueError("must not contain control characters")
    return value


def _one_line(value: str) -> str:
    if "\n" in value or "\t" in value:
        raise ValueError("must be one line")
    return _printable(value)


Comment = Annotated[
    str,
    Field(max_length=2000, description="why, recorded with the change"),
    AfterValidator(_printable),
]
"""A free comment recorded with a change."""
Word = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_one_line)]
"""A label name or a matcher pattern."""
RunbookName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=200)]
"""A runbook's name, spelled as the config allows (so a garbled one is a 422)."""


class ApiBody(BaseModel):
    """A request body: unknown fields are errors, and ``by`` is refused with a reason.

    The actor of a change is the name of the API token that made it; a body cannot say
    who it is from (older clients sent ``by``: they learn why it no longer works).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_actor(cls, data: Any) -> Any:
        if isinstance(data, dict) and "by" in data:
            raise ValueError(
                "'by' is not accepted: a change is recorded as made by the API token's "
                "name (api:<name>)"
            )
        return data


def principal(request: Request) -> Principal:
    """Given a request the guard admitted, return who it acts as; raise 401 if nobody."""
    found = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise HTTPException(status_code=401, detail="a valid API token or session is required")
    return found


def needs(scope: Scope) -> Any:
    """Given the scope a route needs, return the FastAPI dependency that admits a caller
    holding it (returning its ``Principal``) and answers 403 to anyone else.

    Every ``/api`` route declares exactly one (``tests/unit/web/test_scopes.py`` walks
    the routes): a route without one would be open to any credential.
    """

    def dependency(request: Request) -> Principal:
        caller = principal(request)
        if not caller.allows(scope):
            raise HTTPException(
                status_code=403,
                detail=f"{caller.actor} may not do this: it needs the {scope.value!r} scope",
            )
        return caller

    dependency.required_scope = scope  # type: ignore[attr-defined]
    dependency.__name__ = f"needs_{scope.value}"
    return Depends(dependency)


Reader = Annotated[Principal, needs(Scope.READ)]
"""A caller that may read (every role)."""
Acker = Annotated[Principal, needs(Scope.ACK)]
"""A caller that may acknowledge, note, silence and open windows (operator, admin)."""
Runner = Annotated[Principal, needs(Scope.RUN)]
"""A caller that may run checks, runbooks, backups and drills (operator, admin)."""
Approver = Annotated[Principal, needs(Scope.APPROVE)]
"""A caller that may approve or reject a waiting step (admin)."""
Administrator = Annotated[Principal, needs(Scope.ADMIN)]
"""A caller that may manage users and tokens (admin)."""


def actor(request: Request) -> str:
    """Given a request the guard admitted, return its actor (``api:<token name>`` or
    ``user:<name>``)."""
    found = request.scope.get(ACTOR_KEY)
    if not isinstance(found, str):
        raise HTTPException(status_code=401, detail="a valid API token is required")
    return found


Actor = Annotated[str, Depends(actor)]
"""The request's actor, as the guard identified it (no scope checked: use with a
``needs`` dependency)."""


def invalid(where: tuple[str, ...], message: str) -> RequestValidationError:
    """Given where a value was sent (``("body", "for")``, ``("query", "since")``) and what
    is wrong with it, return the error to raise: answered as every 422 is (``{"detail":
    [{"loc", "msg", "type"}]}``, the shape the schema declares), never quoting the value."""
    return RequestValidationError([{"loc": where, "msg": message, "type": "value_error"}])


def api_duration(text: str, field: str) -> timedelta:
    """Given a duration literal from a client, return it; raise RequestValidationError (a 422) unless
    it parses and is longer than 0s and at most ``MAX_API_DURATION`` (``field`` names
    the body's field)."""
    from upkeep.core.durations import format_duration, parse_duration

    try:
        length = parse_duration(text)
    except (ValueError, OverflowError):
        # Not the parser's message: it quotes the input, and an answer never echoes one.
        raise invalid(
            ("body", field), f"{field} must be a duration such as 30m, 2h or 7d, at most 1y"
        ) from None
    if length <= timedelta(0):
        raise invalid(("body", field), f"{field} must be longer than 0s")
    if length > MAX_API_DURATION:
        raise invalid(
            ("body", field), f"{field} must be at most {format_duration(MAX_API_DURATION)} (1y)"
        )
    return length
