"""Accounts on both backends: users and Argon2id hashes, sessions and their expiry, stored
tokens, and the author of a removed window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from tests.integration.store import test_store as backends
from upkeep.core.access import Role, Scope
from upkeep.store import accounts as accounts_module
from upkeep.store.accounts import (
    SEEN_EVERY,
    SESSION_IDLE,
    SESSION_LIFETIME,
    AccountError,
    NameTakenError,
    secret_digest,
)
from upkeep.store.schema import api_tokens, maintenance_windows, sessions, users
from upkeep.store.store import Store

store = backends.store

CHEAP = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
"""Argon2id with tiny parameters: the tests below that do not measure hashing use it."""
PASSWORD = "correct horse battery"


REAL_HASHER = accounts_module.password_hasher


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_module, "password_hasher", lambda: CHEAP)


def stored_hash(store: Store, name: str) -> str:
    with store.engine.connect() as connection:
        value = connection.execute(
            select(users.c.password_hash).where(users.c.name == name)
        ).scalar()
    assert isinstance(value, str)
    return value


def test_passwords_are_kept_as_argon2id_with_current_parameters(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accounts_module, "password_hasher", REAL_HASHER)
    added = store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="cli:root")
    assert added.role is Role.ADMIN and added.created_by == "cli:root"
    kept = stored_hash(store, "ann")
    assert kept.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in kept
    assert store.accounts.authenticate("ann", PASSWORD) == added
    assert store.accounts.authenticate("ann", PASSWORD + "x") is None
    assert store.accounts.authenticate("nobody", PASSWORD) is None


def test_a_hash_with_old_parameters_is_replaced_at_the_next_sign_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.accounts.add_user("ann", Role.VIEWER, PASSWORD, created_by="t")
    old = stored_hash(store, "ann")
    assert "m=64,t=1,p=1" in old
    stronger = PasswordHasher(time_cost=2, memory_cost=128, parallelism=1)
    monkeypatch.setattr(accounts_module, "password_hasher", lambda: stronger)
    assert store.accounts.authenticate("ann", "wrong password!") is None
    assert stored_hash(store, "ann") == old  # a failed attempt changes nothing
    assert store.accounts.authenticate("ann", PASSWORD) is not None
    new = stored_hash(store, "ann")
    assert "m=128,t=2,p=1" in new and new != old
    assert store.accounts.authenticate("ann", PASSWORD) is not None


def test_users_are_unique_named_and_listed_without_hashes(store: Store) -> None:
    store.accounts.add_user("vera", Role.VIEWER, PASSWORD, created_by="cli:root")
    store.accounts.add_user("otto", Role.OPERATOR, PASSWORD, created_by="user:ann")
    with pytest.raises(NameTakenError, match="already a user 'vera'"):
        store.accounts.add_user("vera", Role.ADMIN, PASSWORD, created_by="t")
    for bad in ["", "has space", "<b>", "x" * 65, "-lead", "é"]:
        with pytest.raises(AccountError, match="name must be"):
            store.accounts.add_user(bad, Role.VIEWER, PASSWORD, created_by="t")
    for weak in ["short", "x" * 1025, "tab\tinside-password"]:
        with pytest.raises(AccountError, match="password must"):
            store.accounts.add_user("new", Role.VIEWER, weak, created_by="t")
    listed = store.accounts.list_users()
    assert [(u.name, u.role, u.created_by) for u in listed] == [
        ("otto", Role.OPERATOR, "user:ann"),
        ("vera", Role.VIEWER, "cli:root"),
    ]
    assert all("hash" not in str(u.to_json()) for u in listed)
    assert store.accounts.set_role("vera", Role.OPERATOR) is True
    assert store.accounts.set_role("ghost", Role.ADMIN) is False
    assert store.accounts.remove_user("otto") is True
    assert store.accounts.remove_user("otto") is False
    assert [u.name for u in store.accounts.list_users()] == ["vera"]


def test_a_session_is_kept_as_a_digest_and_ends_when_idle_or_too_old(store: Store) -> None:
    user = store.accounts.add_user("ann", Role.OPERATOR, PASSWORD, created_by="t")
    start = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    opened = store.accounts.open_session(user, now=start)
    with store.engine.connect() as connection:
        (kept,) = connection.execute(select(sessions.c.id)).scalars()
    assert kept == secret_digest(opened.secret) and opened.secret not in kept
    found = store.accounts.session_for(opened.secret, now=start + timedelta(minutes=5))
    assert found is not None and found.user == "ann" and found.role is Role.OPERATOR
    assert found.csrf_token == opened.record.csrf_token
    assert store.accounts.session_for("not-a-session", now=start) is None
    # Used every 50 minutes, it lives until its absolute lifetime ...
    moment = start
    while moment + timedelta(minutes=50) < start + SESSION_LIFETIME:
        moment += timedelta(minutes=50)
        assert store.accounts.session_for(opened.secret, now=moment) is not None, moment
    assert store.accounts.session_for(opened.secret, now=start + SESSION_LIFETIME) is None
    # ... and ended, it stays ended.
    assert store.accounts.session_for(opened.secret, now=start + timedelta(minutes=1)) is None
    idle = store.accounts.open_session(user, now=start)
    assert store.accounts.session_for(idle.secret, now=start + SESSION_IDLE) is None


def test_last_seen_is_written_at_most_once_a_minute(store: Store) -> None:
    user = store.accounts.add_user("ann", Role.VIEWER, PASSWORD, created_by="t")
    start = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    opened = store.accounts.open_session(user, now=start)

    def last_seen() -> datetime:
        with store.engine.connect() as connection:
            value = connection.execute(select(sessions.c.last_seen_at)).scalar()
        assert isinstance(value, datetime)
        return value

    store.accounts.session_for(opened.secret, now=start + SEEN_EVERY / 2)
    assert last_seen() == start
    store.accounts.session_for(opened.secret, now=start + SEEN_EVERY)
    assert last_seen() == start + SEEN_EVERY


def test_removing_disabling_or_a_new_password_ends_every_session(store: Store) -> None:
    user = store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="t")
    first, second = store.accounts.open_session(user), store.accounts.open_session(user)
    assert store.accounts.count_sessions("ann") == 2
    assert store.accounts.set_password("ann", "another long password") is True
    assert store.accounts.session_for(first.secret) is None
    assert store.accounts.session_for(second.secret) is None
    assert store.accounts.authenticate("ann", PASSWORD) is None
    assert store.accounts.authenticate("ann", "another long password") is not None

    third = store.accounts.open_session(user)
    assert store.accounts.set_disabled("ann", True) is True
    assert store.accounts.session_for(third.secret) is None
    assert store.accounts.authenticate("ann", "another long password") is None
    assert store.accounts.set_disabled("ann", False) is True
    fourth = store.accounts.open_session(user)
    assert store.accounts.remove_user("ann") is True
    assert store.accounts.session_for(fourth.secret) is None
    assert store.accounts.count_sessions("ann") == 0
    assert store.accounts.set_password("ann", "another long password") is False


def test_a_role_change_applies_to_open_sessions(store: Store) -> None:
    user = store.accounts.add_user("ann", Role.ADMIN, PASSWORD, created_by="t")
    opened = store.accounts.open_session(user)
    store.accounts.set_role("ann", Role.VIEWER)
    found = store.accounts.session_for(opened.secret)
    assert found is not None and found.role is Role.VIEWER


def test_tokens_are_kept_as_digests_with_scopes_and_expiry(store: Store) -> None:
    now = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    token, record = store.accounts.add_token(
        "ci", frozenset({Scope.READ, Scope.ACK}), created_by="user:ann", now=now
    )
    assert token.startswith("upk_") and len(token) >= 40
    assert record.scopes == {Scope.READ, Scope.ACK} and record.last_used_at is None
    with store.engine.connect() as connection:
        row = connection.execute(select(api_tokens)).one()
    assert row.digest == secret_digest(token) and token not in str(tuple(row))
    found = store.accounts.token_for(token, now=now + timedelta(minutes=1))
    assert found is not None and found.name == "ci" and found.scopes == record.scopes
    listed = store.accounts.list_tokens()
    assert [t.last_used_at for t in listed] == [now + timedelta(minutes=1)]
    assert "digest" not in listed[0].to_json() and token not in str(listed[0].to_json())
    assert store.accounts.token_for(token + "x") is None
    with pytest.raises(NameTakenError):
        store.accounts.add_token("ci", frozenset({Scope.READ}), created_by="t")
    with pytest.raises(AccountError, match="scope"):
        store.accounts.add_token("none", frozenset(), created_by="t")

    short, _ = store.accounts.add_token(
        "short", frozenset({Scope.RUN}), created_by="t", expires_at=now + timedelta(days=1),
        now=now,
    )  # fmt: skip
    assert store.accounts.token_for(short, now=now + timedelta(hours=23)) is not None
    assert store.accounts.token_for(short, now=now + timedelta(days=1)) is None
    with pytest.raises(AccountError, match="future"):
        store.accounts.add_token(
            "past", frozenset({Scope.RUN}), created_by="t", expires_at=now, now=now
        )
    assert store.accounts.remove_token("ci") is True
    assert store.accounts.remove_token("ci") is False
    assert store.accounts.token_for(token) is None


def test_a_removed_window_keeps_who_removed_it(store: Store) -> None:
    now = datetime.now(UTC)
    window = store.runs.add_window("patch", now, now + timedelta(hours=1), created_by="user:otto")
    assert store.runs.remove_window(window.id, by="user:ann", now=now) is True
    assert store.runs.list_windows() == []
    with store.engine.connect() as connection:
        row = connection.execute(select(maintenance_windows)).one()
    assert (row.created_by, row.removed_by, row.removed_at) == ("user:otto", "user:ann", now)


def test_an_unknown_name_costs_one_verification_like_a_wrong_password(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.accounts.add_user("ann", Role.VIEWER, PASSWORD, created_by="t")
    verified: list[str] = []
    real_verify = accounts_module.verify_password

    def counting(stored: str, password: str) -> bool:
        verified.append(stored)
        return real_verify(stored, password)

    monkeypatch.setattr(accounts_module, "verify_password", counting)
    assert store.accounts.authenticate("ann", "wrong password!") is None
    assert store.accounts.authenticate("nobody", "wrong password!") is None
    assert store.accounts.authenticate("<not a name>", "x" * 5000) is None
    assert len(verified) == 3
    assert verified[0] == stored_hash(store, "ann")
    assert verified[1] != verified[0] and verified[1].startswith("$argon2id$")
