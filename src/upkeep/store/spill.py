"""The spill: where alerting keeps its state while the store cannot take results.

The spill is a store of its own (the same schema, the same code) in a SQLite file in a
private directory on another file system than the store: ``/run/upkeep`` as root, else
``$XDG_RUNTIME_DIR/upkeep``, ``/dev/shm/upkeep-<uid>`` or ``<tmp>/upkeep-<uid>``, or
``alerting.store_failure.spill_dir`` (or ``$UPKEEP_SPILL_DIR``). If no directory is usable
it lives in this process's memory. While the store is down, results, check states, alerts,
their events and the outbox live there, so the alert manager and the dispatcher work
exactly as they do on the store (soft and hard states, routes, mutes, repeats, retries,
idempotency keys), a cron ``upkeep check`` and the daemon share one state, and a restart
loses nothing but what memory held.

An *episode* is one stretch of store trouble. It starts (``begin``) with a copy of what
alerting needs from the store, if it can still be read: check states, open alerts (with
their ids), silences, one-off windows, and the notices not yet sent (with their keys, so
what the spill sends is what the store would have sent). Notices made during the episode
carry keys of their own (``s<episode>-…``), which can never collide with the store's.

``reconcile`` ends it once the store takes writes again: in one store transaction it
writes the spilled results, the check states, the alerts (those seeded keep their ids, new
ones get store ids), their events, and every notice with what happened to it (sent ones
stay sent, so nothing goes out twice), and marks the episode imported; then it empties the
spill. A crash between the two finds the mark and only empties the spill.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, delete, func, insert, select, text, update
from sqlalchemy.pool import QueuePool

from upkeep.core.redaction import MASK, url_passwords
from upkeep.core.status import Status
from upkeep.store.alerts import AlertState
from upkeep.store.locks import ALERTING_LOCK_KEY
from upkeep.store.outbox import WAITING_STATUSES, OutboxStatus
from upkeep.store.rows import inserted_id
from upkeep.store.schema import (
    alert_events,
    alerts,
    check_results,
    check_states,
    checks,
    instances,
    maintenance_windows,
    outbox,
    schedule_marks,
    silences,
)
from upkeep.store.store import DEFAULT_SCHEMA, Store, normalise_url

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)

SPILL_DIR_ENV = "UPKEEP_SPILL_DIR"
"""Environment variable naming the spill directory when the config does not."""
MEMORY = "memory"
"""The location of a spill held in this process's memory."""
SPILL_RESULTS_CAP = 50_000
"""At most this many results are kept in the spill; older ones are dropped first."""
SEED_WINDOW_PAST = timedelta(days=1)
"""One-off windows that ended longer ago than this are not copied into the spill."""
MARK_PREFIX = "spill:"
"""``schedule_marks`` names recording that an episode was imported into the store."""
_META = "upkeep_spill"
_TABLES_TO_CLEAR = (
    outbox,
    alert_events,
    alerts,
    check_states,
    check_results,
    checks,
    silences,
    maintenance_windows,
    instances,
    schedule_marks,
)


class SpillError(Exception):
    """A spill directory cannot be used; the message says why."""


class SpillBusyError(Exception):
    """The spill cannot be written back yet: a dispatcher (of any process) is sending some
    of its notices; the message says how many."""


@dataclass(frozen=True)
class Episode:
    """One stretch of store trouble: its token, since when, why, and the store's alerts
    copied in at its start (their ids are the store's)."""

    token: str
    since: datetime
    reason: str
    seeded_alerts: frozenset[int]

    @property
    def key_prefix(self) -> str:
        """Return the prefix of the keys of notices made during this episode."""
        return f"s{self.token}-"


@dataclass(frozen=True)
class ReconcileReport:
    """What reconciling an episode into the store wrote."""

    token: str
    results: int
    alerts: int
    notices: int
    already_imported: bool = False


