"""A secret never appears in output, errors, stored records or logs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.conftest import Upkeep

SECRET = "Tr0ub4dor-and-3"
FILE_SECRET = "corr3ct-h0rse-battery"


def test_secrets_are_masked_everywhere(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "token").write_text(FILE_SECRET + "\n")
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  leaky:
    kind: command
    # A plugin that prints what it was given: the worst case for a secret.
    command: [/bin/sh, -c, 'echo "CRITICAL - token=$TOKEN other=${file:token} | x=1"; exit 2']
    env: {TOKEN: "${API_TOKEN}"}
  crashing:
    kind: command
    command: [/bin/sh, -c, 'echo "$TOKEN" >&2; kill -9 $$']
    env: {TOKEN: "${API_TOKEN}"}
  api: {kind: http, url: "http://monitor:${API_TOKEN}@127.0.0.1:1/health"}
checks:
  leaky: {target: leaky, crit: x > 0}
  crashing: {target: crashing}
  api: {target: api}
"""
    )
    env = {"API_TOKEN": SECRET}
    outputs = []
    for args in (
        ("check",),
        ("check", "--json"),
        ("history", "--json"),
        ("history",),
        ("validate",),
    ):
        result = upkeep(*args, env=env)
        outputs.append(result.stdout + result.stderr)
    combined = "\n".join(outputs)
    assert "***" in combined  # the masked value is visible as masked
    assert SECRET not in combined and FILE_SECRET not in combined
    stored = json.loads(upkeep("history", "leaky", "--json", env=env).stdout)["results"]
    assert stored and all(SECRET not in json.dumps(row) for row in stored)
    for path in (tmp_path / ".upkeep").iterdir():  # the database, its WAL and shared memory
        data = path.read_bytes()
        assert SECRET.encode() not in data and FILE_SECRET.encode() not in data, path


def test_secret_in_an_invalid_config_is_not_echoed(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text('targets:\n  t: {kind: tcp, host: x, port: "${PORT}"}\n')
    result = upkeep("validate", env={"PORT": SECRET})
    assert result.returncode == 2
    assert SECRET not in result.stdout + result.stderr
