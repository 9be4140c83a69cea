"""Every change to an account through the API names who made it: users and tokens keep
their maker (``created_by``), and each later change (role, password, disabling, removal,
revocation) is logged with its actor, never with a password or token."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.unit.web.test_accounts_web import PASSWORD, cheap_hashing, with_session
from upkeep.core.access import Role
from upkeep.web.app import DaemonState

__all__ = ["cheap_hashing"]  # the fixture that makes Argon2 cheap for these tests

NEW_PASSWORD = "another long password"


async def test_changes_to_users_and_tokens_are_logged_with_their_actor(
    daemon_state: DaemonState, daemon_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    admin, csrf = with_session(daemon_state, daemon_app, "ann", Role.ADMIN)
    headers = {"X-CSRF-Token": csrf}
    with caplog.at_level(logging.INFO, logger="upkeep.web.accounts"):
        added = await admin.post(
            "/api/users",
            json={"name": "otto", "role": "operator", "password": PASSWORD},
            headers=headers,
        )
        assert added.status_code == 201
        changed = await admin.patch(
            "/api/users/otto",
            json={"role": "viewer", "password": NEW_PASSWORD, "disabled": True},
            headers=headers,
        )
        assert changed.status_code == 200
        made = await admin.post(
            "/api/tokens", json={"name": "ci", "scopes": ["read"]}, headers=headers
        )
        assert made.status_code == 201
        assert (await admin.delete("/api/tokens/ci", headers=headers)).status_code == 200
        assert (await admin.delete("/api/users/otto", headers=headers)).status_code == 200
    lines = [record.getMessage() for record in caplog.records]
    expected = [
        "user otto added (role operator) by user:ann",
        "user otto: password set by user:ann",
        "user otto: role set to viewer by user:ann",
        "user otto: disabled by user:ann",
        "token ci added (scopes read) by user:ann",
        "token ci revoked by user:ann",
        "user otto removed by user:ann",
    ]
    assert lines == expected
    text = "\n".join(lines)
    assert PASSWORD not in text and NEW_PASSWORD not in text
    assert made.json()["token"] not in text
