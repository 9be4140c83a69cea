"""The ``Store``: open (and migrate) the database, write results in batches, read history.

SQLite is the default (``sqlite:///.upkeep/upkeep.db``, relative to the config file),
opened in WAL mode with ``synchronous=NORMAL`` so readers never block the writer and a
batch costs one fsync at checkpoint rather than one per row. PostgreSQL
(``postgresql://…``) is for a store shared by several nodes; migrations there run under
an advisory lock so two nodes starting at once don't race, and under a file lock beside
the database for SQLite, so two commands opening a new store at once don't either.

A PostgreSQL store lives in a schema of its own (``upkeep`` unless configured): every
connection's ``search_path`` is that schema alone, so the tables, Alembic's
``alembic_version`` and every query land there without naming it, and the advisory lock
keys include it (``locks.lock_key``). A store an earlier version made in ``public`` is
moved into the schema the first time this version opens it (``_adopt_public_store``).

``check_integrity`` says whether the store is sound (SQLite: ``PRAGMA quick_check``;
PostgreSQL: reachable, not a read-only standby, results writable by this role). While
the store cannot take results, ``store/spill.py`` keeps alerting going without it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
    ProgrammingError,
)

from upkeep.core.redaction import display_url
from upkeep.core.status import Status
from upkeep.core.text import one_line
from upkeep.store.locks import MIGRATION_LOCK_KEY, SCHEMA_OPTION, lock_key, serialise
from upkeep.store.rows import inserted_id
from upkeep.store.schema import check_results, checks, metadata, result_rollups

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from upkeep.core.results import CheckResult
    from upkeep.store.accounts import AccountStore
    from upkeep.store.alerts import AlertStore
    from upkeep.store.backups import BackupCatalog
    from upkeep.store.outbox import OutboxStore
    from upkeep.store.pings import PingLog
    from upkeep.store.remediations import RemediationLog
    from upkeep.store.runs import RunLog

logger = logging.getLogger(__name__)

SCHEMA_REVISION = "0009_remedy"
"""The Alembic head this code expects; a test asserts it matches the migration scripts."""
DEFAULT_SCHEMA = "upkeep"
"""The PostgreSQL schema a store lives in unless the config names another."""
LEGACY_SCHEMA = "public"
"""Where versions before the store had a schema of its own kept it."""
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A schema name as the config may give it: a plain, lower-case PostgreSQL identifier,
which means the same quoted or not (at most 63 bytes, PostgreSQL's limit)."""
SQLITE_BUSY_TIMEOUT_MS = 10_000
"""Named timeout: how long a SQLite writer waits for another process's write lock."""
POSTGRES_CONNECT_TIMEOUT_S = 10
"""Named timeout: how long connecting to a PostgreSQL store may take."""
CHECK_LOOKUP_CHUNK = 500
"""Check names per ``IN (...)`` lookup: well under every backend's bound-parameter limit."""


INTEGRITY_ERRORS_SHOWN = 5
"""At most this many lines of ``PRAGMA quick_check`` output are kept as the reason."""
CORRUPTION_MARKERS = ("database disk image is malformed", "file is not a database")
"""SQLite's words for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB)."""


class StoreError(Exception):
    """The store cannot be opened or used; the message says why (no secrets)."""


@dataclass(frozen=True)
class IntegrityReport:
    """The outcome of ``Store.check_integrity``: whether the store is sound, the problems
    found (empty when sound) and how long the check took."""

    ok: bool
    problems: tuple[str, ...]
    seconds: float
    unchecked: str | None = None
    """Why the check could not run at all (the store did not answer), else None; the
    store is then neither known sound nor known damaged."""

    @property
    def reason(self) -> str:
        """Return the problems as one line (empty when sound)."""
        return "; ".join(self.problems)


def error_reason(error: BaseException) -> str:
    """Given an exception from the store, return its cause in one line, without the SQL
    and parameters SQLAlchemy adds (the driver's first line, or the exception's own)."""
    cause = getattr(error, "orig", None) or error
    first_line = str(cause).strip().split("\n", 1)[0]
    return one_line(first_line) or type(cause).__name__