def spill_file_name(store_url: str, schema: str = DEFAULT_SCHEMA) -> str:
    """Given a normalised store URL and its schema (which only a PostgreSQL store has),
    return the spill's file name: one per store, the same for every process and config
    using that store (passwords do not count). A store in the default schema keeps the
    name it had before stores had schemas (it is the store moved there from ``public``,
    so an episode spilled before the upgrade is found); any other schema is part of it.
    """
    masked = store_url
    for password in url_passwords(store_url):
        masked = masked.replace(password, MASK)
    if store_url.startswith("postgresql") and schema != DEFAULT_SCHEMA:
        masked += f"#schema={schema}"
    return f"spill-{hashlib.sha256(masked.encode()).hexdigest()[:16]}.db"


def private_directory(path: Path) -> Path:
    """Given a directory path, create it (mode 0700) if missing and return it, closed to
    everyone else; raise ``SpillError`` unless it is a real directory (not a link) owned
    by this user that nobody else could write in.

    The spill may sit under a directory anyone can write (``/tmp``, ``/dev/shm``): a
    directory planted there by another user, a link to elsewhere, or one where others
    could have planted a link named like the spill file, must never receive root's files.
    One of ours that others could only read is closed (0700): alert texts are private.
    """
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.lstat(path)
    except OSError as error:
        raise SpillError(f"{path}: {error.strerror or error}") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SpillError(f"{path}: not a directory")
    if info.st_uid != os.geteuid():
        raise SpillError(f"{path}: owned by uid {info.st_uid}, not by this user")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        raise SpillError(f"{path}: others may write in it (mode {mode:o})")
    if mode & 0o077:
        try:
            os.chmod(path, 0o700, follow_symlinks=False)
        except OSError as error:
            raise SpillError(f"{path}: {error.strerror or error}") from None
    return path


def candidate_directories(
    configured: str | None, base_dir: Path, environment: Mapping[str, str] | None = None
) -> tuple[list[Path], bool]:
    """Given ``alerting.store_failure.spill_dir`` (None: not set) and the config's
    directory, return the spill directories to try in order, and whether they were
    chosen by the operator (then the file system is not second-guessed)."""
    env = os.environ if environment is None else environment
    if configured:
        return [(base_dir / configured).resolve()], True
    if env.get(SPILL_DIR_ENV):
        return [Path(env[SPILL_DIR_ENV]).resolve()], True
    uid = os.geteuid()
    found: list[Path] = []
    if uid == 0:
        found.append(Path("/run/upkeep"))
    elif env.get("XDG_RUNTIME_DIR"):
        found.append(Path(env["XDG_RUNTIME_DIR"]) / "upkeep")
    found.append(Path("/dev/shm") / f"upkeep-{uid}")  # noqa: S108 - a private directory in it, checked
    found.append(Path(tempfile.gettempdir()) / f"upkeep-{uid}")
    return found, False


def _device(path: Path) -> int | None:
    """Return the device of the nearest existing ancestor of ``path`` (None if none)."""
    for candidate in (path, *path.parents):
        try:
            return os.stat(candidate).st_dev
        except OSError:
            continue
    return None


def _store_device(store_url: str) -> int | None:
    if not store_url.startswith("sqlite:///"):
        return None
    database = store_url.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return _device(Path(database))


def _memory_store() -> tuple[Store, sqlite3.Connection]:
    """Return a store in this process's memory and the connection keeping it alive.

    A shared-cache in-memory database, so every pooled connection sees the same tables;
    readers read uncommitted rows instead of meeting table locks (the store's own thread
    lock already serialises its writers).
    """
    name = f"file:upkeep-spill-{os.getpid()}-{secrets.token_hex(6)}?mode=memory&cache=shared"

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(name, uri=True, check_same_thread=False)
        connection.execute("PRAGMA read_uncommitted=1")
        connection.execute("PRAGMA foreign_keys=ON")
        return connection

    keeper = connect()
    # Shared-cache table locks are not waited for as file locks are: the store's thread
    # lock, held by every writer, keeps writers apart, and readers take no table locks.
    engine = create_engine("sqlite://", creator=connect, poolclass=QueuePool)
    store = Store(engine)
    store.migrate()
    return store, keeper


