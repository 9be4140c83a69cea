"""MySQL/MariaDB probes against the real local server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pymysql
import pytest
from pydantic import ValidationError
from pymysql.connections import Connection

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.mysql import ConnectionsProbe, MysqlTarget, PingProbe, parse_dsn

pytestmark = pytest.mark.mysql


def connect(dsn: str) -> Connection[Any]:
    """Given a test DSN, open a PyMySQL connection to it (the caller closes it)."""
    address = parse_dsn(dsn)
    return pymysql.connect(
        host=address.host,
        port=address.port,
        user=address.user,
        password=address.password,
        database=address.database,
        connect_timeout=5,
    )


def scalar(dsn: str, query: str) -> Any:
    """Given a DSN and a one-value query, run it on a fresh connection and return the value."""
    connection = connect(dsn)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            row = cursor.fetchone()
    finally:
        connection.close()
    assert row is not None
    return row[0]


def with_port(dsn: str, port: int) -> str:
    """Given a DSN, return it pointing at another port on the same host."""
    parts = urlsplit(dsn)
    return parts._replace(netloc=f"{parts.hostname}:{port}").geturl()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A local TCP port that accepts connections and never answers."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in writers:
        writer.close()
    server.close()
    await server.wait_closed()


def test_dsn_parsing_decodes_credentials_and_fills_defaults() -> None:
    full = parse_dsn("mysql://app:p%40ss%3Aword@db.internal:3307/orders")
    assert (full.host, full.port, full.user, full.password, full.database) == (
        "db.internal",
        3307,
        "app",
        "p@ss:word",
        "orders",
    )
    bare = parse_dsn("mariadb://db.internal")
    assert (bare.host, bare.port, bare.user, bare.password, bare.database) == (
        "db.internal",
        3306,
        "root",
        "",
        None,
    )


@pytest.mark.parametrize(
    "dsn",
    [
        "mysql://app:hunter2-secret@db:notaport/orders",
        "mysql://root:S3cr#tPassw0rd@127.0.0.1:3306/test",
        "mysql://root:S3cr/tPassw0rd@127.0.0.1:3306/test",
        "mysql://root:S3cr?tPassw0rd@127.0.0.1:3306/test",
    ],
)
def test_a_malformed_dsn_is_a_target_error_that_quotes_no_part_of_it(dsn: str) -> None:
    with pytest.raises(ValidationError) as caught:
        MysqlTarget(dsn=dsn)
    (error,) = caught.value.errors()
    assert error["loc"] == ("dsn",)
    assert "percent-encode" in error["msg"]
    for fragment in ("hunter2", "secret", "notaport", "S3cr", "Passw0rd"):
        assert fragment not in error["msg"]
    assert MysqlTarget(dsn="mysql://root:S3cr%23tPassw0rd@127.0.0.1/test").dsn


async def test_ping_reports_the_server_version_and_a_latency(mysql_dsn: str) -> None:
    outcome = await run_probe(PingProbe, MysqlTarget, {"dsn": mysql_dsn})

    assert outcome.metrics["version"] == scalar(mysql_dsn, "SELECT VERSION()")
    latency = outcome.metrics["latency_ms"]
    assert isinstance(latency, float)
    assert 0 < latency < 10_000


async def test_connections_rise_with_extra_idle_connections(mysql_dsn: str) -> None:
    target = {"dsn": mysql_dsn}
    before = await run_probe(ConnectionsProbe, MysqlTarget, target)
    extra = [connect(mysql_dsn) for _ in range(3)]
    try:
        after = await run_probe(ConnectionsProbe, MysqlTarget, target)
    finally:
        for connection in extra:
            connection.close()

    metrics = after.metrics
    maximum = int(scalar(mysql_dsn, "SELECT @@max_connections"))
    assert metrics["max"] == maximum
    assert int(metrics["total"]) >= int(before.metrics["total"]) + 3
    assert int(metrics["idle"]) >= 3
    assert int(metrics["active"]) >= 1  # the probe's own statement
    assert int(metrics["active"]) + int(metrics["idle"]) == int(metrics["total"])
    assert metrics["usage_percent"] == round(int(metrics["total"]) / maximum * 100, 3)


async def test_a_running_statement_counts_as_active(mysql_dsn: str) -> None:
    sleeper = connect(mysql_dsn)

    def sleep() -> None:
        with sleeper.cursor() as cursor:
            cursor.execute("SELECT SLEEP(2)")

    try:
        sleeping = asyncio.create_task(asyncio.to_thread(sleep))
        await asyncio.sleep(0.5)
        outcome = await run_probe(ConnectionsProbe, MysqlTarget, {"dsn": mysql_dsn})
        await sleeping
    finally:
        sleeper.close()

    assert int(outcome.metrics["active"]) >= 2  # the sleeper and the probe itself


async def test_refused_port_is_unreachable(mysql_dsn: str) -> None:
    with pytest.raises(TargetUnreachable, match=r"Connection refused"):
        await run_probe(PingProbe, MysqlTarget, {"dsn": with_port(mysql_dsn, 1)})


async def test_wrong_password_is_unreachable_and_not_echoed(mysql_dsn: str) -> None:
    password = "upkeep-not-a-real-password"
    parts = urlsplit(mysql_dsn)
    dsn = parts._replace(
        netloc=f"{parts.username or 'root'}:{password}@{parts.hostname}:{parts.port or 3306}"
    ).geturl()

    with pytest.raises(TargetUnreachable, match="Access denied") as raised:
        await run_probe(ConnectionsProbe, MysqlTarget, {"dsn": dsn})

    assert password not in str(raised.value)


async def test_missing_database_is_unreachable(mysql_dsn: str) -> None:
    dsn = urlsplit(mysql_dsn)._replace(path="/upkeep_no_such_database").geturl()
    with pytest.raises(TargetUnreachable, match="Unknown database"):
        await run_probe(PingProbe, MysqlTarget, {"dsn": dsn})


async def test_silent_server_is_unreachable_within_the_timeout(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(TargetUnreachable, match="did not answer within 1s"):
        await run_probe(
            PingProbe,
            MysqlTarget,
            {"dsn": f"mysql://root@127.0.0.1:{silent_port}/test"},
            timeout_s=1.0,
        )
    assert time.monotonic() - started < 3
