"""Accounts: users and their passwords, signed-in sessions, and stored API tokens.

What is kept, and why it is safe to keep:

* a user's password only as an Argon2id hash (argon2-cffi's ``PasswordHasher``, the
  RFC 9106 low-memory profile: 3 passes over 64 MiB). A hash made with other parameters
  is replaced by a current one the next time its password is verified;
* a session only as the SHA-256 of the secret its cookie carries: a copy of the store
  does not sign anybody in. The secret has 256 random bits, so a fast hash is right; a
  slow one would only slow every request. A session ends at the first of its absolute
  lifetime and its idle time; removing a user, disabling them or changing their password
  ends all their sessions;
* an API token only as its SHA-256 (the token is 256 random bits, shown once), with its
  scopes, who made it, when it was last used and when it expires (if ever).

Every method is its own short transaction, and blocks: the web face calls them through
``asyncio.to_thread``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from upkeep.core.access import Role, Scope, parse_scopes
from upkeep.store.schema import api_tokens, sessions, users

if TYPE_CHECKING:
    import threading

    from argon2 import PasswordHasher
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
"""What a user's or a token's name may be: it is shown on pages and recorded as the actor of
changes (``user:<name>``, ``api:<name>``), so no spaces, no markup, at most 64 characters."""
MIN_PASSWORD_CHARS = 10
"""A shorter password is refused."""
MAX_PASSWORD_CHARS = 1024
"""A longer password is refused before it is hashed (hashing cost grows with it)."""
SESSION_LIFETIME = timedelta(hours=12)
"""A session ends this long after signing in, however busy."""
SESSION_IDLE = timedelta(hours=1)
"""A session ends when not used for this long."""
SEEN_EVERY = timedelta(minutes=1)
"""A session's or token's last use is written at most this often (not on every request)."""
TOKEN_PREFIX = "upk_"  # noqa: S105 - a prefix, not a secret
"""Stored tokens start with this, so a leaked one is recognisable (secret scanners)."""


class AccountError(ValueError):
    """A change to accounts that cannot be made: a name or password refused."""


class NameTakenError(AccountError):
    """A user or token of that name exists already."""


@dataclass(frozen=True)
class UserRecord:
    """A user as stored (never with the password's hash)."""

    id: int
    name: str
    role: Role
    disabled: bool
    created_at: datetime
    created_by: str
    password_changed_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the user as JSON-ready data."""
        return {
            "name": self.name,
            "role": self.role.value,
            "disabled": self.disabled,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "password_changed_at": self.password_changed_at.isoformat(),
        }


@dataclass(frozen=True)
class SessionRecord:
    """A live session: whose, with which role, and its CSRF token."""

    digest: str
    user: str
    role: Role
    csrf_token: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class NewSession:
    """A session just opened: the secret for the cookie (never stored) and its record."""

    secret: str
    record: SessionRecord


@dataclass(frozen=True)
class TokenRecord:
    """A stored API token (never with its digest)."""

    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    expires_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """Return the token as JSON-ready data, its digest left out."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "name": self.name,
            "scopes": sorted(scope.value for scope in self.scopes),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "last_used_at": iso(self.last_used_at),
            "expires_at": iso(self.expires_at),
        }


