"""``sql.retention`` against the naive single ``DELETE`` on a large table, with a writer.

Creates a table of ``--rows`` rows (default 5,000,000: an id, a ``created`` timestamp
with an index, a short text) on the local PostgreSQL (and, with ``--mariadb``, on the
local MariaDB), ``--old`` of them (default 40 %, the lowest ids, as a table filled in
time order is) dated two years ago. Then, in one run:

* upkeep: ``sql.retention`` with ``older_than: 365d``, ``batch_size`` 5000, ``pause``
  50ms and ``max_lock`` 2s (its batch statement timeout), while a second connection
  updates a random row of the whole table every 5 ms: the writer's longest wait and
  99th percentile, and the task's own figures (max / p95 batch duration = how long a
  batch held its row locks);
* peer: the same table reloaded, one ``DELETE ... WHERE created < cutoff`` in one
  statement, with the same writer: the statement's time (how long it held its locks)
  and the writer's longest wait.

Prints the figures. Traffic goes to 127.0.0.1 only; the tables are dropped at the end.

Usage: .venv/bin/python benchmarks/sql_retention.py [--rows 5000000] [--old 0.4] [--mariadb]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pymysql

from upkeep.core.redaction import Redactor
from upkeep.core.results import CheckResult
from upkeep.io.http import HttpClient
from upkeep.probes.mysql import MysqlTarget, parse_dsn
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext
from upkeep.tasks.sql.retention import RetentionParams, SqlRetention

PG_DSN = os.environ.get("UPKEEP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
MY_DSN = os.environ.get("UPKEEP_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/test")
WRITER_EVERY_S = 0.005
MAX_LOCK = "2s"


class Writer(threading.Thread):
    """Updates a random row every WRITER_EVERY_S on its own connection; records each
    statement's latency (a wait for a lock shows as a long one)."""

    def __init__(self, execute: Callable[[int], None], rows: int) -> None:
        super().__init__(daemon=True)
        self.execute = execute
        self.rows = rows
        self.latencies_ms: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        chooser = random.Random(7)  # noqa: S311 - picks rows to update, not a secret
        while not self.stop.is_set():
            started = time.perf_counter()
            self.execute(chooser.randint(1, self.rows))
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.stop.wait(WRITER_EVERY_S)

    def figures(self) -> str:
        ordered = sorted(self.latencies_ms)
        p99 = ordered[int(0.99 * (len(ordered) - 1))] if ordered else 0.0
        return (
            f"writer: {len(ordered)} updates, max wait {max(ordered, default=0):.0f} ms, "
            f"p99 {p99:.1f} ms, median {statistics.median(ordered or [0]):.2f} ms"
        )


async def no_checks(name: str) -> CheckResult:
    raise RuntimeError(f"no check {name}")


async def run_task(target: Any, table: str) -> dict[str, Any]:
    params = RetentionParams.model_validate(
        {
            "table": table,
            "column": "created",
            "older_than": "365d",
            "batch_size": 5000,
            "pause": "50ms",
            "max_lock": MAX_LOCK,
        }
    )
    http = HttpClient()
    try:
        context = TaskContext(
            timeout=timedelta(hours=1), http=http, redactor=Redactor(), run_check=no_checks
        )
        started = time.perf_counter()
        outcome = await SqlRetention().run(target, params, context)
        elapsed = time.perf_counter() - started
    finally:
        await http.close()
    return {**outcome.figures, "wall_s": round(elapsed, 1)}


# --- PostgreSQL -------------------------------------------------------------------------


def pg_load(table: str, rows: int, old: float) -> float:
    started = time.perf_counter()
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, created timestamptz NOT NULL, "
            "note text NOT NULL)"
        )
        connection.execute(
            f"INSERT INTO {table} SELECT i, CASE WHEN i <= %s "
            "THEN now() - interval '2 years' + i * interval '1 second' "
            "ELSE now() - interval '100 days' + i * interval '1 second' END, "
            "md5(i::text) FROM generate_series(1, %s) i",
            (int(rows * old), rows),
        )
        connection.execute(f"CREATE INDEX ON {table} (created)")
        connection.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def pg_writer(table: str, rows: int) -> Writer:
    connection = psycopg.connect(PG_DSN, autocommit=True)

    def update(row_id: int) -> None:
        connection.execute(f"UPDATE {table} SET note = 'w' WHERE id = %s", (row_id,))

    return Writer(update, rows)


