"""A PostgreSQL store in a schema of its own: where its tables land, how a store an
earlier version kept in ``public`` is moved, and locks that are per store, not per
database. Each test has a database of its own: ``public`` of the shared ``test`` database
is no place for a store other tests could see."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.engine.leader import PostgresLeadership
from upkeep.store.locks import ALERTING_LOCK_KEY, serialise
from upkeep.store.schema import metadata
from upkeep.store.store import DEFAULT_SCHEMA, SCHEMA_REVISION, Store, StoreError, normalise_url

OUR_TABLES = {*metadata.tables, "alembic_version"}


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[str]:
    """Yield the URL of a new, empty database (dropped afterwards)."""
    name = f"upkeep_schema_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_dsn.split('?', 1)[0].rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables_by_schema(url: str) -> dict[str, set[str]]:
    """Given a database, return its user tables by schema."""
    found: dict[str, set[str]] = {}
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT schemaname, tablename FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    for schema, table in rows:
        found.setdefault(schema, set()).add(table)
    return found


def result(check: str, at: datetime, status: Status = Status.OK) -> CheckResult:
    return CheckResult(check, "box", "host.disk", status, {"used_percent": 5.0}, "", 1.0, at)


def old_layout_store(url: str, tmp_path: Path, revision: str = "head") -> None:
    """Make the store an earlier version made: Alembic's migrations run with the server's
    default search_path, so ``alembic_version`` and the tables are in ``public``."""
    from alembic import command
    from alembic.config import Config

    import upkeep.store.store as module

    engine = create_engine(normalise_url(url, tmp_path))
    config = Config()
    config.set_main_option("script_location", str(Path(module.__file__).parent / "migrations"))
    try:
        with engine.begin() as connection:
            assert connection.execute(text("SELECT current_schema()")).scalar() == "public"
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def test_a_new_store_lives_in_its_schema_and_nothing_lands_in_public(
    database: str, tmp_path: Path
) -> None:
    store = Store.open(database, tmp_path)
    try:
        assert store.schema == DEFAULT_SCHEMA
        store.write_results([result("disk", datetime.now(UTC))])
        with store.engine.connect() as connection:
            revision = connection.execute(
                text(f"SELECT version_num FROM {DEFAULT_SCHEMA}.alembic_version")
            ).scalar()
        assert revision == SCHEMA_REVISION
        assert store.check_integrity().ok
    finally:
        store.close()
    assert tables_by_schema(database) == {DEFAULT_SCHEMA: OUR_TABLES}


def test_a_store_in_public_is_moved_to_its_schema_with_its_rows_once(
    database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old_layout_store(database, tmp_path)
    with psycopg.connect(database, autocommit=True) as connection:
        # Someone else's table in public stays where it is.
        connection.execute("CREATE TABLE public.app_users (id serial PRIMARY KEY, name text)")
    # What the earlier version wrote: results, a run; the schema public is the store.
    now = datetime.now(UTC).replace(microsecond=0)
    old = Store.open(database, tmp_path, schema="public")
    try:
        old.write_results([result("disk", now - timedelta(minutes=m)) for m in range(3)])
        run_id = old.runs.start_run(
            runbook="daily", trigger="cli", owner="old", steps=[("one", "command")]
        )
    finally:
        old.close()
    assert tables_by_schema(database)["public"] >= OUR_TABLES

    with caplog.at_level(logging.WARNING, logger="upkeep.store.store"):
        store = Store.open(database, tmp_path)
        try:
            assert [row.at for row in store.history("disk")] == [
                now - timedelta(minutes=m) for m in range(3)
            ]
            assert run_id is not None and store.runs.get_run(run_id) is not None
            # The sequences moved along: new rows get new ids, not the old ones again.
            store.write_results([result("disk", now + timedelta(minutes=1))])
            again = store.runs.start_run(runbook="daily", trigger="cli", owner="new", steps=[])
            assert again is not None and again > run_id
            assert len(store.history("disk")) == 4
        finally:
            store.close()
        Store.open(database, tmp_path).close()  # a second open moves nothing
    moved = [record for record in caplog.records if "moved the store" in record.getMessage()]
    assert len(moved) == 1
    assert "public to upkeep" in moved[0].getMessage()
    assert tables_by_schema(database) == {DEFAULT_SCHEMA: OUR_TABLES, "public": {"app_users"}}


def test_nodes_opening_a_store_in_public_at_once_move_it_once(
    database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Several nodes upgraded together start at once: one moves the store, the others
    wait for the migration lock and find it moved; none fails, none creates a second."""
    old_layout_store(database, tmp_path)
    start = threading.Barrier(4)
    failures: list[BaseException] = []

    def open_and_close() -> None:
        start.wait(30)
        try:
            Store.open(database, tmp_path).close()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with caplog.at_level(logging.WARNING, logger="upkeep.store.store"):
        nodes = [threading.Thread(target=open_and_close) for _ in range(4)]
        for node in nodes:
            node.start()
        for node in nodes:
            node.join(60)
    assert failures == []
    assert sum("moved the store" in record.getMessage() for record in caplog.records) == 1
    assert tables_by_schema(database) == {DEFAULT_SCHEMA: OUR_TABLES}