def read_only_snapshot(store_url: str, base_dir: Path) -> Store | None:
    """Given a SQLite store that cannot be opened (a read-only mount: SQLite cannot create
    the files WAL mode needs), return it opened read-only as an immutable file, to seed
    the spill from; None if it is not a SQLite file. What its write-ahead log holds beyond
    the last checkpoint is not seen: a slightly older state is better than none.
    """
    from urllib.parse import quote

    full_url = normalise_url(store_url, base_dir)
    if not full_url.startswith("sqlite:///"):
        return None
    database = full_url.removeprefix("sqlite:///").split("?", 1)[0]
    if not database or database == ":memory:" or not Path(database).is_file():
        return None
    uri = f"file:{quote(database)}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    return Store(create_engine("sqlite://", creator=connect, poolclass=QueuePool))


class Spill:
    """One spill: its store, where it lives, and its episode."""

    def __init__(self, store: Store, location: str, keeper: sqlite3.Connection | None = None):
        self.store = store
        self.location = location
        self._keeper = keeper
        self._token: str | None = None
        """The episode this process last saw in the spill (see ``_seen``)."""
        with store.engine.begin() as connection:
            connection.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {_META} (key VARCHAR(64) PRIMARY KEY, value TEXT)"
            )

    @property
    def in_memory(self) -> bool:
        """Return whether this spill lives in memory (it ends with the process)."""
        return self.location == MEMORY

    @classmethod
    def open(
        cls,
        store_url: str,
        base_dir: Path,
        configured_dir: str | None = None,
        *,
        memory: bool = False,
        environment: Mapping[str, str] | None = None,
        schema: str = DEFAULT_SCHEMA,
    ) -> Spill:
        """Given the store URL and schema (as in the config), the config's directory and
        ``spill_dir``, return the spill of that store: in the first usable directory,
        preferring one on another file system than a SQLite store's, else in memory
        (also when ``memory`` is asked for). Raise nothing: memory always works.
        """
        full_url = normalise_url(store_url, base_dir)
        if not memory:
            directories, chosen = candidate_directories(configured_dir, base_dir, environment)
            store_device = _store_device(full_url)
            if not chosen and store_device is not None:
                # Another file system first: a full disk would take a spill beside the store
                # down with it. One on the same file system is still better than none.
                directories.sort(key=lambda directory: _device(directory) == store_device)
            for directory in directories:
                try:
                    path = private_directory(directory) / spill_file_name(full_url, schema)
                    spill = cls(Store.open(f"sqlite:///{path}"), str(path))
                except Exception as error:  # noqa: BLE001 - any failure here means: try the next place
                    logger.warning("spill directory %s cannot be used: %s", directory, error)
                    continue
                return spill
            logger.warning("no spill directory is usable: alerting state is kept in memory")
        store, keeper = _memory_store()
        return cls(store, MEMORY, keeper)

    @classmethod
    def find(
        cls,
        store_url: str,
        base_dir: Path,
        configured_dir: str | None = None,
        *,
        environment: Mapping[str, str] | None = None,
        schema: str = DEFAULT_SCHEMA,
    ) -> Spill | None:
        """Given what ``open`` takes, return the store's spill if a spill file exists in
        one of its directories (it may hold an episode another process left), else None.
        Costs a few ``stat`` calls when there is none: every ``upkeep check`` asks."""
        full_url = normalise_url(store_url, base_dir)
        name = spill_file_name(full_url, schema)
        directories, _ = candidate_directories(configured_dir, base_dir, environment)
        for directory in directories:
            path = directory / name
            if not path.is_file():
                continue
            try:
                private_directory(directory)
                return cls(Store.open(f"sqlite:///{path}"), str(path))
            except Exception as error:  # noqa: BLE001 - an unusable spill is as good as none
                logger.warning("spill file %s cannot be used: %s", path, error)
        return None

    def close(self) -> None:
        """Release the spill's connections (a spill in memory is gone after this)."""
        self.store.close()
        if self._keeper is not None:
            self._keeper.close()
            self._keeper = None

    # --- episodes ------------------------------------------------------------------------

    def _meta(self, connection: Connection) -> dict[str, str]:
        rows = connection.exec_driver_sql(f"SELECT key, value FROM {_META}").all()
        return {str(row[0]): str(row[1]) for row in rows}

    def _episode_in(self, connection: Connection) -> Episode | None:
        meta = self._meta(connection)
        if "episode" not in meta:
            return None
        return Episode(
            token=meta["episode"],
            since=datetime.fromisoformat(meta["since"]),
            reason=meta.get("reason", ""),
            seeded_alerts=frozenset(int(value) for value in json.loads(meta.get("seeded", "[]"))),
        )

    def _seen(self, episode: Episode | None) -> Episode | None:
        """Given the episode the spill holds now, return it; if it is not the one this
        process last saw, forget the check ids the spill's store cached. Writing an
        episode back (here or in another process) empties the spill's tables, checks
        included, and the next episode numbers its checks afresh: an id cached before
        names no check (the batch fails) or another check (its results land there)."""
        token = episode.token if episode is not None else None
        if token != self._token:
            self.store.forget_check_ids()
            self._token = token
        return episode

    def episode(self) -> Episode | None:
        """Return the episode the spill holds, or None if it is empty."""
        with self.store.engine.connect() as connection:
            return self._seen(self._episode_in(connection))

    def begin(self, reason: str, main: Store | None, now: datetime | None = None) -> Episode:
        """Given why the store failed and the store (None if it could not be opened),
        return the spill's episode: the one already running (another process may have
        started it), or a new one seeded from the store as far as it can be read.
        """
        moment = now or datetime.now(UTC)
        with self.store.transaction(ALERTING_LOCK_KEY) as connection:
            current = self._seen(self._episode_in(connection))
            if current is not None:
                return current
            seeded: list[int] = []
            if main is not None:
                try:
                    seeded = _seed(connection, main, moment)
                except Exception as error:  # noqa: BLE001 - a store that cannot be read seeds nothing
                    logger.warning("could not copy alerting state from the store: %s", error)
                    for table in _TABLES_TO_CLEAR:
                        connection.execute(delete(table))
                    seeded = []
            episode = Episode(secrets.token_hex(4), moment, reason, frozenset(seeded))
            values = {
                "episode": episode.token,
                "since": moment.isoformat(),
                "reason": reason,
                "seeded": json.dumps(sorted(seeded)),
            }
            for key, value in values.items():
                connection.execute(
                    text(f"INSERT OR REPLACE INTO {_META} (key, value) VALUES (:key, :value)"),
                    {"key": key, "value": value},
                )
        self._seen(episode)
        return episode

    def trim(self, keep: int = SPILL_RESULTS_CAP) -> int:
        """Drop the oldest results beyond ``keep``; return how many were dropped."""
        with self.store.transaction() as connection:
            newest = connection.execute(
                select(check_results.c.id).order_by(check_results.c.id.desc()).limit(1)
            ).scalar()
            if newest is None or newest <= keep:
                return 0
            return int(
                connection.execute(
                    delete(check_results).where(check_results.c.id <= newest - keep)
                ).rowcount
            )

    # --- reconciling -----------------------------------------------------------------------

    def reconcile(self, main: Store, now: datetime | None = None) -> ReconcileReport | None:
        """Given the store, import the spill's episode into it and empty the spill; return
        what was imported, or None if the spill held no episode.

        Raise ``SpillBusyError`` (leaving the spill as it is) while a dispatcher holds a
        live claim on a notice of the spill: it is sending it now, and would find no row
        to mark sent once it is done, so the store would send it again when the claim's
        lease ran out. Raise (leaving the spill as it is) if the store does not take the
        import.
        """
        moment = now or datetime.now(UTC)
        with self.store.transaction(ALERTING_LOCK_KEY) as spill_connection:
            episode = self._episode_in(spill_connection)
            if episode is None:
                return None
            sending = spill_connection.execute(
                select(func.count())
                .select_from(outbox)
                .where(outbox.c.status == OutboxStatus.SENDING, outbox.c.claimed_until >= moment)
            ).scalar_one()
            if sending:
                raise SpillBusyError(f"{sending} notice(s) of the spill are being sent")
            data = _read(spill_connection)
            with main.transaction(ALERTING_LOCK_KEY) as connection:
                mark = f"{MARK_PREFIX}{episode.token}"
                done = connection.execute(
                    select(schedule_marks.c.name).where(schedule_marks.c.name == mark)
                ).first()
                if done is None:
                    report = _import(connection, main, data, episode)
                    connection.execute(
                        insert(schedule_marks).values(name=mark, evaluated_until=moment)
                    )
                else:
                    report = ReconcileReport(episode.token, 0, 0, 0, already_imported=True)
            for table in _TABLES_TO_CLEAR:
                spill_connection.execute(delete(table))
            spill_connection.exec_driver_sql(f"DELETE FROM {_META}")
        self._seen(None)
        return report


