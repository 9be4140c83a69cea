"""The outbox's stores on both backends, with a way to open the same database again (as a
second process would), and the receivers of tests/support."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from upkeep.store.store import Store, normalise_url

OpenStore = Callable[[], Store]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """Yield a function that opens another ``Store`` (its own engine and lock, like another
    process) on one fresh database: SQLite in tmp_path, or a PostgreSQL schema."""
    opened: list[Store] = []
    schema = f"upkeep_test_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = "sqlite:///.upkeep/upkeep.db"
        admin = None
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        admin = create_engine(normalise_url(dsn, tmp_path))
        url = dsn

    def another() -> Store:
        store = Store.open(url, tmp_path, schema=schema)
        opened.append(store)
        return store

    yield another
    for store in opened:
        store.close()
    if admin is not None:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    """Return a store on a fresh database of each backend."""
    return open_store()