def secret_digest(secret: str) -> str:
    """Given a session secret or a token, return the hex SHA-256 kept in its place."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_name(name: str, what: str = "name") -> str:
    """Given a user's or token's name, return it; raise AccountError unless it matches
    ``ACCOUNT_NAME``."""
    if not ACCOUNT_NAME.match(name):
        raise AccountError(
            f"{what} must be 1 to 64 letters, digits or . _ @ - (starting with a letter or digit)"
        )
    return name


def check_password(password: str) -> str:
    """Given a new password, return it; raise AccountError if it is too short or too long
    or holds a control character."""
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise AccountError(f"the password must have at most {MAX_PASSWORD_CHARS} characters")
    if any(not character.isprintable() for character in password):
        raise AccountError("the password must not contain control characters")
    return password


@cache
def password_hasher() -> PasswordHasher:
    """Return the one Argon2id hasher, with argon2-cffi's current default parameters."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash of no one's password, verified against for a name nobody has, so signing in
    as an unknown user takes as long as with a wrong password."""
    return password_hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    """Given a password, return its Argon2id hash (PHC string, parameters and salt in it)."""
    return password_hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """Given a stored hash and a password, return whether they match (never raise for a
    mismatch or a malformed hash)."""
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return password_hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _user(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        disabled=bool(row.disabled),
        created_at=row.created_at,
        created_by=row.created_by,
        password_changed_at=row.password_changed_at,
    )


def _token(row: Any) -> TokenRecord:
    return TokenRecord(
        name=row.name,
        scopes=parse_scopes(row.scopes),
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
    )


class AccountStore:
    """Users, sessions and stored tokens of one store; safe to share between threads."""

    def __init__(self, engine: Engine, lock: threading.Lock) -> None:
        self.engine = engine
        self._lock = lock

    # --- users ----------------------------------------------------------------------------

    def add_user(
        self, name: str, role: Role, password: str, *, created_by: str, now: datetime | None = None
    ) -> UserRecord:
        """Given a name, a role, a password and who adds the user, record them and return
        the user; raise AccountError if the name or password is refused or the name taken."""
        check_name(name, "a user's name")
        hashed = hash_password(check_password(password))
        moment = now or datetime.now(UTC)
        try:
            with self._lock, self.engine.begin() as connection:
                connection.execute(
                    insert(users).values(
                        name=name,
                        role=role.value,
                        password_hash=hashed,
                        disabled=False,
                        created_at=moment,
                        created_by=created_by,
                        password_changed_at=moment,
                    )
                )
        except IntegrityError:
            raise NameTakenError(f"there is already a user {name!r}") from None
        found = self.get_user(name)
        if found is None:  # pragma: no cover - removed between the two transactions
            raise AccountError(f"no user {name!r}")
        return found

    def get_user(self, name: str) -> UserRecord | None:
        """Given a name, return that user, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.name == name)).first()
        return _user(row) if row is not None else None

    def list_users(self) -> list[UserRecord]:
        """Return every user, by name."""
        with self.engine.connect() as connection:
            return [_user(row) for row in connection.execute(select(users).order_by(users.c.name))]

    def remove_user(self, name: str) -> bool:
        """Given a name, remove that user and end their sessions; return whether they existed."""
        with self._lock, self.engine.begin() as connection:
            user_id = connection.execute(select(users.c.id).where(users.c.name == name)).scalar()
            if user_id is None:
                return False
            connection.execute(delete(sessions).where(sessions.c.user_id == user_id))
            connection.execute(delete(users).where(users.c.id == user_id))
        return True

    def set_password(self, name: str, password: str, *, now: datetime | None = None) -> bool:
        """Given a name and a new password, store its hash and end the user's sessions;
        return whether the user exists; raise AccountError if the password is refused."""
        hashed = hash_password(check_password(password))
        with self._lock, self.engine.begin() as connection:
            user_id = connection.execute(select(users.c.id).where(users.c.name == name)).scalar()
            if user_id is None:
                return False
            connection.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(password_hash=hashed, password_changed_at=now or datetime.now(UTC))
            )
            connection.execute(delete(sessions).where(sessions.c.user_id == user_id))
        return True

    def set_role(self, name: str, role: Role) -> bool:
        """Given a name and a role, give the user that role (their sessions act with it from
        their next request); return whether the user exists."""
        with self._lock, self.engine.begin() as connection:
            return bool(
                connection.execute(
                    update(users).where(users.c.name == name).values(role=role.value)
                ).rowcount
            )

    def set_disabled(self, name: str, disabled: bool) -> bool:
        """Given a name, disable the user (ending their sessions) or enable them again;
        return whether the user exists."""
        with self._lock, self.engine.begin() as connection:
            user_id = connection.execute(select(users.c.id).where(users.c.name == name)).scalar()
            if user_id is None:
                return False
            connection.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
            if disabled:
                connection.execute(delete(sessions).where(sessions.c.user_id == user_id))
        return True

    def authenticate(self, name: str, password: str) -> UserRecord | None:
        """Given a name and a password, return the user if the password is theirs and they
        are not disabled, else None.

        An unknown name costs one verification against a dummy hash, so the time taken does
        not say whether a user exists. A hash made with older parameters is replaced.
        """
        if len(password) > MAX_PASSWORD_CHARS or not ACCOUNT_NAME.match(name):
            verify_password(_dummy_hash(), "")
            return None
        with self.engine.connect() as connection:
            row = connection.execute(select(users).where(users.c.name == name)).first()
        if row is None:
            verify_password(_dummy_hash(), password)
            return None
        if not verify_password(row.password_hash, password) or row.disabled:
            return None
        if password_hasher().check_needs_rehash(row.password_hash):
            rehashed = hash_password(password)
            with self._lock, self.engine.begin() as connection:
                connection.execute(
                    update(users)
                    .where(users.c.id == row.id, users.c.password_hash == row.password_hash)
                    .values(password_hash=rehashed)
                )
        return _user(row)

    # --- sessions -------------------------------------------------------------------------

    def open_session(self, user: UserRecord, *, now: datetime | None = None) -> NewSession:
        """Given a signed-in user, open a new session and return its secret (for the
        cookie) and record; sessions over their time are deleted on the way."""
        moment = now or datetime.now(UTC)
        secret = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        digest = secret_digest(secret)
        expires_at = moment + SESSION_LIFETIME
        with self._lock, self.engine.begin() as connection:
            self._delete_expired(connection, moment)
            connection.execute(
                insert(sessions).values(
                    id=digest,
                    user_id=user.id,
                    csrf_token=csrf_token,
                    created_at=moment,
                    last_seen_at=moment,
                    expires_at=expires_at,
                )
            )
        record = SessionRecord(digest, user.name, user.role, csrf_token, moment, expires_at)
        return NewSession(secret=secret, record=record)

    @staticmethod
    def _delete_expired(connection: Connection, now: datetime) -> None:
        connection.execute(
            delete(sessions).where(
                (sessions.c.expires_at <= now) | (sessions.c.last_seen_at <= now - SESSION_IDLE)
            )
        )

    def session_for(self, secret: str, *, now: datetime | None = None) -> SessionRecord | None:
        """Given the secret a cookie carries, return its live session, or None if there is
        none, it is over its lifetime or idle time, or its user is disabled. Marks it seen
        (at most once per ``SEEN_EVERY``)."""
        moment = now or datetime.now(UTC)
        digest = secret_digest(secret)
        query = (
            select(sessions, users.c.name, users.c.role, users.c.disabled)
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.id == digest)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None or row.disabled:
            return None
        # The digest was found by an index lookup; comparing it again in constant time
        # costs nothing and keeps the rule "secrets are only ever compared so" simple.
        if not hmac.compare_digest(row.id, digest):  # pragma: no cover - the lookup matched
            return None
        if row.expires_at <= moment or row.last_seen_at <= moment - SESSION_IDLE:
            self.end_session(secret)
            return None
        if moment - row.last_seen_at >= SEEN_EVERY:
            with self._lock, self.engine.begin() as connection:
                connection.execute(
                    update(sessions).where(sessions.c.id == digest).values(last_seen_at=moment)
                )
        return SessionRecord(
            digest, row.name, Role(row.role), row.csrf_token, row.created_at, row.expires_at
        )

    def end_session(self, secret: str) -> bool:
        """Given a cookie's secret, end its session; return whether there was one."""
        with self._lock, self.engine.begin() as connection:
            return bool(
                connection.execute(
                    delete(sessions).where(sessions.c.id == secret_digest(secret))
                ).rowcount
            )

    def count_sessions(self, name: str) -> int:
        """Given a user's name, return how many sessions they have open (expired ones that
        were not yet deleted included)."""
        query = (
            select(sessions.c.id)
            .join(users, users.c.id == sessions.c.user_id)
            .where(users.c.name == name)
        )
        with self.engine.connect() as connection:
            return len(connection.execute(query).all())

    # --- API tokens -----------------------------------------------------------------------

    def add_token(
        self,
        name: str,
        scopes: frozenset[Scope],
        *,
        created_by: str,
        expires_at: datetime | None = None,
        now: datetime | None = None,
    ) -> tuple[str, TokenRecord]:
        """Given a name, scopes and who makes it, make a token; return it (the only time it
        is ever seen) and its record; raise AccountError if the name is refused or taken."""
        check_name(name, "a token's name")
        if not scopes:
            raise AccountError("a token needs at least one scope")
        moment = now or datetime.now(UTC)
        if expires_at is not None and expires_at <= moment:
            raise AccountError("a token must expire in the future")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        scope_text = ",".join(sorted(scope.value for scope in scopes))
        try:
            with self._lock, self.engine.begin() as connection:
                connection.execute(
                    insert(api_tokens).values(
                        name=name,
                        digest=secret_digest(token),
                        scopes=scope_text,
                        created_at=moment,
                        created_by=created_by,
                        last_used_at=None,
                        expires_at=expires_at,
                    )
                )
        except IntegrityError:
            raise NameTakenError(f"there is already a token {name!r}") from None
        return token, TokenRecord(name, scopes, moment, created_by, None, expires_at)

    def list_tokens(self) -> list[TokenRecord]:
        """Return every stored token (without digests), by name."""
        with self.engine.connect() as connection:
            return [
                _token(row)
                for row in connection.execute(select(api_tokens).order_by(api_tokens.c.name))
            ]

    def remove_token(self, name: str) -> bool:
        """Given a token's name, revoke it; return whether it existed."""
        with self._lock, self.engine.begin() as connection:
            return bool(
                connection.execute(delete(api_tokens).where(api_tokens.c.name == name)).rowcount
            )

    def token_for(self, token: str, *, now: datetime | None = None) -> TokenRecord | None:
        """Given a token a client sent, return its record if it is stored and not expired,
        else None. Marks it used (at most once per ``SEEN_EVERY``)."""
        moment = now or datetime.now(UTC)
        digest = secret_digest(token)
        with self.engine.connect() as connection:
            row = connection.execute(
                select(api_tokens).where(api_tokens.c.digest == digest)
            ).first()
        if row is None or not hmac.compare_digest(row.digest, digest):
            return None
        if row.expires_at is not None and row.expires_at <= moment:
            return None
        if row.last_used_at is None or moment - row.last_used_at >= SEEN_EVERY:
            with self._lock, self.engine.begin() as connection:
                connection.execute(
                    update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=moment)
                )
        return _token(row)