# --- seeding -----------------------------------------------------------------------------


def _rows(connection: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in connection.execute(query)]


def _seed(connection: Connection, main: Store, now: datetime) -> list[int]:
    """Copy into the spill (``connection``) what alerting reads from the store; return the
    ids of the open alerts copied."""
    with main.engine.connect() as source:
        states = _rows(source, select(check_states))
        open_alerts = _rows(source, select(alerts).where(alerts.c.active.is_not(None)))
        active_silences = _rows(
            source,
            select(silences).where(silences.c.removed_at.is_(None), silences.c.ends_at > now),
        )
        windows = _rows(
            source,
            select(maintenance_windows).where(
                maintenance_windows.c.ends_at > now - SEED_WINDOW_PAST
            ),
        )
        waiting = _rows(source, select(outbox).where(outbox.c.status.in_(WAITING_STATUSES)))
    for table, rows in (
        (check_states, states),
        (alerts, open_alerts),
        (silences, active_silences),
        (maintenance_windows, windows),
    ):
        if rows:
            connection.execute(insert(table), rows)
    notices = [_copied(row) for row in waiting]
    if notices:
        connection.execute(insert(outbox), notices)
    return [int(row["id"]) for row in open_alerts]


def _copied(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return an outbox row without its id, claim included: a notice some dispatcher was
    sending when the store failed may have reached the service already, so it is sent
    again only when that claim's lease runs out, as the store itself would have done."""
    return {key: value for key, value in row.items() if key != "id"}


# --- importing ---------------------------------------------------------------------------


@dataclass
class _SpillData:
    results: list[dict[str, Any]]
    states: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    events: list[dict[str, Any]]
    notices: list[dict[str, Any]]


def _read(connection: Connection) -> _SpillData:
    results = _rows(
        connection,
        select(
            checks.c.name,
            checks.c.target,
            checks.c.probe,
            checks.c.labels,
            check_results.c.at,
            check_results.c.status,
            check_results.c.duration_ms,
            check_results.c.message,
            check_results.c.metrics,
            check_results.c.run_id,
        )
        .join(checks, checks.c.id == check_results.c.check_id)
        .order_by(check_results.c.id),
    )
    return _SpillData(
        results=results,
        states=_rows(connection, select(check_states)),
        alerts=_rows(connection, select(alerts).order_by(alerts.c.id)),
        events=_rows(connection, select(alert_events).order_by(alert_events.c.id)),
        notices=_rows(connection, select(outbox).order_by(outbox.c.id)),
    )


def _import(
    connection: Connection, main: Store, data: _SpillData, episode: Episode
) -> ReconcileReport:
    from upkeep.core.results import CheckResult

    results = [
        CheckResult(
            check=row["name"],
            target=row["target"],
            probe=row["probe"],
            status=Status(row["status"]),
            metrics=row["metrics"],
            message=row["message"],
            duration_ms=row["duration_ms"],
            at=row["at"],
            labels=row["labels"],
        )
        for row in data.results
    ]
    written = main.insert_results(connection, results, [row["run_id"] for row in data.results])
    _import_states(connection, data.states)
    ids = _import_alerts(connection, data.alerts, episode)
    for row in data.events:
        if row["alert_id"] in ids:
            values = {key: value for key, value in row.items() if key != "id"}
            values["alert_id"] = ids[row["alert_id"]]
            connection.execute(insert(alert_events).values(**values))
    notices = _import_notices(connection, data.notices, ids)
    return ReconcileReport(episode.token, written, len(ids), notices)


def _import_states(connection: Connection, states: Sequence[Mapping[str, Any]]) -> None:
    for row in states:
        values = {key: value for key, value in row.items() if key != "check"}
        changed = connection.execute(
            update(check_states).where(check_states.c.check == row["check"]).values(**values)
        ).rowcount
        if not changed:
            connection.execute(insert(check_states).values(**row))


def _free_check(connection: Connection, check: str, keep: int | None, at: datetime) -> None:
    """Resolve the store's open alert of ``check`` (other than ``keep``): the spill's
    alert of that check, which the store never saw, takes its place."""
    query = select(alerts.c.id).where(alerts.c.active == check)
    if keep is not None:
        query = query.where(alerts.c.id != keep)
    for (alert_id,) in connection.execute(query).all():
        connection.execute(
            update(alerts)
            .where(alerts.c.id == alert_id)
            .values(state=AlertState.RESOLVED, resolved_at=at, active=None)
        )
        connection.execute(
            insert(alert_events).values(
                alert_id=alert_id,
                at=at,
                kind="resolved",
                detail="superseded by the alert raised while the store was unavailable",
            )
        )


def _import_alerts(
    connection: Connection, rows: Iterable[Mapping[str, Any]], episode: Episode
) -> dict[int, int]:
    """Write the spill's alerts into the store; return spill id -> store id."""
    ids: dict[int, int] = {}
    fresh: list[Mapping[str, Any]] = []
    for row in rows:
        if row["id"] not in episode.seeded_alerts:
            fresh.append(row)
            continue
        values = {key: value for key, value in row.items() if key != "id"}
        if values["active"] is not None:
            _free_check(connection, values["active"], row["id"], values["last_result_at"])
        changed = connection.execute(
            update(alerts).where(alerts.c.id == row["id"]).values(**values)
        ).rowcount
        if changed:
            ids[row["id"]] = row["id"]
        else:
            fresh.append(row)  # pruned from the store meanwhile: it comes back as new
    for row in fresh:
        values = {key: value for key, value in row.items() if key != "id"}
        if values["active"] is not None:
            _free_check(connection, values["active"], None, values["opened_at"])
        ids[row["id"]] = inserted_id(connection.execute(insert(alerts).values(**values)))
    return ids


def _import_notices(
    connection: Connection, rows: Iterable[Mapping[str, Any]], ids: Mapping[int, int]
) -> int:
    """Write the spill's notices into the store with what happened to them; return how
    many rows were written. A notice the store already has keeps the store's row unless
    that one was still waiting (the spill then knows better)."""
    written = 0
    for row in rows:
        values = _copied(row)
        if values["alert_id"] is not None:
            values["alert_id"] = ids.get(values["alert_id"])
        existing = connection.execute(
            select(outbox.c.id, outbox.c.status).where(outbox.c.key == values["key"])
        ).first()
        if existing is None:
            connection.execute(insert(outbox).values(**values))
        elif existing.status in WAITING_STATUSES:
            connection.execute(update(outbox).where(outbox.c.id == existing.id).values(**values))
        else:
            continue
        written += 1
    return written
