"""The accounts API: who am I, users and stored API tokens.

``GET /api/me`` answers any caller (the dashboard asks it who is signed in). Everything
else needs the ``admin`` scope. A token is shown once, in the answer that makes it; only
its SHA-256 is kept. Every change is recorded with its actor (``created_by``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from pydantic import Field

from upkeep.core.access import Role, Scope
from upkeep.store.accounts import ACCOUNT_NAME, MAX_PASSWORD_CHARS, AccountError, NameTakenError
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS, named_tokens
from upkeep.web.inputs import Administrator, ApiBody, Reader, api_duration

if TYPE_CHECKING:
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)
"""Each change to an account is logged with its actor (``who.actor``): the store keeps only
who made a user or token, the log who changed, disabled, removed or revoked it."""

AccountName = Annotated[
    str,
    Path(
        pattern=ACCOUNT_NAME.pattern,
        max_length=64,
        description="a user's or token's name (letters, digits, . _ @ -)",
    ),
]
"""A user's or token's name in a path: refused with a 422 unless well-formed."""
Password = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PASSWORD_CHARS,
        description="the password (at least 10 characters); never returned or logged",
    ),
]


class NewUser(ApiBody):
    """The body of a request adding a user."""

    name: str = Field(pattern=ACCOUNT_NAME.pattern, max_length=64, description="the user's name")
    role: Role = Field(description="viewer, operator or admin")
    password: Password


class UserChange(ApiBody):
    """The body of a request changing a user: any of role, password, disabled."""

    role: Role | None = Field(default=None, description="the new role")
    password: Password | None = Field(
        default=None,
        description="a new password (at least 10 characters): the user's sessions end",
    )
    disabled: bool | None = Field(
        default=None, description="true: the user cannot sign in and their sessions end"
    )


class NewToken(ApiBody):
    """The body of a request making an API token."""

    name: str = Field(pattern=ACCOUNT_NAME.pattern, max_length=64, description="the token's name")
    scopes: list[Scope] = Field(
        min_length=1, max_length=len(Scope), description="what it may do: read, ack, run, ..."
    )
    expires_in: str | None = Field(
        default=None,
        max_length=40,
        description="a duration such as 30d (at most 1y); absent: it does not expire",
    )


def accounts_api_router(state: DaemonState, hashing: asyncio.Semaphore) -> APIRouter:
    """Given the daemon's state and the semaphore bounding password hashing, return the
    ``/api/me``, ``/api/users`` and ``/api/tokens`` routes."""
    router = APIRouter()

    @router.get(
        "/api/me",
        responses=READ_REFUSALS,
        response_description="the caller: actor, kind (user or token), name, role, scopes, "
        "and for a session its CSRF token and expiry",
    )
    async def me(request: Request, who: Reader) -> dict[str, Any]:
        """Who the request acts as and what it may do. A signed-in user's answer also
        holds the CSRF token their changes send in `X-CSRF-Token` (only a page of this
        origin can read it)."""
        from upkeep.web.auth import current_session

        session = current_session(request)
        return {
            "actor": who.actor,
            "kind": who.kind,
            "name": who.name,
            "role": who.role.value if who.role else None,
            "scopes": sorted(scope.value for scope in who.scopes),
            "csrf_token": session.csrf_token if session else None,
            "session_expires_at": session.expires_at.isoformat() if session else None,
        }

    _user_routes(router, state, hashing)
    _token_routes(router, state)
    return router


def _user_routes(router: APIRouter, state: DaemonState, hashing: asyncio.Semaphore) -> None:
    """Add the ``/api/users`` routes to a router."""
    user_responses: dict[int | str, dict[str, Any]] = {
        **CHANGE_REFUSALS,
        404: {"description": "no user of that name"},
        409: {"description": "a user of that name exists already"},
        422: {"description": "a name, role or password refused (the password never echoed)"},
    }

    @router.get("/api/users", responses=READ_REFUSALS, response_description="every user, by name")
    async def list_users(who: Administrator) -> list[dict[str, Any]]:
        """List users: name, role, disabled, who made them and when (never a hash)."""
        del who
        records = await asyncio.to_thread(state.store.accounts.list_users)
        return [record.to_json() for record in records]

    @router.post(
        "/api/users",
        status_code=201,
        responses=user_responses,
        response_description="the new user",
    )
    async def add_user(body: NewUser, who: Administrator) -> dict[str, Any]:
        """Add a user with a role and a password."""
        try:
            async with hashing:
                record = await asyncio.to_thread(
                    lambda: state.store.accounts.add_user(
                        body.name, body.role, body.password, created_by=who.actor
                    )
                )
        except NameTakenError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        except AccountError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        logger.info("user %s added (role %s) by %s", record.name, body.role.value, who.actor)
        return record.to_json()

    @router.patch(
        "/api/users/{name}", responses=user_responses, response_description="the user, changed"
    )
    async def change_user(name: AccountName, body: UserChange, who: Administrator) -> Any:
        """Change a user's role, reset their password (ending their sessions), or disable
        or enable them."""
        accounts = state.store.accounts
        found = True
        try:
            if body.password is not None:
                password = body.password
                async with hashing:
                    found = await asyncio.to_thread(accounts.set_password, name, password)
                if found:
                    logger.info("user %s: password set by %s", name, who.actor)
            if found and body.role is not None:
                found = await asyncio.to_thread(accounts.set_role, name, body.role)
                if found:
                    logger.info("user %s: role set to %s by %s", name, body.role.value, who.actor)
            if found and body.disabled is not None:
                found = await asyncio.to_thread(accounts.set_disabled, name, body.disabled)
                if found:
                    change = "disabled" if body.disabled else "enabled"
                    logger.info("user %s: %s by %s", name, change, who.actor)
        except AccountError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        record = await asyncio.to_thread(accounts.get_user, name) if found else None
        if record is None:
            raise HTTPException(status_code=404, detail=f"no user {name!r}")
        return record.to_json()

    @router.delete(
        "/api/users/{name}",
        responses={**CHANGE_REFUSALS, 404: {"description": "no user of that name"}},
        response_description="the name of the user removed",
    )
    async def remove_user(name: AccountName, who: Administrator) -> dict[str, Any]:
        """Remove a user and end their sessions."""
        if not await asyncio.to_thread(state.store.accounts.remove_user, name):
            raise HTTPException(status_code=404, detail=f"no user {name!r}")
        logger.info("user %s removed by %s", name, who.actor)
        return {"removed": name}


def _token_routes(router: APIRouter, state: DaemonState) -> None:
    """Add the ``/api/tokens`` routes to a router."""

    @router.get(
        "/api/tokens",
        responses=READ_REFUSALS,
        response_description="stored tokens: name, scopes, made by and when, last used, "
        "expiry (never the token or its digest)",
    )
    async def list_tokens(who: Administrator) -> list[dict[str, Any]]:
        """List stored API tokens (not those of engine.api_tokens)."""
        del who
        records = await asyncio.to_thread(state.store.accounts.list_tokens)
        return [record.to_json() for record in records]

    @router.post(
        "/api/tokens",
        status_code=201,
        responses={
            **CHANGE_REFUSALS,
            409: {"description": "a token of that name exists (stored or configured)"},
        },
        response_description="the token (shown this once only) and its record",
    )
    async def add_token(body: NewToken, who: Administrator) -> dict[str, Any]:
        """Make an API token with the given scopes; the answer is the only place the
        token is ever shown."""
        if body.name in named_tokens(state.loaded.config.engine):
            raise HTTPException(
                status_code=409, detail=f"engine.api_tokens has a token {body.name!r} already"
            )
        expires_at = None
        if body.expires_in is not None:
            expires_at = datetime.now(UTC) + api_duration(body.expires_in, "expires_in")
        try:
            token, record = await asyncio.to_thread(
                lambda: state.store.accounts.add_token(
                    body.name, frozenset(body.scopes), created_by=who.actor, expires_at=expires_at
                )
            )
        except NameTakenError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None
        except AccountError as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        scopes = ",".join(sorted(scope.value for scope in record.scopes))
        logger.info("token %s added (scopes %s) by %s", record.name, scopes, who.actor)
        return {"token": token, **record.to_json()}

    @router.delete(
        "/api/tokens/{name}",
        responses={**CHANGE_REFUSALS, 404: {"description": "no stored token of that name"}},
        response_description="the name of the token revoked",
    )
    async def remove_token(name: AccountName, who: Administrator) -> dict[str, Any]:
        """Revoke a stored API token."""
        if not await asyncio.to_thread(state.store.accounts.remove_token, name):
            raise HTTPException(status_code=404, detail=f"no stored token {name!r}")
        logger.info("token %s revoked by %s", name, who.actor)
        return {"removed": name}
