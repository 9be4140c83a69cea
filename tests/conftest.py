"""Shared fixtures: the real local services, and a way to run one probe directly.

Tests that need a service use the real one on 127.0.0.1. Outside CI a missing service
skips its tests; under ``CI=true`` it fails them, because a silent skip would hide that
the suite did not test what it claims to.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from upkeep.config.models import StoreConfig
from upkeep.core.redaction import Redactor
from upkeep.io.http import HttpClient
from upkeep.probes.base import Probe, ProbeContext, ProbeOutcome, TargetBase

POSTGRES_DSN = os.environ.get("UPKEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_DSN = os.environ.get("UPKEEP_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REDIS_URL = os.environ.get("UPKEEP_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def require_service(name: str, port: int) -> None:
    """Given a service and its port, return if it answers; else fail under CI, skip elsewhere."""
    if _port_open(port):
        return
    message = f"{name} is not listening on 127.0.0.1:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture(autouse=True, scope="session")
def _spill_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep every spill file the suite makes (``store/spill.py``) in a temporary
    directory: by default it would go to /run/upkeep, outside the test's own files.
    Subprocesses (the CLI, ``upkeep serve``) inherit it through the environment."""
    from upkeep.store.spill import SPILL_DIR_ENV

    previous = os.environ.get(SPILL_DIR_ENV)
    os.environ[SPILL_DIR_ENV] = str(tmp_path_factory.mktemp("spill"))
    yield
    if previous is None:
        os.environ.pop(SPILL_DIR_ENV, None)
    else:
        os.environ[SPILL_DIR_ENV] = previous


@pytest.fixture
def postgres_dsn() -> str:
    require_service("PostgreSQL", 5432)
    return POSTGRES_DSN


@pytest.fixture
def mysql_dsn() -> str:
    require_service("MariaDB", 3306)
    return MYSQL_DSN


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", 6379)
    return REDIS_URL


@pytest.fixture(params=["sqlite", "postgres"])
def store_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreConfig]:
    """Yield a store for each backend: SQLite under tmp_path, or PostgreSQL in a schema of
    its own (which opening the store creates, and which is dropped afterwards) so tests
    never see each other's rows nor wait for each other's locks.
    """
    if request.param == "sqlite":
        yield StoreConfig(url="sqlite:///.upkeep/upkeep.db")
        return
    from sqlalchemy import create_engine, text

    from upkeep.store.store import normalise_url

    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"upkeep_test_{uuid.uuid4().hex[:12]}"
    try:
        yield StoreConfig.model_validate({"url": dsn, "schema": schema})
    finally:
        admin = create_engine(normalise_url(dsn, tmp_path))
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
async def http_client() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    await client.close()


async def run_probe(
    probe_class: type[Probe[Any, Any]],
    target_model: type[TargetBase],
    target: dict[str, Any],
    params: dict[str, Any] | None = None,
    *,
    timeout_s: float = 10.0,
    http: HttpClient | None = None,
) -> ProbeOutcome:
    """Given a probe class, its target model, a raw target and params, run the probe once."""
    parsed_target = target_model.model_validate({"kind": probe_class.target_kind, **target})
    parsed_params = probe_class.Params.model_validate(params or {})
    client = http or HttpClient()
    context = ProbeContext(timeout=timedelta(seconds=timeout_s), http=client, redactor=Redactor())
    try:
        return await probe_class().run(parsed_target, parsed_params, context)
    finally:
        if http is None:
            await client.close()
