"""Accounts made with the CLI, used against a real ``upkeep serve`` over real sockets: a
user signs in with the form, acts with the session's CSRF token, a viewer and a token are
held to their scopes, and removing the user from the CLI ends the session at once."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e import test_serve_api as serve_api
from tests.e2e.conftest import Upkeep
from tests.e2e.test_serve_api import StartServe, write_config

# The serve tests' fixture: `upkeep serve` on a free loopback port, killed at the end.
start = serve_api.start
PASSWORD = "a long enough password"


def add_user(tmp_path: Path, name: str, role: str) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", "user", "add", name, "--role", role,
         "--password-stdin"],
        cwd=tmp_path, input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def signed_in(base: str, name: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=base, headers={"Origin": base}, timeout=10)
    form = client.get("/login", params={"next": "/api/me"})
    assert form.status_code == 200, form.text
    found = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert found is not None
    posted = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf": found.group(1), "next": "/api/me"},
    )
    assert posted.status_code == 303, posted.text
    assert posted.headers["location"] == "/api/me"
    me = client.get("/api/me").json()
    assert me["actor"] == f"user:{name}"
    return client, me["csrf_token"]


def test_users_and_tokens_from_the_cli_act_on_a_running_daemon(
    upkeep: Upkeep, tmp_path: Path, start: StartServe
) -> None:
    config = write_config(tmp_path / "upkeep.yaml")
    add_user(tmp_path, "otto", "operator")
    add_user(tmp_path, "vera", "viewer")
    made = upkeep("token", "add", "pager", "--scope", "read,ack")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    daemon = start(config)
    base = f"http://127.0.0.1:{daemon.port}"

    otto, csrf = signed_in(base, "otto")
    silence = {"matchers": {"check": "beat"}, "for": "1h", "comment": "maintenance"}
    assert otto.post("/api/silences", json=silence).status_code == 403  # no CSRF token
    added = otto.post("/api/silences", json=silence, headers={"X-CSRF-Token": csrf})
    assert added.status_code == 201, added.text
    listed = json.loads(upkeep("silence", "list", "--json").stdout)["silences"]
    assert [(s["author"], s["comment"]) for s in listed] == [("user:otto", "maintenance")]

    vera, vera_csrf = signed_in(base, "vera")
    refused = vera.post("/api/silences", json=silence, headers={"X-CSRF-Token": vera_csrf})
    assert refused.status_code == 403 and "'ack' scope" in refused.json()["detail"]

    pager = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert pager.get("/api/alerts").status_code == 200
    approve = pager.post("/api/runs/1/approve", json={})
    assert approve.status_code == 403 and "'approve' scope" in approve.json()["detail"]
    tokens = json.loads(upkeep("token", "list", "--json").stdout)
    assert tokens[0]["name"] == "pager" and tokens[0]["last_used_at"] is not None

    anonymous = httpx.Client(base_url=base, timeout=10)
    page = anonymous.get("/somewhere", headers={"Accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fsomewhere"

    assert upkeep("user", "remove", "otto").returncode == 0
    assert otto.get("/api/me").status_code == 401
    assert upkeep("token", "remove", "pager").returncode == 0
    assert pager.get("/api/alerts").status_code == 401
    for client in (otto, vera, pager, anonymous):
        client.close()
