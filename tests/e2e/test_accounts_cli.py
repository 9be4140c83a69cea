"""``upkeep user`` and ``upkeep token`` through the real command, over the config's store."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import Upkeep

CONFIG = 'engine: {api_tokens: {ops: "config-token-0123456789"}}\n'
PASSWORD = "a long enough password"


def with_stdin(tmp_path: Path, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", *args],
        cwd=tmp_path,
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_users_are_added_listed_changed_and_removed(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(CONFIG)
    added = with_stdin(tmp_path, PASSWORD + "\n", "user", "add", "ann", "--role", "admin",
                       "--password-stdin")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "user ann added (admin)" in added.stdout
    assert PASSWORD not in added.stdout + added.stderr
    # No terminal and no --password-stdin: refused, never waiting for input.
    no_tty = with_stdin(tmp_path, "", "user", "add", "vera", "--role", "viewer")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    taken = with_stdin(tmp_path, PASSWORD, "user", "add", "ann", "--role", "viewer",
                       "--password-stdin")  # fmt: skip
    assert taken.returncode == 2 and "already a user 'ann'" in taken.stderr
    bad_role = upkeep("user", "add", "bob", "--role", "root", "--password-stdin")
    assert bad_role.returncode == 2 and "viewer, operator, admin" in bad_role.stderr
    weak = with_stdin(tmp_path, "short\n", "user", "add", "bob", "--role", "viewer",
                      "--password-stdin")  # fmt: skip
    assert weak.returncode == 2 and "at least 10 characters" in weak.stderr
    with_stdin(tmp_path, PASSWORD, "user", "add", "vera", "--role", "viewer", "--password-stdin")

    listed = upkeep("user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    users = json.loads(listed.stdout)
    assert [(u["name"], u["role"], u["disabled"]) for u in users] == [
        ("ann", "admin", False),
        ("vera", "viewer", False),
    ]
    assert users[0]["created_by"].startswith("cli:")
    table = upkeep("user", "list")
    assert "ann" in table.stdout and "admin" in table.stdout and "argon2" not in table.stdout
    # The password is kept only as an Argon2id hash.
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as database:
        (kept,) = database.execute("SELECT password_hash FROM users WHERE name='ann'").fetchone()
    assert kept.startswith("$argon2id$") and PASSWORD not in kept

    changed = with_stdin(tmp_path, "another long password\n", "user", "passwd", "ann",
                         "--password-stdin")  # fmt: skip
    assert changed.returncode == 0 and "password of ann changed" in changed.stdout
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as database:
        (new,) = database.execute("SELECT password_hash FROM users WHERE name='ann'").fetchone()
    assert new != kept
    unknown = with_stdin(tmp_path, PASSWORD, "user", "passwd", "ghost", "--password-stdin")
    assert unknown.returncode == 2 and "no user 'ghost'" in unknown.stderr

    removed = upkeep("user", "remove", "vera")
    assert removed.returncode == 0 and "sessions ended" in removed.stdout
    assert upkeep("user", "remove", "vera").returncode == 2
    assert [u["name"] for u in json.loads(upkeep("user", "list", "--json").stdout)] == ["ann"]


def test_a_token_is_shown_once_and_listed_without_its_secret(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(CONFIG)
    made = upkeep("token", "add", "ci", "--scope", "read,ack", "--expires", "30d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("upk_") and "\n" not in token
    assert "shown this once only" in made.stderr

    listed = upkeep("token", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)
    assert [(t["name"], t["scopes"], t["last_used_at"]) for t in tokens] == [
        ("ci", ["ack", "read"], None)
    ]
    assert tokens[0]["expires_at"] and tokens[0]["created_by"].startswith("cli:")
    table = upkeep("token", "list")
    for output in (listed.stdout, table.stdout):
        assert token not in output and token[4:20] not in output
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as database:
        (digest,) = database.execute("SELECT digest FROM api_tokens").fetchone()
    assert len(digest) == 64 and token not in digest

    clash = upkeep("token", "add", "ops", "--scope", "read")
    assert clash.returncode == 2 and "engine.api_tokens" in clash.stderr
    unknown_scope = upkeep("token", "add", "x", "--scope", "read,root")
    assert unknown_scope.returncode == 2 and "'root'" in unknown_scope.stderr
    assert upkeep("token", "add", "ci", "--scope", "read").returncode == 2

    assert upkeep("token", "remove", "ci").returncode == 0
    gone = upkeep("token", "remove", "ci")
    assert gone.returncode == 2 and "no stored token 'ci'" in gone.stderr
    assert json.loads(upkeep("token", "list", "--json").stdout) == []