def pg_naive(table: str) -> float:
    with psycopg.connect(PG_DSN, autocommit=True) as connection:
        started = time.perf_counter()
        connection.execute(f"DELETE FROM {table} WHERE created < now() - interval '365 days'")
        return time.perf_counter() - started


def pg_bench(rows: int, old: float) -> None:
    table = f"bench_ret_{uuid.uuid4().hex[:8]}"
    try:
        print(f"PostgreSQL: loading {rows:,} rows ({old:.0%} old) ...", flush=True)
        print(f"  loaded in {pg_load(table, rows, old):.1f} s", flush=True)
        writer = pg_writer(table, rows)
        writer.start()
        figures = asyncio.run(run_task(PostgresTarget(dsn=PG_DSN), table))
        writer.stop.set()
        writer.join()
        print(f"  sql.retention: {figures}")
        print(f"  {writer.figures()}", flush=True)

        print(f"  reloading for the naive DELETE: {pg_load(table, rows, old):.1f} s", flush=True)
        writer = pg_writer(table, rows)
        writer.start()
        seconds = pg_naive(table)
        time.sleep(0.5)
        writer.stop.set()
        writer.join()
        print(f"  naive DELETE: one statement, {seconds * 1000:.0f} ms holding its locks")
        print(f"  {writer.figures()}", flush=True)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {table}")


# --- MariaDB ----------------------------------------------------------------------------


def my_connect() -> pymysql.connections.Connection[Any]:
    address = parse_dsn(MY_DSN)
    return pymysql.connect(
        host=address.host,
        port=address.port,
        user=address.user,
        password=address.password,
        database=address.database,
        autocommit=True,
    )


def my_load(table: str, rows: int, old: float) -> float:
    started = time.perf_counter()
    connection = my_connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(
                f"CREATE TABLE {table} (id bigint PRIMARY KEY, created datetime NOT NULL, "
                "note varchar(32) NOT NULL, KEY (created)) ENGINE=InnoDB"
            )
            cursor.execute(
                f"INSERT INTO {table} SELECT seq, IF(seq <= %s, "
                "UTC_TIMESTAMP() - INTERVAL 2 YEAR + INTERVAL seq SECOND, "
                "UTC_TIMESTAMP() - INTERVAL 100 DAY + INTERVAL seq SECOND), md5(seq) "
                f"FROM seq_1_to_{rows}",
                (int(rows * old),),
            )
    finally:
        connection.close()
    return time.perf_counter() - started


def my_writer(table: str, rows: int) -> Writer:
    connection = my_connect()

    def update(row_id: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET note = 'w' WHERE id = %s", (row_id,))

    return Writer(update, rows)


def my_naive(table: str) -> float:
    connection = my_connect()
    try:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                f"DELETE FROM {table} WHERE created < UTC_TIMESTAMP() - INTERVAL 365 DAY"
            )
            return time.perf_counter() - started
    finally:
        connection.close()


def my_bench(rows: int, old: float) -> None:
    table = f"bench_ret_{uuid.uuid4().hex[:8]}"
    try:
        print(f"MariaDB: loading {rows:,} rows ({old:.0%} old) ...", flush=True)
        print(f"  loaded in {my_load(table, rows, old):.1f} s", flush=True)
        writer = my_writer(table, rows)
        writer.start()
        figures = asyncio.run(run_task(MysqlTarget(dsn=MY_DSN), table))
        writer.stop.set()
        writer.join()
        print(f"  sql.retention: {figures}")
        print(f"  {writer.figures()}", flush=True)
        print(f"  reloading for the naive DELETE: {my_load(table, rows, old):.1f} s", flush=True)
        writer = my_writer(table, rows)
        writer.start()
        seconds = my_naive(table)
        time.sleep(0.5)
        writer.stop.set()
        writer.join()
        print(f"  naive DELETE: one statement, {seconds * 1000:.0f} ms holding its locks")
        print(f"  {writer.figures()}", flush=True)
    finally:
        connection = my_connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--old", type=float, default=0.4)
    parser.add_argument("--mariadb", action="store_true", help="also on the local MariaDB")
    parser.add_argument("--no-postgres", action="store_true")
    arguments = parser.parse_args()
    print(f"max_lock (batch statement timeout): {MAX_LOCK}")
    if not arguments.no_postgres:
        pg_bench(arguments.rows, arguments.old)
    if arguments.mariadb:
        my_bench(arguments.rows, arguments.old)


if __name__ == "__main__":
    main()
