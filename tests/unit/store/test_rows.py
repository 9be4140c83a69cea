"""inserted_id: the id of the row an INSERT added, or a clear error when there is none."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, create_engine, insert

from upkeep.store.rows import inserted_id

METADATA = MetaData()
NUMBERED = Table(
    "numbered", METADATA, Column("id", Integer, primary_key=True), Column("v", Integer)
)
# SQLite lets a nullable text key stay NULL: the driver then reports the key as (None,).
UNKEYED = Table("unkeyed", METADATA, Column("k", String, primary_key=True, nullable=True))
PAIRED = Table(
    "paired",
    METADATA,
    Column("a", Integer, primary_key=True),
    Column("b", Integer, primary_key=True),
)


@pytest.fixture
def connection() -> Iterator[Connection]:
    engine = create_engine("sqlite://")
    METADATA.create_all(engine)
    with engine.begin() as opened:
        yield opened
    engine.dispose()


def test_each_insert_returns_the_new_rows_id(connection: Connection) -> None:
    first = inserted_id(connection.execute(insert(NUMBERED).values(v=1)))
    second = inserted_id(connection.execute(insert(NUMBERED).values(v=2)))
    assert (first, second) == (1, 2)
    assert isinstance(first, int)


def test_a_key_the_driver_did_not_report_is_an_error(connection: Connection) -> None:
    with pytest.raises(
        RuntimeError, match=r"reported no single id for the inserted row: \(None,\)"
    ):
        inserted_id(connection.execute(insert(UNKEYED).values()))


def test_a_key_of_two_columns_is_not_one_id(connection: Connection) -> None:
    with pytest.raises(RuntimeError, match=r"reported no single id for the inserted row: \(1, 2\)"):
        inserted_id(connection.execute(insert(PAIRED).values(a=1, b=2)))
