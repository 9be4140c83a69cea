"""Schemathesis over the whole OpenAPI schema, in process (ASGI): no input yields a 500,
and every answer matches the schema (its status code declared, its body the declared
shape). The store is real SQLite, seeded with a run, an alert, a silence and a window, so
generated ids sometimes hit real records; the daemon's own functions run checks and
runbooks. Derandomized and bounded: the same cases every run, well under a minute."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.unit.web.api_world import TOKEN, World, build_world, close_world
from upkeep.web.app import create_app

FUZZ_CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
  cache: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: test}}
checks:
  api-up: {target: api, severity: P1, every: 5m}
  cache-up: {target: cache, severity: P3, enabled: false}
channels:
  ops: "json://127.0.0.1:9/hook"
routes:
  - notify: [ops]
windows:
  nightly: {schedule: "0 2 * * *", duration: 1h}
runbooks:
  deploy:
    schedule: "0 3 * * *"
    steps:
      - manual: Look at the release notes
  tidy:
    steps:
      - manual: Look at the disk
backups:
  repository: repo
  sources:
    db: {sqlite: data/app.db}
"""
"""Runbooks of manual steps only: a run the fuzzer starts ends at once (no approval
waits past the test)."""

EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 8}
"""Cases per operation and mode; and as many again with the path naming seeded records."""
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


@dataclass
class Fuzzed:
    app: Any
    world: World


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    base = tmp_path_factory.mktemp("fuzz")
    (base / "data").mkdir()
    with contextlib.closing(sqlite3.connect(base / "data" / "app.db")) as database:
        database.execute("CREATE TABLE t (x INTEGER)")
        database.commit()
    seeded = build_world(base, FUZZ_CONFIG)
    yield Fuzzed(create_app(seeded.state), seeded)
    # Backups and runs the fuzzer started go on in the loop it calls the app in (another
    # thread's): they end before the store closes.
    for _ in range(1000):
        if not seeded.state.jobs.busy and not seeded.daemon._running_runbooks:
            break
        time.sleep(0.01)
    asyncio.run(close_world(seeded))


def _seeded_path(world: World, names: list[str]) -> dict[str, Any] | None:
    """Given an operation's path parameters, return values naming seeded records (so the
    cases reach past the 404), or None if it has none."""
    known: dict[str, Any] = {
        "run_id": world.run_id,
        "alert_id": world.alert_id,
        "incident_id": world.alert_id,
        "silence_id": world.silence_id,
        "window_id": world.window_id,
        "name": "api-up",
        "source": "db",
        "job_id": 1,
        "backup_id": "20260301T020000Z-a1b2c3",
    }
    if not names or any(name not in known for name in names):
        return None
    return {name: known[name] for name in names}


def test_no_input_yields_a_server_error_or_an_answer_off_the_schema(fuzzed: Fuzzed) -> None:
    # Each operation and mode is its own Hypothesis run (schemathesis' pytest plugin does
    # not run under pytest 9); every failure is collected, so one run shows them all.
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", fuzzed.app)
    failures: list[str] = []
    operations = 0
    for found in schema.get_all_operations():
        if isinstance(found, Err):
            failures.append(f"the schema has an invalid operation: {found.err()}")
            continue
        operation = found.ok()
        operations += 1
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if operation.method.upper() not in ("GET", "HEAD", "DELETE"):
            # The guard wants JSON for a change even without a body; a case without one
            # would only ever meet its 415.
            headers["Content-Type"] = "application/json"
        names = [parameter.name for parameter in operation.path_parameters]
        pinned = _seeded_path(fuzzed.world, names)
        if operation.path.startswith("/api/runbooks/"):
            pinned = {"name": "tidy"}
        for mode, count in EXAMPLES.items():
            strategies = [operation.as_strategy(generation_mode=mode)]
            if pinned is not None and mode == GenerationMode.POSITIVE:
                strategies.append(
                    operation.as_strategy(generation_mode=mode, path_parameters=pinned)
                )
            for strategy in strategies:
                failures += _fuzz(strategy, count, headers, f"{operation.label} ({mode.value})")
    assert operations >= 28
    assert not failures, "\n\n".join(failures)


def _fuzz(strategy: Any, count: int, headers: dict[str, str], label: str) -> list[str]:
    """Given a strategy of cases, call and check ``count`` of them; return the failures."""

    @given(case=strategy)
    @settings(
        max_examples=count,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: Any) -> None:
        case.call_and_validate(base_url="http://127.0.0.1:9464", headers=headers, checks=CHECKS)

    try:
        call()
    except Unsatisfiable:
        return []  # nothing of this operation can be made invalid (negative mode): no case
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # noqa: BLE001 - schemathesis raises a group: collected
        return [f"{label}: {error}"]
    return []


def test_the_fuzzed_schema_covers_every_api_operation(fuzzed: Fuzzed) -> None:
    paths = fuzzed.app.openapi()["paths"]
    assert len([path for path in paths if path.startswith("/api/")]) >= 28
    assert "/api/docs" not in paths  # the Swagger UI page is no operation
