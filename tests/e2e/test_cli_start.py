"""How the CLI starts: ``upkeep --help`` imports none of the heavy libraries, and a call
through the suite's fork server (``tests/support/cli_zygote.py``) is the same run as a
fresh ``python -m upkeep.cli.main``: same output, same exit code, same environment."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep

HEAVY = (
    "alembic",
    "apprise",
    "fastapi",
    "jinja2",
    "lark",
    "matplotlib",
    "psycopg",
    "pydantic",
    "rich",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "weasyprint",
    "yaml",
)
"""Libraries a command imports when it runs, never to list the commands."""

HELP_IMPORTS = """\
import json, sys
sys.argv = ["upkeep", "--help"]
from upkeep.cli.main import main
try:
    main()
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def test_help_imports_no_heavy_library() -> None:
    started = subprocess.run(
        [sys.executable, "-c", HELP_IMPORTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    assert "Commands:" in started.stdout
    modules = json.loads(started.stderr)
    loaded = sorted({name.split(".")[0] for name in modules} & set(HEAVY))
    assert loaded == [], f"`upkeep --help` imported {loaded}: import them inside the command"


VALID = """\
targets:
  host: {kind: host}
checks:
  root-disk: {target: host, probe: disk, params: {path: /}, warn: used_percent > 100}
channels:
  ops: "json://127.0.0.1:9/hook"
"""
INVALID = """\
targets:
  host: {kind: hots}
checks:
  root-disk: {target: host, probe: disk, warn: used_percent >}
channels:
  ops: "${OPS_URL}"
"""


def test_a_forked_call_is_the_same_run_as_a_fresh_interpreter(
    upkeep: Upkeep, upkeep_exec: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "valid.yaml").write_text(VALID, encoding="utf-8")
    (tmp_path / "invalid.yaml").write_text(INVALID, encoding="utf-8")
    calls: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("--help",), {"COLUMNS": "80"}),
        # The config comes from the environment given to this call, relative to its cwd.
        (("validate",), {"UPKEEP_CONFIG": "valid.yaml"}),
        (("validate", "-c", "invalid.yaml"), {"OPS_URL": "not a url"}),
        (("schedule", "--json", "-c", "valid.yaml"), {"TZ": "Asia/Kolkata"}),
        (("no-such-command",), {}),
    ]
    for args, env in calls:
        forked, fresh = upkeep(*args, env=env), upkeep_exec(*args, env=env)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            fresh.returncode,
            fresh.stdout,
            fresh.stderr,
        ), args
        assert forked.stdout or forked.stderr, args
    assert upkeep("validate", "-c", "invalid.yaml").returncode == 2


def test_a_call_that_outlives_its_timeout_is_killed_and_raises(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        "runbooks:\n  hang:\n    steps:\n      - name: wait\n        command: [sleep, '30']\n",
        encoding="utf-8",
    )
    with pytest.raises(subprocess.TimeoutExpired):
        upkeep("run", "hang", "--yes", timeout=3)
    # The killed run left the store usable for the next call.
    assert upkeep("runbooks").returncode == 0
