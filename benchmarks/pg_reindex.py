"""``postgres.reindex`` on the local PostgreSQL: what a rebuild gains, and what a blocked
rebuild costs readers, against a plain ``REINDEX INDEX CONCURRENTLY`` from psql.

1. Bloat: a table of ``--rows`` rows (default 1,000,000; an int primary key and an index
   on a second int column), 90 % deleted (``id % 10 <> 0``, so every leaf page keeps a
   tenth of its entries) and vacuumed; then ``postgres.reindex`` of the table: each
   index's size before and after, and the run's duration.
2. A blocked rebuild: a transaction reads the table through its primary key and stays
   open for ``--hold`` seconds (default 3), holding ACCESS SHARE on the index. Readers
   query by primary key every 5 ms meanwhile. A concurrent rebuild must, at its swap,
   take ACCESS EXCLUSIVE on the index; while it waits for that, every new reader queues
   behind it.

   * upkeep: ``postgres.reindex`` with ``lock_timeout`` ``--lock-timeout`` (default 0.5s):
     the readers' longest wait and the run's outcome (it gives up, cleaning up what it
     can; the rest is removed by the next run, which is timed too);
   * peer: ``REINDEX INDEX CONCURRENTLY`` with no lock timeout, as a psql command runs it:
     the readers' longest wait.

Prints the figures. Traffic goes to 127.0.0.1 only; the table is dropped at the end.

Usage: .venv/bin/python benchmarks/pg_reindex.py [--rows 1000000] [--hold 3] [--lock-timeout 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import psycopg

from upkeep.core.redaction import Redactor
from upkeep.core.results import CheckResult
from upkeep.io.http import HttpClient
from upkeep.probes.postgres import PostgresTarget
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.postgres.reindex import PostgresReindex, ReindexParams

DSN = os.environ.get("UPKEEP_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


async def _no_checks(name: str) -> CheckResult:
    raise AssertionError(name)


def _context(http: HttpClient) -> TaskContext:
    return TaskContext(
        timeout=timedelta(minutes=30), http=http, redactor=Redactor(), run_check=_no_checks
    )


class Readers:
    """A thread reading one row by primary key every 5 ms, recording each wait."""

    def __init__(self, table: str, rows: int) -> None:
        self.table, self.rows = table, rows
        self.waits: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with psycopg.connect(DSN, autocommit=True) as connection:
            connection.execute("SET enable_seqscan = off")
            while not self.stop.is_set():
                started = time.perf_counter()
                connection.execute(
                    f"SELECT v FROM {self.table} WHERE id = %s",
                    (random.randint(1, self.rows),),  # noqa: S311 - picks rows to read, no secret
                )
                self.waits.append(time.perf_counter() - started)
                time.sleep(0.005)

    def __enter__(self) -> Readers:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def _hold(table: str, seconds: float, ready: threading.Event) -> None:
    """Read through the primary key in a transaction kept open for ``seconds``."""
    with psycopg.connect(DSN) as connection:
        connection.execute("SET enable_seqscan = off")
        connection.execute(f"SELECT v FROM {table} WHERE id = 1")
        ready.set()
        time.sleep(seconds)
        connection.rollback()


async def _blocked(
    table: str, rows: int, hold: float, rebuild: Callable[[], Awaitable[str]], label: str
) -> tuple[float, str]:
    """Run ``rebuild`` (a coroutine function) while a holder and readers run; return the
    readers' longest wait and what the rebuild said."""
    ready = threading.Event()
    holder = threading.Thread(target=_hold, args=(table, hold, ready), daemon=True)
    with Readers(table, rows) as readers:
        await asyncio.sleep(0.3)
        holder.start()
        ready.wait()
        started = time.perf_counter()
        try:
            said = await rebuild()
        except TaskFailed as error:
            said = f"failed: {error}"
        took = time.perf_counter() - started
        holder.join()
        await asyncio.sleep(0.3)
    worst = max(readers.waits)
    print(
        f"{label}: rebuild returned after {took:.2f}s; readers' longest wait {worst * 1000:.0f} ms "
        f"over {len(readers.waits)} reads\n  {said}"
    )
    return worst, said


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--lock-timeout", type=float, default=0.5)
    args = parser.parse_args()
    table = f"bench_rx_{uuid.uuid4().hex[:8]}"
    target = PostgresTarget(dsn=DSN)
    with psycopg.connect(DSN, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
        connection.execute(f"CREATE INDEX {table}_v ON {table} (v)")
        connection.execute(
            f"INSERT INTO {table} SELECT i, i FROM generate_series(1, %s) i",
            (args.rows,),
        )
        connection.execute(f"DELETE FROM {table} WHERE id % 10 <> 0")
        connection.execute(f"VACUUM {table}")
    try:
        http = HttpClient()
        try:
            context = _context(http)
            params = ReindexParams.model_validate({"tables": [table]})
            started = time.perf_counter()
            outcome = await PostgresReindex().run(target, params, context)
            print(
                f"1. bloat, {args.rows} rows, 90 % deleted: reindex took "
                f"{time.perf_counter() - started:.2f}s"
            )
            for change in outcome.changes:
                print(f"   {change.subject}: {change.detail}")

            limited = ReindexParams.model_validate(
                {"indexes": [f"{table}_pkey"], "lock_timeout": f"{int(args.lock_timeout * 1000)}ms"}
            )

            async def upkeep_rebuild() -> str:
                done = await PostgresReindex().run(target, limited, context)
                return done.message

            print(
                "2. a rebuild blocked by a reader holding the index for "
                f"{args.hold:g}s, readers every 5 ms"
            )
            await _blocked(table, args.rows, args.hold, upkeep_rebuild, "   upkeep")
            started = time.perf_counter()
            outcome = await PostgresReindex().run(target, limited, context)
            print(
                f"   next upkeep run: {time.perf_counter() - started:.2f}s, "
                f"{outcome.figures['leftovers_dropped']} leftover(s) dropped first"
            )

            async def psql_rebuild() -> str:
                async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as c:
                    await c.execute(f"REINDEX INDEX CONCURRENTLY {table}_pkey")
                return "REINDEX INDEX CONCURRENTLY done"

            await _blocked(table, args.rows, args.hold, psql_rebuild, "   peer (psql)")
        finally:
            await http.close()
    finally:
        with psycopg.connect(DSN, autocommit=True) as connection:
            connection.execute(f"DROP TABLE IF EXISTS {table}")


if __name__ == "__main__":
    asyncio.run(main())
