"""A secret never appears in output, errors, stored records or logs."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

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


def test_a_mysql_dsn_that_does_not_parse_is_reported_without_its_password(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  db: {kind: mysql, dsn: "mysql://root:S3cr#tPassw0rd@127.0.0.1:3306/test"}
  db2: {kind: mysql, dsn: "mysql://root:${MYPW}@127.0.0.1:3306/test"}
checks:
  c: {target: db}
  c2: {target: db2}
"""
    )
    result = upkeep("validate", env={"MYPW": "p@ss#w0rd/Xyzzy"})
    assert result.returncode == 2
    output = result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert len(errors) == 2, result.stderr
    assert "upkeep.yaml:2:26: targets.db.dsn: the DSN does not read as mysql://" in errors[0]
    assert "upkeep.yaml:3:27: targets.db2.dsn: the DSN" in errors[1]
    assert "percent-encode" in output and "checks.c" not in output
    for part in ("S3cr", "tPassw0rd", "Passw0rd", "p@ss", "w0rd", "Xyzzy"):
        assert part not in output, part


STORE_SECRET = "hunter22hunter"


@pytest.mark.parametrize(
    "store",
    [
        f"postgresql://app@127.0.0.1:1/upkeep?password={STORE_SECRET}",
        f"postgresql://127.0.0.1:1/upkeep?user=app&password={STORE_SECRET}&sslmode=disable",
    ],
)
@pytest.mark.parametrize("command", ["check", "history", "prune"])
def test_a_password_in_the_store_url_query_is_never_shown(
    upkeep: Upkeep, tmp_path: Path, store: str, command: str
) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        f'store: "{store}"\n'
        "targets: {box: {kind: host}}\n"
        "checks: {u: {target: box, probe: uptime}}\n"
    )
    result = upkeep(command)
    assert result.returncode != 0
    assert "cannot open store postgresql" in result.stderr
    assert STORE_SECRET not in result.stdout + result.stderr


def test_a_secret_label_value_is_never_stored(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        """\
targets:
  box: {kind: host, labels: {owner: "${OWNER}"}}
checks:
  up: {target: box, probe: uptime, labels: {team: "team-${TEAM_SUFFIX}", env: prod}}
"""
    )
    env = {"OWNER": SECRET, "TEAM_SUFFIX": FILE_SECRET}
    # Selecting by the secret label still works: the config keeps the real value.
    result = upkeep("check", "--label", f"owner={SECRET}", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert [item["check"] for item in json.loads(result.stdout)["results"]] == ["up"]
    files = list((tmp_path / ".upkeep").iterdir())
    assert any(path.name == "upkeep.db" for path in files)
    for path in files:  # the database, its WAL and shared memory
        data = path.read_bytes()
        assert SECRET.encode() not in data and FILE_SECRET.encode() not in data, path
    with sqlite3.connect(tmp_path / ".upkeep" / "upkeep.db") as connection:
        (labels,) = connection.execute("select labels from checks where name = 'up'").fetchone()
    assert json.loads(labels) == {"owner": "***", "team": "team-***", "env": "prod"}


def test_our_hints_stay_whole_when_a_secret_is_one_of_their_words(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    # Found by a new user: a channel value "slack" (a secret: channel URLs hold tokens)
    # turned the hint into "e.g. mailto://, json://, ***"; a value "json" from the
    # environment garbled it the same way.
    (tmp_path / "upkeep.yaml").write_text(
        """\
channels:
  team: slack
  ops: "${OPS_URL}"
"""
    )
    result = upkeep("validate", env={"OPS_URL": "json"})
    assert result.returncode == 2
    hint = "(no scheme://, e.g. mailto://, json://, slack://)"
    assert result.stderr.count(hint) == 2, result.stderr


def test_a_short_secret_glued_to_a_flag_is_never_shown(upkeep: Upkeep, tmp_path: Path) -> None:
    """Found in review: masking short secrets only as whole tokens printed ``-phunter22``
    in a dry run, its JSON and the stored run record."""
    (tmp_path / "upkeep.yaml").write_text(
        """\
runbooks:
  dump:
    steps:
      - command: [/bin/sh, -c, 'echo "connecting with -p$DB_PASS and x${DB_PASS}y"', "-p${DB_PASS}"]
"""
    )
    env = {"DB_PASS": "hunter22"}
    outputs = [
        upkeep("run", "dump", "--dry-run", env=env),
        upkeep("run", "dump", "--dry-run", "--json", env=env),
        upkeep("run", "dump", "--yes", env=env),
        upkeep("runs", "list", "--json", env=env),
    ]
    run_id = json.loads(outputs[-1].stdout)[0]["id"]
    outputs.append(upkeep("runs", "show", str(run_id), "--json", env=env))
    combined = "\n".join(result.stdout + result.stderr for result in outputs)
    assert "-p***" in combined
    assert "hunter22" not in combined, combined
    for path in (tmp_path / ".upkeep").iterdir():
        assert b"hunter22" not in path.read_bytes(), path
