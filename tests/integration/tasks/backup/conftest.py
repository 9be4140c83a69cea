"""Real sources for backup tests: a PostgreSQL and a MariaDB database of their own, Redis
keys, a SQLite file and a directory of files; and a BackupEnv with a real SQLite store."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from upkeep.probes.registry import TARGET_KINDS
from upkeep.store.store import Store
from upkeep.tasks.backup.config import BackupsConfig
from upkeep.tasks.backup.service import BackupEnv

ORDERS = 5000
CUSTOMERS = 300


@pytest.fixture
def pg_database(postgres_dsn: str) -> Iterator[str]:
    """A database of its own with two schemas' tables; its DSN."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    name = f"upkeep_bk_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = make_conninfo(postgres_dsn, dbname=name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL)")
        connection.execute(
            "INSERT INTO customers (name) SELECT 'customer ' || n FROM generate_series(1, %s) n",
            (CUSTOMERS,),
        )
        connection.execute(
            "CREATE TABLE orders (id serial PRIMARY KEY, customer int REFERENCES customers,"
            " total numeric(10, 2), note text)"
        )
        connection.execute(
            "INSERT INTO orders (customer, total, note) SELECT 1 + n %% %s, n * 1.5, md5(n::text)"
            " FROM generate_series(1, %s) n",
            (CUSTOMERS, ORDERS),
        )
        connection.execute("CREATE SCHEMA audit")
        connection.execute("CREATE TABLE audit.events (id serial PRIMARY KEY, what text)")
        connection.execute("INSERT INTO audit.events (what) VALUES ('created'), ('filled')")
    yield dsn
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_database(mysql_dsn: str) -> Iterator[str]:
    """A MariaDB database of its own with two tables; its DSN."""
    import pymysql

    name = f"upkeep_bk_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"USE `{name}`")
            cursor.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40))")
            cursor.executemany(
                "INSERT INTO items VALUES (%s, %s)", [(n, f"item {n}") for n in range(1, 1201)]
            )
            cursor.execute("CREATE TABLE tags (id INT PRIMARY KEY, tag VARBINARY(16))")
            cursor.executemany(
                "INSERT INTO tags VALUES (%s, %s)", [(n, bytes([n])) for n in range(40)]
            )
        yield f"mysql://root@127.0.0.1:3306/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Path:
    """A SQLite database with two tables."""
    path = tmp_path / "data" / "app.db"
    path.parent.mkdir(parents=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    connection.executemany("INSERT INTO orders (total) VALUES (?)", [(n,) for n in range(700)])
    connection.execute("CREATE TABLE notes (body TEXT)")
    connection.execute("INSERT INTO notes VALUES ('hello')")
    connection.commit()
    connection.close()
    return path


@pytest.fixture
def file_tree(tmp_path: Path) -> Path:
    """A directory with nested files, an empty file and a symbolic link."""
    root = tmp_path / "data" / "etc"
    (root / "nginx" / "sites").mkdir(parents=True)
    (root / "nginx" / "nginx.conf").write_text("worker_processes 2;\n")
    (root / "nginx" / "sites" / "app").write_text("server { listen 80; }\n")
    (root / "empty").write_bytes(b"")
    (root / "blob.bin").write_bytes(bytes(range(256)) * 100)
    (root / "link").symlink_to("nginx/nginx.conf")
    return root


EnvFactory = Callable[..., BackupEnv]


@pytest.fixture
def backup_env(tmp_path: Path) -> Iterator[EnvFactory]:
    """Make a BackupEnv over ``tmp_path/repository`` with a real SQLite store's catalog."""
    store = Store.open(f"sqlite:///{tmp_path / 'store' / 'upkeep.db'}")

    def make(
        sources: dict[str, Any], targets: dict[str, Any] | None = None, **section: Any
    ) -> BackupEnv:
        config = BackupsConfig.model_validate(
            {"repository": str(tmp_path / "repository"), "sources": sources, **section}
        )
        parsed: dict[str, Any] = {}
        for name, raw in (targets or {}).items():
            parsed[name] = TARGET_KINDS[raw["kind"]].model.model_validate(raw)
        return BackupEnv(config, parsed, store.backups)

    yield make
    store.close()