def is_corruption(error: BaseException) -> bool:
    """Given an exception from the store, return whether it says the file is damaged."""
    reason = error_reason(error).lower()
    return any(marker in reason for marker in CORRUPTION_MARKERS)


@dataclass(frozen=True)
class StoredResult:
    """A result read back from the store."""

    check: str
    target: str
    probe: str
    status: Status
    metrics: dict[str, Any]
    message: str
    duration_ms: float
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the result as ``upkeep history --json`` and ``GET /api/checks/{name}/history``
        show it (the shape of a fresh result's ``CheckResult.to_json``)."""
        return {
            "check": self.check,
            "target": self.target,
            "status": self.status.label,
            "metrics": self.metrics,
            "message": self.message,
            "duration_ms": round(self.duration_ms, 3),
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True)
class PruneReport:
    """What a retention pass did."""

    results_rolled_up: int
    results_deleted: int
    rollups_deleted: int


def schema_problem(schema: str) -> str | None:
    """Given a schema name from the config, return why it cannot be a store's schema, or
    None if it can."""
    if not SCHEMA_NAME.fullmatch(schema):
        return (
            f"{schema!r} is not a plain schema name: lower-case letters, digits and _, "
            "not starting with a digit, at most 63 characters"
        )
    if schema.startswith("pg_"):
        return f"{schema!r} starts with pg_, which PostgreSQL keeps for its own schemas"
    return None


def url_sets_search_path(url: str) -> bool:
    """Given a store URL, return whether its ``options`` query parameter sets PostgreSQL's
    ``search_path`` (the schema is configured as ``store.schema`` instead: two ways of
    saying it could disagree, and the one in the URL would be silently overridden)."""
    from urllib.parse import parse_qs, urlsplit

    query = parse_qs(urlsplit(url).query)
    return any("search_path" in value.lower() for value in query.get("options", []))


def normalise_url(url: str, base_dir: Path) -> str:
    """Given a store URL from the config, return a SQLAlchemy URL.

    A relative SQLite path is resolved against ``base_dir`` (the config's directory) so the
    store is the same wherever upkeep is started from; ``postgresql://`` selects psycopg 3.
    """
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url.removeprefix("sqlite:///")
        if relative and relative != ":memory:":
            return f"sqlite:///{(base_dir / relative).resolve()}"
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _set_search_path(schema: str, dbapi_connection: Any, _record: Any) -> None:
    """On each new PostgreSQL connection, make ``schema`` the only schema names resolve in
    (``pg_catalog`` is always searched too), outside any transaction so it lasts the
    session. A ``connect`` event rather than ``options=-csearch_path=…`` in the startup
    packet: it keeps whatever ``options`` the URL has, and works through poolers (such as
    PgBouncer) that refuse startup options."""
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{schema}"')
    finally:
        dbapi_connection.autocommit = autocommit


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """Results history over one SQLAlchemy engine; safe to share between threads."""

    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema
        """The PostgreSQL schema the store lives in; None for SQLite."""
        self._check_ids: dict[str, tuple[int, str, str, Any]] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, url: str, base_dir: Path | None = None, *, schema: str = DEFAULT_SCHEMA) -> Store:
        """Given a store URL (and, for PostgreSQL, the schema it lives in; SQLite has none
        and ignores it), return an open store with its tables at the current revision.

        Raise ``StoreError`` if the database cannot be reached or migrated, the schema name
        is not a plain identifier, or the URL sets ``search_path`` itself.
        """
        full_url = normalise_url(url, base_dir or Path.cwd())
        # Any PostgreSQL driver a URL may name, not only the psycopg the config's selects.
        postgres = full_url.split("://", 1)[0].split("+", 1)[0] == "postgresql"
        if postgres:
            problem = schema_problem(schema)
            if problem is None and url_sets_search_path(full_url):
                problem = (
                    "its URL sets search_path in options; give the schema as store.schema instead"
                )
            if problem is not None:
                raise StoreError(f"cannot open store {display_url(full_url)}: {problem}")
        connect_args: dict[str, Any] = {}
        if full_url.startswith("sqlite:///"):
            database = Path(full_url.removeprefix("sqlite:///"))
            try:
                database.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(
                    f"cannot open store {display_url(full_url)}: "
                    f"{error.strerror or error}: {database.parent}"
                ) from None
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
        elif postgres:
            connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_S
        try:
            engine = create_engine(
                full_url,
                connect_args=connect_args,
                pool_pre_ping=True,
                execution_options={SCHEMA_OPTION: schema} if postgres else {},
            )
        except NoSuchModuleError:
            raise StoreError(
                f"cannot open store {display_url(full_url)}: expected sqlite:/// or postgresql://"
            ) from None
        except (ArgumentError, ValueError):
            # Not the error's text: a URL that does not parse (an unencoded "/" or "#" in
            # the password) makes it quote a piece of the password as the port.
            raise StoreError(
                f"cannot open store {display_url(full_url)}: not a valid database URL; "
                "percent-encode special characters in the user name and password"
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        elif engine.dialect.name == "postgresql":
            # insert=True: before SQLAlchemy's own first-connect set-up, which reads the
            # default schema (Alembic and reflection go by it).
            event.listen(
                engine, "connect", functools.partial(_set_search_path, schema), insert=True
            )
        store = cls(engine, schema if engine.dialect.name == "postgresql" else None)
        try:
            store.migrate()
        except StoreError as error:  # says why itself (the schema could not be created)
            engine.dispose()
            raise StoreError(f"cannot open store {display_url(full_url)}: {error}") from None
        except (DBAPIError, OSError) as error:
            # DBAPIError: unreachable, read-only, full or damaged ("database disk image is
            # malformed" is a DatabaseError, not an OperationalError); OSError: the lock file.
            engine.dispose()
            # Not engine.url: SQLAlchemy masks only the userinfo password, and a store URL
            # may carry ``?password=`` in its query.
            raise StoreError(
                f"cannot open store {display_url(full_url)}: {error_reason(error)}"
            ) from None
        return store

    def _current_revision(self, connection: Connection) -> str | None:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except (OperationalError, ProgrammingError) as error:
            if is_corruption(error):
                raise  # a damaged file is not a new one: migrating it would hide the damage
            connection.rollback()
            return None

    def migrate(self) -> None:
        """Bring the schema to the head revision; a no-op (without importing Alembic) if there.

        On SQLite the first look happens under the migration lock too: a process's first
        connection switches a new database to WAL, and several switching at once while
        another creates the tables get "database is locked" without waiting for it.
        """
        with self._sqlite_migration_lock():
            with self.engine.connect() as connection:
                if self._current_revision(connection) == SCHEMA_REVISION:
                    return
            self._upgrade()

    def _upgrade(self) -> None:
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        # Alembic reads the current revision again inside the lock, so whoever comes second
        # finds the schema at head and changes nothing.
        with self.engine.begin() as connection:
            if self.schema is not None:
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": lock_key(MIGRATION_LOCK_KEY, self.schema)},
                )
                self._prepare_schema(connection, self.schema)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _prepare_schema(self, connection: Connection, schema: str) -> None:
        """Given the migration's transaction (holding the migration lock), create the
        store's schema if it is missing and move in a store an earlier version left in
        ``public``. Existence is looked up first: ``CREATE SCHEMA IF NOT EXISTS`` needs
        the right to create schemas even when the schema is there."""
        exists = connection.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :schema"), {"schema": schema}
        ).first()
        if exists is None:
            try:
                connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            except ProgrammingError as error:  # InsufficientPrivilege: may not create schemas
                raise StoreError(
                    f"{error_reason(error)}: create the schema {schema} for this role "
                    f'(CREATE SCHEMA {schema} AUTHORIZATION "{connection.engine.url.username}"), '
                    "or name one it may use as store.schema"
                ) from None
        # SQLAlchemy read the default schema at the first connection, when there may have
        # been none to be current yet; Alembic and reflection go by it.
        connection.dialect.default_schema_name = schema
        if schema != LEGACY_SCHEMA:
            self._adopt_public_store(connection, schema)

    def _adopt_public_store(self, connection: Connection, schema: str) -> None:
        """Given the migration's transaction, move a store an earlier version made in
        ``public`` (its ``alembic_version`` and our tables there, none in ``schema``) into
        ``schema``, in this one transaction: ``ALTER TABLE … SET SCHEMA`` takes a table's
        indexes, constraints and owned sequences along and keeps its rows. Tables of
        others in ``public`` stay. Also under the key earlier versions migrated under, so
        one of them migrating ``public`` at this moment finishes first."""

        def tables_in(namespace: str) -> set[str]:
            return set(
                connection.execute(
                    text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                    {"schema": namespace},
                ).scalars()
            )

        if "alembic_version" not in tables_in(LEGACY_SCHEMA):
            return
        if "alembic_version" in tables_in(schema):
            logger.warning(
                "the store's schema %s and the schema public both hold an upkeep store; "
                "using %s and leaving public as it is",
                schema,
                schema,
            )
            return
        connection.execute(
            text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key(MIGRATION_LOCK_KEY, None)}
        )
        in_public = tables_in(LEGACY_SCHEMA)  # again: it may have moved while we waited
        if "alembic_version" not in in_public:
            return
        ours = sorted(in_public & {*metadata.tables, "alembic_version"})
        for table in ours:
            connection.execute(text(f'ALTER TABLE public."{table}" SET SCHEMA "{schema}"'))
        logger.warning(
            "moved the store from the schema public to %s (%d tables); "
            "every upkeep using this store must now be this version or later",
            schema,
            len(ours),
        )

    @contextlib.contextmanager
    def _sqlite_migration_lock(self) -> Iterator[None]:
        """Hold an exclusive lock on ``<database>.migrate-lock`` while the block runs (for a
        SQLite file; otherwise do nothing).

        Two processes opening a brand-new SQLite store at once would otherwise both create
        the tables, and one fail with "table already exists": SQLite has no advisory lock,
        and Alembic does not run SQLite DDL in one transaction. An ``flock`` is released by
        the kernel when its holder exits, so a crash never leaves the store locked.

        A store that cannot be written (a read-only mount, an immutable file, a full disk
        that cannot take the lock file) is opened without creating the lock: an existing
        lock file is locked through a read-only descriptor, and without one nothing is
        locked; such a store cannot be migrated anyway, and its current revision can still
        be read, so opening it fails on the store itself, not on the lock.
        """
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not database or database == ":memory:" or database.startswith("file:"):
            yield
            return
        import fcntl
        import os

        path = f"{database}.migrate-lock"
        descriptor: int | None = None
        for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
            try:
                descriptor = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
                break
            except OSError:
                continue
        if descriptor is None:
            yield
            return
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    @functools.cached_property
    def runs(self) -> RunLog:
        """Return the run log (runs, steps, one-off windows, schedule marks, instances)."""
        from upkeep.store.runs import RunLog

        return RunLog(self.engine, self._lock)

    @functools.cached_property
    def remediations(self) -> RemediationLog:
        """Return the remediation triggers (alert firings that asked for a runbook)."""
        from upkeep.store.remediations import RemediationLog

        return RemediationLog(self.engine, self._lock)

    @functools.cached_property
    def outbox(self) -> OutboxStore:
        """Return the outbox (notifications waiting for, or done with, delivery)."""
        from upkeep.store.outbox import OutboxStore

        return OutboxStore(self.engine, self._lock)

    @functools.cached_property
    def alerts(self) -> AlertStore:
        """Return the alerting tables (check states, alerts, events, silences)."""
        from upkeep.store.alerts import AlertStore

        return AlertStore(self.engine, self._lock)

    @functools.cached_property
    def backups(self) -> BackupCatalog:
        """Return the backup catalog (attempts, verifications, restores, drills)."""
        from upkeep.store.backups import BackupCatalog

        return BackupCatalog(self.engine, self._lock)

    @functools.cached_property
    def accounts(self) -> AccountStore:
        """Return the accounts (users, sessions, stored API tokens)."""
        from upkeep.store.accounts import AccountStore

        return AccountStore(self.engine, self._lock)

    @functools.cached_property
    def pings(self) -> PingLog:
        """Return the pings of heartbeats (and when each heartbeat was first seen)."""
        from upkeep.store.pings import PingLog

        return PingLog(self.engine, self._lock)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    def forget_check_ids(self) -> None:
        """Drop the check ids cached by earlier writes: the checks table was emptied or
        refilled by someone else (the spill between two episodes), so a cached id may name
        no check, or another one."""
        with self._lock:
            self._check_ids.clear()

    def _check_id(self, connection: Connection, result: CheckResult) -> int:
        labels = dict(result.labels)
        cached = self._check_ids.get(result.check)
        if cached is not None:
            check_id, target, probe, known_labels = cached
            if (target, probe, known_labels) == (result.target, result.probe, labels):
                return check_id
            connection.execute(
                update(checks)
                .where(checks.c.id == check_id)
                .values(target=result.target, probe=result.probe, labels=labels)
            )
            self._check_ids[result.check] = (check_id, result.target, result.probe, labels)
            return check_id
        row = connection.execute(
            select(checks.c.id, checks.c.target, checks.c.probe, checks.c.labels).where(
                checks.c.name == result.check
            )
        ).first()
        if row is None:
            try:
                with connection.begin_nested():
                    inserted = connection.execute(
                        insert(checks).values(
                            name=result.check,
                            target=result.target,
                            probe=result.probe,
                            labels=labels,
                            first_seen=result.at,
                        )
                    )
                    check_id = inserted_id(inserted)
            except IntegrityError:
                # Another process registered the same check a moment ago; use its row.
                check_id = connection.execute(
                    select(checks.c.id).where(checks.c.name == result.check)
                ).scalar_one()
            self._check_ids[result.check] = (check_id, result.target, result.probe, labels)
            return int(check_id)
        self._check_ids[result.check] = (row.id, row.target, row.probe, row.labels)
        return self._check_id(connection, result)

    def _register_checks(self, connection: Connection, results: Sequence[CheckResult]) -> None:
        """Given results, put every check they name that is not cached yet into the cache.

        Known checks are read in one query per chunk and unknown ones inserted in one batch,
        so the first write of N new checks costs a few statements rather than 3N; a check
        another process registers at the same moment falls back to ``_check_id``'s path.
        """
        first: dict[str, CheckResult] = {}
        for result in results:
            if result.check not in self._check_ids and result.check not in first:
                first[result.check] = result
        if not first:
            return
        self._load_check_ids(connection, list(first))
        new = [result for name, result in first.items() if name not in self._check_ids]
        if not new:
            return
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(checks),
                    [
                        {
                            "name": result.check,
                            "target": result.target,
                            "probe": result.probe,
                            "labels": dict(result.labels),
                            "first_seen": result.at,
                        }
                        for result in new
                    ],
                )
        except IntegrityError:
            pass  # some were registered by another process meanwhile: ``_check_id`` sorts them out
        self._load_check_ids(connection, [result.check for result in new])

    def _load_check_ids(self, connection: Connection, names: Sequence[str]) -> None:
        columns = (checks.c.id, checks.c.name, checks.c.target, checks.c.probe, checks.c.labels)
        for chunk in iter_chunks(names, CHECK_LOOKUP_CHUNK):
            for row in connection.execute(select(*columns).where(checks.c.name.in_(chunk))):
                self._check_ids[row.name] = (row.id, row.target, row.probe, row.labels)

    def write_results(
        self,
        results: Sequence[CheckResult],
        run_id: int | None = None,
        *,
        then: Callable[[Connection], None] | None = None,
        lock_key: int | None = None,
    ) -> int:
        """Given results (and the run they belong to, if any), store them all in one
        transaction and return how many were written.

        ``then`` runs inside that transaction after the insert (the alert manager's work,
        committed with the results or not at all); ``lock_key`` takes that cross-process
        lock at the transaction's start (see ``locks.serialise``).
        """
        if not results:
            return 0
        with self._lock:
            try:
                with self.engine.begin() as connection:
                    if lock_key is not None:
                        serialise(connection, lock_key)
                    written = self.insert_results(connection, results, [run_id] * len(results))
                    if then is not None:
                        then(connection)
            except BaseException:
                # The cache may name rows this rolled-back transaction inserted or changed.
                self._check_ids.clear()
                raise
        return written

    def insert_results(
        self,
        connection: Connection,
        results: Sequence[CheckResult],
        run_ids: Sequence[int | None],
    ) -> int:
        """Given an open transaction, results and the run of each (None: none), insert
        them (registering their checks) and return how many were inserted.

        The caller holds ``self._lock`` and clears the check cache if its transaction
        fails (see ``write_results``).
        """
        if not results:
            return 0
        self._register_checks(connection, results)
        check_id = self._check_id
        rows = [
            {
                "check_id": check_id(connection, result),
                "at": result.at,
                "status": int(result.status),
                "duration_ms": result.duration_ms,
                "message": result.message,
                "metrics": result.metrics,
                "run_id": run_id,
            }
            for result, run_id in zip(results, run_ids, strict=True)
        ]
        connection.execute(insert(check_results), rows)
        return len(rows)

    @contextlib.contextmanager
    def transaction(self, lock_key: int | None = None) -> Iterator[Connection]:
        """Yield a connection in one write transaction (holding this store's thread lock,
        and ``lock_key``'s cross-process lock from its start when given), committed when
        the block ends cleanly; the check cache is dropped if it does not."""
        with self._lock:
            try:
                with self.engine.begin() as connection:
                    if lock_key is not None:
                        serialise(connection, lock_key)
                    yield connection
            except BaseException:
                self._check_ids.clear()
                raise

    def check_integrity(self) -> IntegrityReport:
        """Return whether the store is sound, and how long finding out took.

        SQLite: ``PRAGMA quick_check`` (every page and record is well formed; the indexes'
        contents are not compared with their tables, which ``integrity_check`` does at
        several times the cost). PostgreSQL, which keeps its own pages consistent: the
        server answers, is not a read-only standby, and lets this role write the results
        table. Raise nothing: an error saying the file is damaged is a problem found; any
        other error (the store does not answer) leaves it ``unchecked``.
        """
        started = time.perf_counter()
        problems: list[str] = []
        try:
            with self.engine.connect() as connection:
                if self.engine.dialect.name == "sqlite":
                    rows = connection.exec_driver_sql("PRAGMA quick_check").all()
                    found = [str(row[0]) for row in rows if str(row[0]).lower() != "ok"]
                    problems.extend(found[:INTEGRITY_ERRORS_SHOWN])
                    if len(found) > INTEGRITY_ERRORS_SHOWN:
                        problems.append(f"and {len(found) - INTEGRITY_ERRORS_SHOWN} more")
                elif self.engine.dialect.name == "postgresql":
                    if connection.execute(text("SELECT pg_is_in_recovery()")).scalar():
                        problems.append("the server is a read-only standby")
                    writable = connection.execute(
                        text(
                            "SELECT has_table_privilege(current_user, "
                            "CAST('check_results' AS regclass), 'INSERT')"
                        )
                    ).scalar()
                    if not writable:
                        problems.append("this role may not write the results table")
        except (DBAPIError, OSError) as error:
            if not is_corruption(error):
                return IntegrityReport(
                    True, (), time.perf_counter() - started, unchecked=error_reason(error)
                )
            problems.append(error_reason(error))
        return IntegrityReport(not problems, tuple(problems), time.perf_counter() - started)

    def history(
        self,
        check: str | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
    ) -> list[StoredResult]:
        """Given a check name (or None for all) and a period, return results newest first."""
        query = (
            select(
                checks.c.name,
                checks.c.target,
                checks.c.probe,
                check_results.c.status,
                check_results.c.metrics,
                check_results.c.message,
                check_results.c.duration_ms,
                check_results.c.at,
            )
            .join(checks, checks.c.id == check_results.c.check_id)
            .order_by(check_results.c.at.desc(), check_results.c.id.desc())
            .limit(limit)
        )
        if check is not None:
            query = query.where(checks.c.name == check)
        if since is not None:
            query = query.where(check_results.c.at >= since)
        if until is not None:
            query = query.where(check_results.c.at < until)
        with self.engine.connect() as connection:
            return [
                StoredResult(
                    check=row.name,
                    target=row.target,
                    probe=row.probe,
                    status=Status(row.status),
                    metrics=row.metrics,
                    message=row.message,
                    duration_ms=row.duration_ms,
                    at=row.at,
                )
                for row in connection.execute(query)
            ]

    def latest(self) -> dict[str, StoredResult]:
        """Return each check's newest stored result, by check name, in one query (the
        ``(check_id, at)`` index finds each check's newest time)."""
        newest = (
            select(check_results.c.check_id, func.max(check_results.c.at).label("at"))
            .group_by(check_results.c.check_id)
            .subquery()
        )
        query = (
            select(
                checks.c.name,
                checks.c.target,
                checks.c.probe,
                check_results.c.status,
                check_results.c.metrics,
                check_results.c.message,
                check_results.c.duration_ms,
                check_results.c.at,
            )
            .join(checks, checks.c.id == check_results.c.check_id)
            .join(
                newest,
                (newest.c.check_id == check_results.c.check_id)
                & (newest.c.at == check_results.c.at),
            )
            .order_by(check_results.c.id)
        )
        found: dict[str, StoredResult] = {}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                # Two results of one check at the same instant: the one stored last wins.
                found[row.name] = StoredResult(
                    check=row.name,
                    target=row.target,
                    probe=row.probe,
                    status=Status(row.status),
                    metrics=row.metrics,
                    message=row.message,
                    duration_ms=row.duration_ms,
                    at=row.at,
                )
        return found

    def known_checks(self) -> list[str]:
        """Return the names of every check that has stored results."""
        with self.engine.connect() as connection:
            return list(connection.execute(select(checks.c.name).order_by(checks.c.name)).scalars())

    def count_results(self) -> int:
        """Return how many raw results are stored."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(select(func.count()).select_from(check_results)).scalar_one()
            )

    def prune(
        self,
        *,
        keep_results: timedelta,
        keep_rollups: timedelta,
        now: datetime | None = None,
        batch_hours: int = 24,
    ) -> PruneReport:
        """Given retention periods, roll up raw results older than ``keep_results`` into
        hourly buckets, delete those raw rows, and delete rollups older than ``keep_rollups``.

        Work is done a day of data per transaction so a large backlog never holds a long
        write lock; rollups are merged, so pruning twice never double-counts.
        """
        moment = now or datetime.now(UTC)
        cutoff = (moment - keep_results).replace(minute=0, second=0, microsecond=0)
        rolled = deleted = 0
        while True:
            with self._lock, self.engine.begin() as connection:
                oldest = connection.execute(
                    select(func.min(check_results.c.at)).where(check_results.c.at < cutoff)
                ).scalar()
                if oldest is None:
                    break
                oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
                start = oldest.replace(minute=0, second=0, microsecond=0)
                end = min(cutoff, start + timedelta(hours=batch_hours))
                rows = connection.execute(
                    select(
                        check_results.c.check_id,
                        check_results.c.at,
                        check_results.c.status,
                        check_results.c.duration_ms,
                        check_results.c.metrics,
                    ).where(check_results.c.at >= start, check_results.c.at < end)
                ).all()
                self._merge_rollups(connection, _hourly_buckets(rows))
                rolled += len(rows)
                deleted += connection.execute(
                    delete(check_results).where(
                        check_results.c.at >= start, check_results.c.at < end
                    )
                ).rowcount
        with self._lock, self.engine.begin() as connection:
            rollups_deleted = connection.execute(
                delete(result_rollups).where(result_rollups.c.bucket_start < moment - keep_rollups)
            ).rowcount
        return PruneReport(rolled, deleted, rollups_deleted)

    def _merge_rollups(
        self, connection: Connection, buckets: dict[tuple[int, datetime], _Bucket]
    ) -> None:
        for (check_id, bucket_start), bucket in buckets.items():
            key = (
                (result_rollups.c.check_id == check_id)
                & (result_rollups.c.resolution == "1h")
                & (result_rollups.c.bucket_start == bucket_start)
            )
            existing = connection.execute(select(result_rollups).where(key)).first()
            if existing is not None:
                bucket.absorb_row(existing._mapping)
                connection.execute(delete(result_rollups).where(key))
            connection.execute(
                insert(result_rollups).values(
                    check_id=check_id, resolution="1h", bucket_start=bucket_start, **bucket.values()
                )
            )

    def rollups(self, check: str, resolution: str = "1h") -> list[dict[str, Any]]:
        """Given a check name, return its rollup rows oldest first."""
        query = (
            select(result_rollups)
            .join(checks, checks.c.id == result_rollups.c.check_id)
            .where(checks.c.name == check, result_rollups.c.resolution == resolution)
            .order_by(result_rollups.c.bucket_start)
        )
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]


class _Bucket:
    """Aggregates of one check over one hour."""

    def __init__(self) -> None:
        self.counts = [0, 0, 0, 0]
        self.duration_sum = 0.0
        self.duration_max = 0.0
        self.metrics: dict[str, list[float]] = {}  # name -> [min, sum, max, count]

    @property
    def results(self) -> int:
        return sum(self.counts)

    def add(self, status: int, duration_ms: float, metrics: dict[str, Any]) -> None:
        self.counts[status] += 1
        self.duration_sum += duration_ms
        self.duration_max = max(self.duration_max, duration_ms)
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            stats = self.metrics.get(name)
            if stats is None:
                self.metrics[name] = [value, value, value, 1]
            else:
                stats[0] = min(stats[0], value)
                stats[1] += value
                stats[2] = max(stats[2], value)
                stats[3] += 1

    def absorb_row(self, row: Any) -> None:
        for index, name in enumerate(("ok", "warning", "critical", "unknown")):
            self.counts[index] += row[name]
        self.duration_sum += row["duration_ms_avg"] * row["results"]
        self.duration_max = max(self.duration_max, row["duration_ms_max"])
        for name, stored in row["metrics"].items():
            count = stored["count"]
            mine = self.metrics.get(name)
            if mine is None:
                self.metrics[name] = [stored["min"], stored["avg"] * count, stored["max"], count]
            else:
                mine[0] = min(mine[0], stored["min"])
                mine[1] += stored["avg"] * count
                mine[2] = max(mine[2], stored["max"])
                mine[3] += count

    def values(self) -> dict[str, Any]:
        ok, warning, critical, unknown = self.counts
        return {
            "results": self.results,
            "ok": ok,
            "warning": warning,
            "critical": critical,
            "unknown": unknown,
            "duration_ms_avg": self.duration_sum / self.results if self.results else 0.0,
            "duration_ms_max": self.duration_max,
            "metrics": {
                name: {"min": low, "avg": total / count, "max": high, "count": count}
                for name, (low, total, high, count) in self.metrics.items()
            },
        }


def _hourly_buckets(rows: Sequence[Any]) -> dict[tuple[int, datetime], _Bucket]:
    buckets: dict[tuple[int, datetime], _Bucket] = defaultdict(_Bucket)
    for row in rows:
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
        buckets[(row.check_id, at.replace(minute=0, second=0, microsecond=0))].add(
            row.status, row.duration_ms, row.metrics
        )
    return buckets


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Given a sequence and a chunk size, yield consecutive slices of at most that size."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
