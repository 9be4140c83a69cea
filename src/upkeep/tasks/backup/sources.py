"""What can be backed up, and how each kind is dumped, restored into a scratch copy and
compared with its manifest.

Every kind honours ``Source``: how a ``backups.sources`` entry names it (``config_key``, or
the ``target_kind`` of the target it backs up), the rules ``validate`` adds to the model's,
how it is built from its entry (``from_config``), and the operations: ``dump``,
``scratch_restore``, ``prepare_restore`` and ``restore``. ``registry.SOURCE_KINDS`` is the
one table of them.

Every source dumps to one byte stream (the repository compresses and stores it) and
records in the manifest what a restore must reproduce: row counts per table for
databases, keys per database for Redis, path/size/sha256 per file for files. Passwords
never reach an argv (``ps`` shows those): libpq and the MariaDB client take them from the
environment.

* PostgreSQL — ``pg_dump`` in custom format (``-Z 0``: zstd compresses better and on more
  cores) or directory format with ``jobs`` parallel workers (tarred into the stream). The
  dump runs in a snapshot exported from a repeatable-read transaction, and the row counts
  are taken in that same snapshot, so they are exactly the dump's.
* MySQL/MariaDB — ``mariadb-dump --single-transaction`` of one database (no ``USE``, so a
  restore can go to any database); row counts from a consistent-snapshot transaction
  opened just before.
* Redis — ``redis-cli --rdb``: the server forks and streams an RDB snapshot, as it does to
  a replica, without blocking; keys per database from ``INFO keyspace``.
* SQLite — the online backup API into a scratch copy (consistent while others write),
  whose row counts are recorded, then streamed.
* Files — a tar stream of the paths (sizes and sha256 per file recorded while reading),
  read and restored through directory descriptors (``archive``): links stored and
  restored as links, a restore writes only under the source's configured paths.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sqlite3
import stat
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from upkeep.io.process import ProcessFailed, StreamedProcess
from upkeep.io.safefs import Directory, UnsafeFileError, open_regular
from upkeep.store.repository import Manifest
from upkeep.store.store import DEFAULT_SCHEMA
from upkeep.tasks.backup.archive import (
    Member,
    extract,
    install,
    normalised_roots,
    place,
    plan_install,
    tar_stream,
)

if TYPE_CHECKING:
    from upkeep.probes.base import TargetBase
    from upkeep.tasks.backup.config import BackupSourceConfig

CHUNK_BYTES = 1 << 20
DUMP_TIMEOUT_S = 6 * 3600.0
"""Named default: a dump or restore command is killed after this long."""
CONNECT_TIMEOUT_S = 10
"""Named default: connecting to a database to count rows or make a scratch database."""
SCRATCH_PREFIX = "upkeep_scratch_"


class SourceError(Exception):
    """A dump or restore failed; the message says which step and why (never a password)."""


@dataclass
class Dump:
    """A running dump: its byte stream, then what the manifest should add."""

    chunks: Iterable[bytes]
    finish: Callable[[], dict[str, Any]]


@dataclass
class Restored:
    """What a scratch restore holds, to compare with the manifest."""

    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    location: str = ""
    run_query: Callable[[str], list[tuple[Any, ...]]] | None = None


@dataclass(frozen=True)
class Restoration:
    """What a restore over a source did: loaded the backup into the source, or (a kind whose
    ``loads_in_place`` is False) wrote it out for someone to load by hand."""

    message: str
    """What was done (loaded), or how to load what was written (not loaded)."""
    written_to: Path | None = None
    """Where the backup was written, for a restore that did not load it; None if the source
    now holds the backup."""

    @property
    def loaded(self) -> bool:
        """Return whether the source now holds the backup."""
        return self.written_to is None


@dataclass(frozen=True)
class SourcePlace:
    """Where a source is: the target it backs up (if it is a target's), and upkeep's own
    config file and store (for the ``upkeep`` kind)."""

    target: TargetBase | None = None
    config_path: Path | None = None
    store_url: str | None = None
    """upkeep's own store, as a full URL."""
    store_schema: str = DEFAULT_SCHEMA
    """The schema of upkeep's own store, if it is a PostgreSQL one."""


class Source(ABC):
    """One kind of thing to back up."""

    kind: ClassVar[str]
    """The kind, as manifests record it (``source_details.kind``)."""
    config_key: ClassVar[str]
    """The key that makes a ``backups.sources`` entry this kind (``sqlite: app.db``); for
    ``target``, the kind is the one whose ``target_kind`` is the named target's kind."""
    target_kind: ClassVar[str | None] = None
    """The kind of target this kind backs up (None: it backs up no target)."""
    path_keys: ClassVar[tuple[str, ...]] = ()
    """Keys of the entry holding paths as written; the loader makes them absolute against
    the config file's directory."""
    store_copy_name: ClassVar[str | None] = None
    """For a kind that can back up upkeep's own store (``for_store``): the copy's file name
    inside an ``upkeep`` backup."""
    loads_in_place: ClassVar[bool] = True
    """Whether ``restore`` puts the backup into the source itself. False: it writes the
    backup into a new private directory for loading by hand (a running Redis cannot load an
    RDB file, upkeep cannot replace its own running store), so nothing the source holds
    changes, no safety backup is taken and the restore is recorded as written, not loaded."""

    @classmethod
    def validate(
        cls, config: BackupSourceConfig, target: TargetBase | None
    ) -> list[tuple[str, str]]:
        """Given an entry of this kind (and its target, if it backs one up), return (key,
        problem) pairs the model cannot express; checked by ``upkeep validate``."""
        del config, target
        return []

    @classmethod
    @abstractmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Given an entry of this kind and where it is, return the source; raise
        SourceError if it cannot be backed up as configured."""

    @classmethod
    def for_store(cls, store_url: str, schema: str) -> Source | None:
        """Given upkeep's own store (a full URL and, for PostgreSQL, its schema), return a
        source that dumps it, or None if this kind cannot."""
        del store_url, schema
        return None

    @abstractmethod
    def details(self) -> dict[str, Any]:
        """Return what the manifest says about the source (no secrets)."""

    @abstractmethod
    def dump(self, work: Path) -> contextlib.AbstractContextManager[Dump]:
        """Start a dump; ``work`` is a scratch directory the dump may use."""

    @abstractmethod
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> contextlib.AbstractContextManager[Restored]:
        """Restore the raw dump into a scratch copy (removed when the block ends)."""

    @abstractmethod
    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Restore the raw dump over the source itself (or, if ``loads_in_place`` is False,
        write it out beside the config); return what was done."""

    def prepare_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Callable[[], Restoration]:
        """Check and stage a restore without touching the source; return the step that
        restores (and returns what was done). Raise SourceError (or ArchiveError) if the
        restore is refused: then nothing was written over the source.

        The default stages nothing: a database restore streams when the step runs."""
        return lambda: self.restore(raw, work, manifest)


COUNTED = {"redis": ("database", "keys")}
"""What a kind's manifest counts, if not rows per table: Redis counts keys per database."""


def compared(manifest: Manifest, restored: Restored) -> list[dict[str, Any]]:
    """Given a manifest and what a scratch restore holds, return each comparison made: one
    per counted table (or Redis database) with the manifest's count and the restored one,
    and one per file with both sha256 (None where the restore lacks it); each says whether
    they match. Something restored that the manifest does not list is an entry too."""
    unit_of, counted = COUNTED.get(manifest.source_details.kind, ("table", "rows"))
    entries: list[dict[str, Any]] = []
    expected_counts = manifest.row_counts or {}
    for name, count in sorted(expected_counts.items()):
        found = restored.counts.get(name)
        entries.append(
            {
                "kind": unit_of,
                "name": name,
                "unit": counted,
                "manifest": count,
                "restored": found,
                "ok": found == count,
            }
        )
    if expected_counts:
        for name in sorted(set(restored.counts) - set(expected_counts)):
            entries.append(
                {
                    "kind": unit_of,
                    "name": name,
                    "unit": counted,
                    "manifest": None,
                    "restored": restored.counts[name],
                    "ok": False,
                }
            )
    for name, facts in sorted((manifest.files or {}).items()):
        found_file = restored.files.get(name)
        found_sha = found_file["sha256"] if found_file is not None else None
        entries.append(
            {
                "kind": "file",
                "name": name,
                "unit": "sha256",
                "manifest": facts.sha256,
                "restored": found_sha,
                "ok": found_sha == facts.sha256,
            }
        )
    return entries


def compare(manifest: Manifest, restored: Restored) -> list[str]:
    """Return every difference between what the manifest recorded and what the restore
    holds (empty if it matches)."""
    problems = []
    for entry in compared(manifest, restored):
        if entry["ok"]:
            continue
        name, unit, expected, found = (
            entry["name"],
            entry["unit"],
            entry["manifest"],
            entry["restored"],
        )
        if entry["kind"] == "file":
            if found is None:
                problems.append(f"{name}: missing after restore")
            else:
                problems.append(f"{name}: content differs (sha256 {found[:12]}…)")
        elif found is None:
            problems.append(f"{name}: missing after restore (expected {expected} {unit})")
        elif expected is None:
            problems.append(f"{name}: restored but not in the manifest")
        else:
            problems.append(f"{name}: {found} {unit} after restore, {expected} in the manifest")
    return problems


def _version(argv: list[str]) -> str:
    try:
        with StreamedProcess(argv, timeout_s=CONNECT_TIMEOUT_S) as process:
            text = b"".join(process.chunks()).decode(errors="replace").strip()
            process.check()
            return text
    except (ProcessFailed, OSError) as error:
        return f"unknown ({error})"


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_parts(dsn: str) -> tuple[dict[str, Any], str | None]:
    """Return the DSN's libpq options without the password, and the password."""
    from psycopg.conninfo import conninfo_to_dict

    options = conninfo_to_dict(dsn)
    password = options.pop("password", None)
    return options, str(password) if password is not None else None


def _pg_conninfo(options: dict[str, Any], **changes: Any) -> str:
    from psycopg.conninfo import make_conninfo

    return make_conninfo(**{**options, **changes})


class PostgresSource(Source):
    """A PostgreSQL database through pg_dump and pg_restore."""

    kind: ClassVar[str] = "postgres"
    config_key: ClassVar[str] = "target"
    target_kind: ClassVar[str | None] = "postgres"
    store_copy_name: ClassVar[str | None] = "store.pgdump"

    @classmethod
    def validate(
        cls, config: BackupSourceConfig, target: TargetBase | None
    ) -> list[tuple[str, str]]:
        """Return a problem if parallel jobs are asked of a format that cannot have them."""
        del target
        if config.jobs > 1 and config.format != "directory":
            return [("jobs", "parallel jobs need format: directory")]
        return []

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of the entry's ``postgres`` target, in its format and jobs."""
        return cls(_target_url(place, "dsn"), dump_format=config.format, jobs=config.jobs)

    @classmethod
    def for_store(cls, store_url: str, schema: str) -> Source | None:
        """Return the source dumping a PostgreSQL store: its schema only, not the rest of
        the database it shares (psycopg's URL as libpq's DSN)."""
        scheme, separator, rest = store_url.partition("://")
        if not separator or scheme.split("+")[0] != "postgresql":
            return None
        return cls(f"postgresql://{rest}", schema=schema)

    def __init__(
        self, dsn: str, *, dump_format: str = "custom", jobs: int = 1, schema: str | None = None
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        """Dump and count this schema only (upkeep's own store); None: the whole database."""
        self.dump_format = dump_format
        self.jobs = max(1, jobs)
        self.options, self.password = _pg_parts(dsn)
        self.env = {"PGPASSWORD": self.password} if self.password else {}
        self.env["PGCONNECT_TIMEOUT"] = str(CONNECT_TIMEOUT_S)

    def details(self) -> dict[str, Any]:
        """Return kind, host, port, database, format and jobs."""
        return {
            "kind": self.kind,
            "host": str(self.options.get("host", "")),
            "port": str(self.options.get("port", "")),
            "database": str(self.options.get("dbname", "")),
            "dump_format": self.dump_format,
            "jobs": self.jobs,
        }

    def _connect(self, dbname: str | None = None, *, autocommit: bool = False) -> Any:
        import psycopg

        changes = {"dbname": dbname} if dbname else {}
        try:
            return psycopg.connect(
                _pg_conninfo(self.options, **changes),
                password=self.password,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=autocommit,
            )
        except psycopg.Error as error:
            raise SourceError(f"cannot connect to PostgreSQL: {_pg_message(error)}") from None

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """pg_dump inside an exported snapshot; the counts come from the same snapshot."""
        connection = self._connect()
        try:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
            server = connection.execute("SHOW server_version").fetchone()[0]
            conninfo = _pg_conninfo(self.options)
            common = ["--no-password", f"--snapshot={snapshot}", f"--dbname={conninfo}"]
            if self.schema is not None:
                # Quoted: a pattern matching this one schema exactly, not a wildcard.
                common.append(f'--schema="{self.schema}"')
            versions = {"pg_dump": _version(["pg_dump", "--version"]), "server": server}

            def finish() -> dict[str, Any]:
                counts = _pg_counts(connection, self.schema)
                return {"row_counts": counts, "tool_versions": versions}

            if self.dump_format == "directory":
                target = work / "dump"
                argv = ["pg_dump", "--format=directory", "--compress=0", f"--jobs={self.jobs}"]
                with StreamedProcess(
                    [*argv, f"--file={target}", *common],
                    timeout_s=DUMP_TIMEOUT_S,
                    env=self.env,
                    stdout=False,
                ) as process:
                    _checked(process, "pg_dump")
                yield Dump(tar_stream([target], base=target), finish)
            else:
                argv = ["pg_dump", "--format=custom", "--compress=0", *common]
                with StreamedProcess(argv, timeout_s=DUMP_TIMEOUT_S, env=self.env) as process:

                    def chunks() -> Iterator[bytes]:
                        yield from process.chunks()
                        _checked(process, "pg_dump")

                    yield Dump(chunks(), finish)
        finally:
            connection.close()

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Restore into a new database beside the source, count, then drop it."""
        scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
        import psycopg

        admin = self._connect(autocommit=True)
        try:
            admin.execute(f'CREATE DATABASE "{scratch}"')
        except psycopg.Error as error:
            admin.close()
            raise SourceError(f"cannot create a scratch database: {_pg_message(error)}") from None
        try:
            self._pg_restore(raw, work, manifest, dbname=scratch, clean=False)
            connection = self._connect(scratch)
            try:
                counts = _pg_counts(connection, self.schema)

                def run_query(sql: str) -> list[tuple[Any, ...]]:
                    with connection.transaction():
                        return list(connection.execute(sql).fetchall())

                yield Restored(counts=counts, location=f"database {scratch}", run_query=run_query)
            finally:
                connection.close()
        finally:
            with contextlib.suppress(psycopg.Error):
                admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
            admin.close()

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """pg_restore --clean --if-exists over the source database."""
        database = str(self.options.get("dbname", ""))
        self._pg_restore(raw, work, manifest, dbname=database, clean=True)
        return Restoration(f"restored into database {database}")

    def _pg_restore(
        self,
        raw: Iterable[bytes],
        work: Path,
        manifest: Manifest,
        *,
        dbname: str,
        clean: bool,
    ) -> None:
        # pg_restore runs jobs in parallel only from a file or directory, not from stdin.
        if manifest.source_details.detail("dump_format") == "directory":
            source = work / "restore"
            with Directory.open(work) as scratch, scratch.child(source.name, create=True) as into:
                extract(raw, into, links=False)
        else:
            source = work / "dump.custom"
            with open(source, "wb") as handle:
                for piece in raw:
                    handle.write(piece)
        argv = [
            "pg_restore",
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--jobs={self.jobs}",
            f"--dbname={_pg_conninfo(self.options, dbname=dbname)}",
        ]
        if clean:
            argv += ["--clean", "--if-exists"]
        with StreamedProcess(
            [*argv, str(source)], timeout_s=DUMP_TIMEOUT_S, env=self.env, stdout=False
        ) as process:
            _checked(process, "pg_restore")


def _pg_counts(connection: Any, schema: str | None = None) -> dict[str, int]:
    """Given a connection, return the rows of each table ("schema.table"), of ``schema``
    only if given, else of every schema but the system's."""
    from psycopg import sql

    tables = connection.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%%' AND (%s::text IS NULL OR n.nspname = %s)"
        " ORDER BY 1, 2",
        (schema, schema),
    ).fetchall()
    counts = {}
    for namespace, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(
            sql.Identifier(namespace), sql.Identifier(table)
        )
        counts[f"{namespace}.{table}"] = int(connection.execute(query).fetchone()[0])
    return counts


def _pg_message(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


# --- MySQL / MariaDB ----------------------------------------------------------------------


MYSQL_NEEDS_DATABASE = "a MySQL backup needs a database in the DSN: mysql://…/name"


class MysqlSource(Source):
    """One MySQL/MariaDB database through mariadb-dump and the mariadb client."""

    kind: ClassVar[str] = "mysql"
    config_key: ClassVar[str] = "target"
    target_kind: ClassVar[str | None] = "mysql"

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 3306
        self.user = unquote(parts.username or "root")
        self.password = unquote(parts.password) if parts.password else None
        self.database = unquote(parts.path.lstrip("/"))
        if not self.database:
            raise SourceError(MYSQL_NEEDS_DATABASE)
        self.env = {"MYSQL_PWD": self.password} if self.password else {}

    @classmethod
    def validate(
        cls, config: BackupSourceConfig, target: TargetBase | None
    ) -> list[tuple[str, str]]:
        """Return a problem if the target's DSN names no database (one database is dumped)."""
        from upkeep.probes.mysql import MysqlTarget, parse_dsn

        del config
        if not isinstance(target, MysqlTarget):
            return []
        try:
            database = parse_dsn(target.dsn).database
        except ValueError:
            return []  # the target's own error says what is wrong with its DSN
        return [] if database else [("target", MYSQL_NEEDS_DATABASE)]

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of the entry's ``mysql`` target."""
        del config
        return cls(_target_url(place, "dsn"))

    def details(self) -> dict[str, Any]:
        """Return kind, host, port and database."""
        return {
            "kind": self.kind,
            "host": self.host,
            "port": str(self.port),
            "database": self.database,
        }

    def _client_args(self, *, client: bool = False) -> list[str]:
        # mariadb-dump has no --connect-timeout; its whole run is bounded by DUMP_TIMEOUT_S.
        timeout = [f"--connect-timeout={CONNECT_TIMEOUT_S}"] if client else []
        return [
            f"--host={self.host}",
            f"--port={self.port}",
            f"--user={self.user}",
            "--protocol=TCP",
            *timeout,
        ]

    def _connect(self, database: str | None) -> Any:
        import pymysql

        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password or "",
                database=database,
                connect_timeout=CONNECT_TIMEOUT_S,
                autocommit=True,
            )
        except pymysql.MySQLError as error:
            raise SourceError(f"cannot connect to MySQL: {error.args[-1]}") from None

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """mariadb-dump --single-transaction; counts from a consistent snapshot just before."""
        del work
        connection = self._connect(self.database)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                counts = _mysql_counts(cursor, self.database)
                cursor.execute("SELECT VERSION()")
                server = str(cursor.fetchone()[0])
                cursor.execute("COMMIT")
        finally:
            connection.close()
        versions = {"mariadb-dump": _version(["mariadb-dump", "--version"]), "server": server}
        argv = [
            "mariadb-dump",
            *self._client_args(),
            "--single-transaction",
            "--quick",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            self.database,
        ]
        with StreamedProcess(argv, timeout_s=DUMP_TIMEOUT_S, env=self.env) as process:

            def chunks() -> Iterator[bytes]:
                yield from process.chunks()
                _checked(process, "mariadb-dump")

            yield Dump(chunks(), lambda: {"row_counts": counts, "tool_versions": versions})

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Load into a new database on the same server, count, then drop it."""
        import pymysql

        del work, manifest
        scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
        admin = self._connect(None)
        try:
            with admin.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{scratch}`")
            self._load(raw, scratch)
            connection = self._connect(scratch)
            try:
                with connection.cursor() as cursor:
                    counts = _mysql_counts(cursor, scratch)

                def run_query(query: str) -> list[tuple[Any, ...]]:
                    with connection.cursor() as cursor:
                        cursor.execute(query)
                        return list(cursor.fetchall())

                yield Restored(counts=counts, location=f"database {scratch}", run_query=run_query)
            finally:
                connection.close()
        finally:
            with contextlib.suppress(pymysql.MySQLError), admin.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{scratch}`")
            admin.close()

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Load the dump into the source database (its tables are dropped and recreated)."""
        del work, manifest
        self._load(raw, self.database)
        return Restoration(f"restored into database {self.database}")

    def _load(self, raw: Iterable[bytes], database: str) -> None:
        argv = ["mariadb", *self._client_args(client=True), "--batch", database]
        with StreamedProcess(
            argv, timeout_s=DUMP_TIMEOUT_S, env=self.env, stdin=True, stdout=False
        ) as process:
            process.feed(raw)
            _checked(process, "mariadb")


def _mysql_counts(cursor: Any, database: str) -> dict[str, int]:
    cursor.execute(
        "SELECT table_name FROM information_schema.tables"
        " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY 1",
        (database,),
    )
    counts = {}
    for (table,) in cursor.fetchall():
        escaped = str(table).replace("`", "``")
        cursor.execute(f"SELECT COUNT(*) FROM `{escaped}`")
        counts[str(table)] = int(cursor.fetchone()[0])
    return counts


# --- Redis --------------------------------------------------------------------------------


class RedisSource(Source):
    """A Redis server through an RDB snapshot (``redis-cli --rdb``)."""

    kind: ClassVar[str] = "redis"
    config_key: ClassVar[str] = "target"
    target_kind: ClassVar[str | None] = "redis"
    loads_in_place: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of the entry's ``redis`` target."""
        del config
        # Absolute: the path is printed for someone to copy from another directory.
        beside = place.config_path.absolute().parent if place.config_path is not None else None
        return cls(_target_url(place, "url"), restore_dir=beside)

    def __init__(self, url: str, *, restore_dir: Path | None = None) -> None:
        """Given the server's URL and where a restore writes the snapshot (default: the
        current directory), make the source."""
        self.restore_dir = (restore_dir or Path.cwd()).absolute()
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 6379
        self.password = unquote(parts.password) if parts.password else None
        self.username = unquote(parts.username) if parts.username else None
        self.env = {"REDISCLI_AUTH": self.password} if self.password else {}

    def details(self) -> dict[str, Any]:
        """Return kind, host and port."""
        return {"kind": self.kind, "host": self.host, "port": str(self.port)}

    def _cli(self) -> list[str]:
        argv = ["redis-cli", "-h", self.host, "-p", str(self.port)]
        if self.username:
            argv += ["--user", self.username]
        return argv

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """Fetch an RDB snapshot to a scratch file, then stream it."""
        keys = _redis_keyspace(self.host, self.port, self.username, self.password)
        target = work / "dump.rdb"
        with StreamedProcess(
            [*self._cli(), "--rdb", str(target)], timeout_s=DUMP_TIMEOUT_S, env=self.env
        ) as process:
            for _ in process.chunks():
                pass
            _checked(process, "redis-cli --rdb")
        versions = {"redis-cli": _version(["redis-cli", "--version"])}
        yield Dump(file_chunks(target), lambda: {"row_counts": keys, "tool_versions": versions})

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Start a private redis-server on the snapshot (loopback, free port), count keys."""
        del manifest
        with open(work / "dump.rdb", "wb") as handle:
            for piece in raw:
                handle.write(piece)
        port = _free_port()
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(work),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        with StreamedProcess(argv, timeout_s=DUMP_TIMEOUT_S, stdout=False) as server:
            deadline = time.monotonic() + 60
            while True:
                try:
                    counts = _redis_keyspace("127.0.0.1", port, None, None)
                    break
                except SourceError:
                    if server.process.poll() is not None or time.monotonic() > deadline:
                        raise SourceError(
                            f"the snapshot does not load in redis-server: {server.error_text()}"
                        ) from None
                    time.sleep(0.05)
            yield Restored(counts=counts, location=f"redis-server on 127.0.0.1:{port}")

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Write the snapshot as ``dump.rdb`` into a new private directory beside the config
        and say how to load it (a running Redis cannot load an RDB file over the network,
        and loading it means stopping the server); the server itself is not touched."""
        del work, manifest
        target = self.restore_dir / f"redis-restored-{secrets.token_hex(8)}"
        with (
            Directory.open(target.parent) as beside,
            beside.private_child(target.name) as into,
        ):
            snapshot = into.create_temporary("dump.rdb")
            try:
                for piece in raw:
                    snapshot.write(piece)
                snapshot.commit("dump.rdb")
            except BaseException:
                snapshot.abort()
                raise
        return Restoration(
            # CONFIG GET answers only while the server runs; with appendonly on, a restarted
            # server loads its AOF and ignores the RDB.
            f"to load it, stop Redis on {self.host}:{self.port}, replace the file at CONFIG "
            f"GET dir/dbfilename (read it first) with {target / 'dump.rdb'}, start it (with "
            "appendonly yes, start it with appendonly no, else it loads its AOF instead, then "
            "CONFIG SET appendonly yes)",
            written_to=target,
        )


def _redis_keyspace(host: str, port: int, user: str | None, password: str | None) -> dict[str, int]:
    import redis

    try:
        client = redis.Redis(
            host=host,
            port=port,
            username=user,
            password=password,
            socket_timeout=CONNECT_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        try:
            info = client.info("keyspace")
        finally:
            client.close()
    except (redis.RedisError, OSError) as error:
        raise SourceError(f"cannot read Redis's keyspace: {error}") from None
    return {name: int(facts["keys"]) for name, facts in info.items()}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- SQLite -------------------------------------------------------------------------------


class SqliteSource(Source):
    """A SQLite database file through the online backup API."""

    kind: ClassVar[str] = "sqlite"
    config_key: ClassVar[str] = "sqlite"
    path_keys: ClassVar[tuple[str, ...]] = ("sqlite",)
    store_copy_name: ClassVar[str | None] = "store.sqlite"

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of the entry's database file."""
        del place
        if config.sqlite is None:
            raise SourceError("a sqlite source names its database file")
        return cls(Path(config.sqlite))

    @classmethod
    def for_store(cls, store_url: str, schema: str) -> Source | None:
        """Return the source copying a SQLite store's file."""
        del schema  # a SQLite store has none
        if not store_url.startswith("sqlite:///"):
            return None
        return cls(Path(store_url.removeprefix("sqlite:///")))

    def __init__(self, path: Path) -> None:
        self.path = path

    def details(self) -> dict[str, Any]:
        """Return kind and path."""
        return {"kind": self.kind, "path": str(self.path)}

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """Copy with the backup API (consistent while others write), count, stream."""
        try:
            os.close(open_regular(self.path))
        except UnsafeFileError as error:
            raise SourceError(f"{self.path}: {error.strerror}; not followed") from None
        except OSError:
            raise SourceError(f"no SQLite database at {self.path}") from None
        copy = work / "copy.sqlite"
        source = sqlite3.connect(f"file:{quote(str(self.path))}?mode=ro", uri=True)
        try:
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
                counts = _sqlite_counts(target)
            finally:
                target.close()
        except sqlite3.Error as error:
            raise SourceError(f"SQLite backup of {self.path} failed: {error}") from None
        finally:
            source.close()
        versions = {"sqlite": sqlite3.sqlite_version}
        yield Dump(file_chunks(copy), lambda: {"row_counts": counts, "tool_versions": versions})

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Write the copy out, check its integrity, count rows."""
        del manifest
        copy = work / "restored.sqlite"
        with open(copy, "wb") as handle:
            for piece in raw:
                handle.write(piece)
        connection = sqlite3.connect(copy)
        try:
            verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise SourceError(f"the restored database fails integrity_check: {verdict}")

            def run_query(query: str) -> list[tuple[Any, ...]]:
                return list(connection.execute(query).fetchall())

            yield Restored(
                counts=_sqlite_counts(connection), location=str(copy), run_query=run_query
            )
        except sqlite3.DatabaseError as error:
            raise SourceError(f"the restored file is not a usable database: {error}") from None
        finally:
            connection.close()

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Write the copy beside the database under an unguessable temporary name (never
        through a link: the database's directory is often the application's to write),
        give it the database's owner and mode, and rename it over (atomic)."""
        del work, manifest
        with Directory.open(self.path.parent, cross_mounts=True) as directory:
            existing = directory.lstat(self.path.name)
            temporary = directory.create_temporary("restore")
            try:
                if existing is not None and stat.S_ISREG(existing.st_mode):
                    temporary.take_ownership_of(existing)
                for piece in raw:
                    temporary.write(piece)
                temporary.commit(self.path.name, replace=True)
            except BaseException:
                temporary.abort()
                raise
        return Restoration(f"restored {self.path}")


def _sqlite_counts(connection: sqlite3.Connection) -> dict[str, int]:
    tables = [
        str(row[0])
        for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
    ]
    return {
        table: int(
            connection.execute(
                f'SELECT count(*) FROM "{table.replace(chr(34), chr(34) * 2)}"'
            ).fetchone()[0]
        )
        for table in tables
    }


# --- Files --------------------------------------------------------------------------------


class FilesSource(Source):
    """Files and directories as one tar stream."""

    kind: ClassVar[str] = "files"
    config_key: ClassVar[str] = "paths"
    path_keys: ClassVar[tuple[str, ...]] = ("paths",)

    @classmethod
    def validate(
        cls, config: BackupSourceConfig, target: TargetBase | None
    ) -> list[tuple[str, str]]:
        """Return a problem if no path is listed."""
        del target
        return [] if config.paths else [("paths", "paths must list at least one file or directory")]

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of the entry's files and directories."""
        del place
        return cls([Path(path) for path in config.paths or ()])

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def details(self) -> dict[str, Any]:
        """Return kind and paths."""
        return {"kind": self.kind, "paths": [str(path) for path in self.paths]}

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """Tar the paths through directory descriptors, hashing every file as it is read;
        what is left out (another mount, a FIFO, a file swapped for a link) is recorded."""
        del work
        missing = [str(path) for path in self.paths if not os.path.lexists(path)]
        if missing:
            raise SourceError(f"nothing to back up at {', '.join(missing)}")
        files: dict[str, dict[str, Any]] = {}
        skipped: list[dict[str, str]] = []
        yield Dump(
            tar_stream(self.paths, base=None, files=files, skipped=skipped),
            lambda: {"files": files, "skipped": skipped},
        )

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Extract into the scratch directory (links as links), hashing every file."""
        del manifest
        with Directory.open(work) as scratch, scratch.child("files", create=True) as into:
            extracted = extract(raw, into)
        yield Restored(files=extracted.files, location=str(work / "files"))

    def prepare_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Callable[[], Restoration]:
        """Stage the archive in the scratch directory, refusing any member outside the
        configured paths and any file that differs from the manifest, then check the live
        paths (no link or mount on the way, nothing but files and links replaced); return
        the step that installs it. Nothing is written over the paths before that step."""
        roots = normalised_roots(self.paths)

        def check(member: Member) -> None:
            place([member], roots)

        with Directory.open(work) as scratch, scratch.child("stage", create=True) as stage:
            extracted = extract(raw, stage, check=check)
        expected = manifest.files or {}
        found = extracted.files
        differ = sorted(
            name
            for name in set(expected) | set(found)
            if name not in expected
            or name not in found
            or found[name]["sha256"] != expected[name].sha256
        )
        if differ:
            raise SourceError(
                f"the archive does not match its manifest at {', '.join(differ[:10])}; "
                "nothing was restored"
            )
        placed = place(extracted.members, roots)
        plan_install(placed)

        def apply() -> Restoration:
            with Directory.open(work / "stage") as stage:
                return Restoration(install(stage, placed).summary())

        return apply

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Stage, check and install (see ``prepare_restore``)."""
        return self.prepare_restore(raw, work, manifest)()


class UpkeepSource(Source):
    """upkeep's own config file and store: the config as it is, the store as a consistent
    copy (SQLite's backup API, or pg_dump of a PostgreSQL store)."""

    kind: ClassVar[str] = "upkeep"
    config_key: ClassVar[str] = "upkeep"
    loads_in_place: ClassVar[bool] = False

    def __init__(
        self, config_path: Path, store_url: str, store_schema: str = DEFAULT_SCHEMA
    ) -> None:
        from upkeep.tasks.backup.registry import source_for_store

        self.config_path = config_path
        self.store_url = store_url
        # The kind that can dump the store (a SQLite file, a PostgreSQL schema) copies it.
        store = source_for_store(store_url, store_schema)
        if store is None or store.store_copy_name is None:
            raise SourceError(f"no source kind can back up a {self._store_scheme()} store")
        self.store = store
        self.store_copy = store.store_copy_name

    @classmethod
    def from_config(cls, config: BackupSourceConfig, place: SourcePlace) -> Source:
        """Return the source of upkeep's own config file and store."""
        del config
        if place.config_path is None or place.store_url is None:
            raise SourceError("backing up upkeep itself needs its config file and store")
        return cls(place.config_path, place.store_url, place.store_schema)

    def _store_scheme(self) -> str:
        return urlsplit(self.store_url).scheme.split("+")[0]

    def details(self) -> dict[str, Any]:
        """Return kind, the config's path and the store's kind (never its URL)."""
        return {"kind": self.kind, "config": str(self.config_path), "store": self._store_scheme()}

    @contextlib.contextmanager
    def dump(self, work: Path) -> Iterator[Dump]:
        """Gather the config and a store copy in a scratch directory, then tar it."""
        import shutil

        bundle = work / "upkeep"
        bundle.mkdir()
        shutil.copy2(self.config_path, bundle / self.config_path.name)
        with self.store.dump(work) as dump:
            with open(bundle / self.store_copy, "wb") as handle:
                for piece in dump.chunks:
                    handle.write(piece)
            counts = dump.finish()["row_counts"]
        files: dict[str, dict[str, Any]] = {}
        yield Dump(
            tar_stream([bundle], base=bundle, files=files),
            lambda: {"files": files, "store_row_counts": counts},
        )

    @contextlib.contextmanager
    def scratch_restore(
        self, raw: Iterable[bytes], work: Path, manifest: Manifest
    ) -> Iterator[Restored]:
        """Extract and hash every file; a SQLite store copy must pass integrity_check."""
        del manifest
        target = work / "upkeep"
        with Directory.open(work) as scratch, scratch.child(target.name, create=True) as into:
            extracted = extract(raw, into, links=False)
        store = target / "store.sqlite"
        if "store.sqlite" in extracted.files:
            connection = sqlite3.connect(store)
            try:
                verdict = connection.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                connection.close()
            if verdict != "ok":
                raise SourceError(f"the store copy fails integrity_check: {verdict}")
        yield Restored(files=extracted.files, location=str(target))

    def restore(self, raw: Iterable[bytes], work: Path, manifest: Manifest) -> Restoration:
        """Extract into a new private directory beside the config (never over the running
        store: the config and the store copy hold secrets) and say how to put them in place."""
        del work, manifest
        target = self.config_path.absolute().parent / f"upkeep-restored-{secrets.token_hex(8)}"
        with (
            Directory.open(target.parent) as beside,
            beside.private_child(target.name) as into,
        ):
            extract(raw, into, links=False)
        return Restoration(
            "to load it, stop upkeep, put the config and the store copy in place, start it",
            written_to=target,
        )


def _target_url(place: SourcePlace, field_name: str) -> str:
    """Return the target's connection URL (its ``dsn`` or ``url``); raise SourceError if the
    source has no target of that shape."""
    value = getattr(place.target, field_name, None)
    if not isinstance(value, str):
        raise SourceError("this kind of source backs up a target, and none is given")
    return value


def file_chunks(path: Path) -> Iterator[bytes]:
    """Yield a file's bytes in bounded chunks."""
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk


def _checked(process: StreamedProcess, name: str) -> None:
    try:
        process.check()
    except ProcessFailed as error:
        raise SourceError(f"{name} failed: {error}") from None
