"""A database of its own for each test module of the PostgreSQL maintenance tasks.

``REINDEX ... CONCURRENTLY`` waits for every older transaction of its database, and
``VACUUM`` keeps the dead rows any of them may still see: on the shared ``test`` database
another suite's open transaction would make these tests wait or measure the wrong thing.
A database per module (per xdist worker) sees only this module's own sessions.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import POSTGRES_DSN, require_service


@pytest.fixture(scope="module")
def postgres_dsn() -> Iterator[str]:
    """Override: the DSN of a new empty database, dropped after the module."""
    require_service("PostgreSQL", 5432)
    name = f"upkeep_pgtasks_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(POSTGRES_DSN, dbname=name)
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")
