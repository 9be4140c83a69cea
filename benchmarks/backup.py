"""upkeep's PostgreSQL backup against plain ``pg_dump -Fc`` on the same database.

Creates (once; ``--keep`` leaves it for the next run) a database ``upkeep_bench_backup``
of about ``--gigabytes`` GB (orders with text and numbers, events with JSON), then, in
one run on this machine:

* peer: ``pg_dump -Fc`` (its default gzip compression) to a file, timed;
* upkeep: ``service.create`` (pg_dump -Fc -Z0 in an exported snapshot, zstd level 3 on
  several threads, manifest with exact row counts), timed;
* upkeep, directory format with 2 jobs;
* restore: upkeep's drill (pg_restore into a scratch database, row counts compared): the
  measured RTO; and plain ``pg_restore -j 2`` of the peer's file into a fresh database.

Prints wall times, sizes (zstd against pg_dump's gzip), and the ratios.

Usage: .venv/bin/python benchmarks/backup.py [--gigabytes 1.0] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ADMIN_DSN = os.environ.get("UPKEEP_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "upkeep_bench_backup"
ROWS_PER_GB = 6_000_000


def _dsn(database: str) -> str:
    return ADMIN_DSN.rsplit("/", 1)[0] + f"/{database}"


def ensure_database(gigabytes: float) -> None:
    """Create and fill the benchmark database unless it is there with enough data."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        if exists:
            with psycopg.connect(_dsn(DATABASE)) as connection:
                size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
                if size and size[0] >= gigabytes * 0.9e9:
                    return
            admin.execute(f'DROP DATABASE "{DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{DATABASE}"')
    rows = int(ROWS_PER_GB * gigabytes)
    started = time.monotonic()
    with psycopg.connect(_dsn(DATABASE), autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE orders (id bigserial PRIMARY KEY, customer int, total numeric(12,2),"
            " status text, note text, created timestamptz)"
        )
        step = 500_000
        for start in range(0, rows, step):
            connection.execute(
                "INSERT INTO orders (customer, total, status, note, created)"
                " SELECT n %% 50000, (n %% 100000) / 7.0,"
                " (ARRAY['new','paid','shipped','returned'])[1 + n %% 4],"
                " md5(n::text) || ' ' || repeat(chr(97 + n %% 26), 1 + n %% 40),"
                " now() - (n || ' seconds')::interval"
                " FROM generate_series(%s, %s) n",
                (start, min(rows, start + step) - 1),
            )
        connection.execute("CREATE TABLE events (id bigserial PRIMARY KEY, kind text, body jsonb)")
        connection.execute(
            "INSERT INTO events (kind, body) SELECT 'kind' || (n %% 20),"
            " jsonb_build_object('n', n, 'tag', md5(n::text))"
            " FROM generate_series(1, %s) n",
            (rows // 4,),
        )
        connection.execute("CREATE INDEX ON orders (customer)")
        connection.execute("VACUUM ANALYZE")
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
    print(
        f"created {DATABASE}: {size[0] / 1e9 if size else 0:.2f} GB in {time.monotonic() - started:.0f}s"
    )


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    arguments = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from upkeep.probes.postgres import PostgresTarget
    from upkeep.tasks.backup import service
    from upkeep.tasks.backup.config import BackupsConfig

    ensure_database(arguments.gigabytes)
    with psycopg.connect(_dsn(DATABASE)) as connection:
        size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
    print(f"database {DATABASE}: {size[0] / 1e9 if size else 0:.2f} GB on disk")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as scratch:
        work = Path(scratch)
        peer_file = work / "peer.dump"
        peer_s = timed(["pg_dump", "-Fc", f"--file={peer_file}", f"--dbname={_dsn(DATABASE)}"])
        peer_bytes = peer_file.stat().st_size
        print(f"pg_dump -Fc (gzip):          {peer_s:7.1f} s  {peer_bytes / 1e6:8.1f} MB")

        target = PostgresTarget(kind="postgres", dsn=_dsn(DATABASE))
        results = {}
        for label, source in (
            ("custom", {"target": "db"}),
            ("directory", {"target": "db", "format": "directory", "jobs": 2}),
        ):
            config = BackupsConfig.model_validate(
                {"repository": str(work / f"repo-{label}"), "sources": {"db": source}}
            )
            env = service.BackupEnv(config, {"db": target})
            started = time.perf_counter()
            backup = service.create(env, "db").backup
            elapsed = time.perf_counter() - started
            stored = backup.manifest["data"]["stored_bytes"]
            results[label] = (env, backup, elapsed, stored)
            print(
                f"upkeep {label:<9} (zstd-3):   {elapsed:7.1f} s  {stored / 1e6:8.1f} MB"
                f"  ({elapsed / peer_s:.2f}x pg_dump's time, {stored / peer_bytes:.2f}x its size)"
            )
        env, backup, _, _ = results["directory"]
        drill = service.drill(env, "db")
        print(
            "upkeep drill (pg_restore -j2 into scratch, counts compared): "
            f"RTO {drill.rto_s or 0:.1f} s, passed {drill.passed}"
        )
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute('CREATE DATABASE "upkeep_bench_restore"')
        try:
            restore_s = timed(
                [
                    "pg_restore",
                    "-j",
                    "2",
                    "--no-owner",
                    f"--dbname={_dsn('upkeep_bench_restore')}",
                    str(peer_file),
                ]
            )
            print(f"pg_restore -j2 of pg_dump's file:                       {restore_s:.1f} s")
        finally:
            with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
                admin.execute('DROP DATABASE IF EXISTS "upkeep_bench_restore" WITH (FORCE)')
    if not arguments.keep:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