def test_a_store_in_public_at_an_older_revision_is_moved_then_migrated(
    database: str, tmp_path: Path
) -> None:
    old_layout_store(database, tmp_path, revision="0002")
    assert "alerts" not in tables_by_schema(database)["public"]
    store = Store.open(database, tmp_path, schema="ops")
    try:
        store.write_results([result("disk", datetime.now(UTC), Status.CRITICAL)])
        with store.engine.connect() as connection:
            assert connection.execute(text("SELECT current_schema()")).scalar() == "ops"
    finally:
        store.close()
    assert tables_by_schema(database) == {"ops": OUR_TABLES}


def test_two_stores_in_one_database_keep_their_rows_apart(database: str, tmp_path: Path) -> None:
    first = Store.open(database, tmp_path, schema="tenant_a")
    second = Store.open(database, tmp_path, schema="tenant_b")
    try:
        first.write_results([result("only-in-a", datetime.now(UTC))])
        assert first.known_checks() == ["only-in-a"]
        assert second.known_checks() == []
    finally:
        first.close()
        second.close()


async def test_stores_in_two_schemas_each_have_a_leader(database: str, tmp_path: Path) -> None:
    """The leader's advisory lock was one per database: a daemon of another store in the
    same database (another schema) could never lead."""
    first = Store.open(database, tmp_path, schema="tenant_a")
    first_again = Store.open(database, tmp_path, schema="tenant_a")
    second = Store.open(database, tmp_path, schema="tenant_b")
    leaders = [PostgresLeadership(store) for store in (first, first_again, second)]
    try:
        assert await leaders[0].try_acquire()
        assert not await leaders[1].try_acquire()  # the same store: one leader
        assert await leaders[2].try_acquire()  # another store: its own leader
    finally:
        for leader in leaders:
            await leader.release()
        for store in (first, first_again, second):
            store.close()


def take_alerting_lock(store: Store, timeout: str) -> None:
    """Given a store, take its alerting lock in a transaction, waiting at most ``timeout``."""
    with store.engine.begin() as connection:
        connection.execute(text(f"SET LOCAL lock_timeout = '{timeout}'"))
        serialise(connection, ALERTING_LOCK_KEY)


def test_transaction_locks_are_per_store(database: str, tmp_path: Path) -> None:
    """Alerting's lock held on one store blocks that store's other processes, and no
    other store's."""
    first = Store.open(database, tmp_path, schema="tenant_a")
    first_again = Store.open(database, tmp_path, schema="tenant_a")
    second = Store.open(database, tmp_path, schema="tenant_b")
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with first.transaction(ALERTING_LOCK_KEY):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        take_alerting_lock(second, "5s")  # not waiting for tenant_a's holder
        with pytest.raises(OperationalError, match="lock timeout"):
            take_alerting_lock(first_again, "200ms")
    finally:
        release.set()
        holder.join()
        for store in (first, first_again, second):
            store.close()


def test_a_role_that_may_not_create_the_schema_is_told_so(database: str, tmp_path: Path) -> None:
    role = f"upkeep_noschema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        url = database.replace("postgres@", f"{role}@", 1)
        with pytest.raises(StoreError, match="permission denied for database") as raised:
            Store.open(url, tmp_path)
        assert "create the schema upkeep" in str(raised.value)
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA upkeep AUTHORIZATION "{role}"')
        Store.open(url, tmp_path).close()  # now it may: the schema is there, and its own
        assert tables_by_schema(database) == {DEFAULT_SCHEMA: OUR_TABLES}
    finally:
        with psycopg.connect(database, autocommit=True) as admin:
            admin.execute("DROP SCHEMA IF EXISTS upkeep CASCADE")
            admin.execute(f'DROP ROLE "{role}"')


@pytest.mark.parametrize(
    ("schema", "url_suffix", "expected"),
    [
        ("Upkeep", "", "not a plain schema name"),
        ("pg_upkeep", "", "starts with pg_"),
        ("upkeep", "?options=-csearch_path%3Dmine", "sets search_path in options"),
    ],
)
def test_a_schema_that_cannot_be_used_is_refused_before_connecting(
    schema: str, url_suffix: str, expected: str, tmp_path: Path
) -> None:
    # Port 1: nothing listens; the refusal comes before any connection attempt.
    with pytest.raises(StoreError, match=expected):
        Store.open(f"postgresql://u:pw@127.0.0.1:1/db{url_suffix}", tmp_path, schema=schema)


def test_sqlite_has_no_schema_and_ignores_one(tmp_path: Path) -> None:
    store = Store.open("sqlite:///store.db", tmp_path, schema="Not Even Valid")
    try:
        assert store.schema is None
        store.write_results([result("disk", datetime.now(UTC))])
    finally:
        store.close()
