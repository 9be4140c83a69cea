"""The runner against real sockets: per-check timeouts, statuses for every failure mode."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import ClassVar, ParamSpec, TypeVar

import pytest
from aiohttp import web

from tests.helpers import compiled
from upkeep.config.loader import CompiledCheck
from upkeep.core.redaction import Redactor
from upkeep.core.status import Status
from upkeep.engine.runner import CheckRunner, run_checks, select_checks
from upkeep.io.http import HttpClient
from upkeep.probes.base import MetricSpec, NoParams, Probe, ProbeContext, ProbeOutcome
from upkeep.probes.http import HttpTarget, RequestProbe
from upkeep.probes.tcp import ConnectProbe, TcpTarget


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(0.3)
        return web.Response(text="slow")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=503, text="down")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/slow", slow)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


def http_check(
    name: str,
    url: str,
    timeout_s: float = 5.0,
    *,
    warn: str | None = None,
    crit: str | None = None,
) -> CompiledCheck:
    return compiled(
        name,
        RequestProbe,
        HttpTarget(kind="http", url=url),
        timeout_s=timeout_s,
        warn=warn,
        crit=crit,
    )


async def test_a_hung_target_costs_its_own_timeout_not_everyones(
    web_port: int, silent_port: int
) -> None:
    hung = http_check("hung", f"http://127.0.0.1:{silent_port}/", timeout_s=1.0)
    fast = [http_check(f"fast-{index}", f"http://127.0.0.1:{web_port}/ok") for index in range(30)]
    started = time.perf_counter()
    results = await run_checks([hung, *fast], redactor=Redactor(), concurrency=8)
    elapsed = time.perf_counter() - started
    by_name = {result.check: result for result in results}
    assert by_name["hung"].status is Status.CRITICAL
    assert "1s" in by_name["hung"].message
    assert 0.9 <= by_name["hung"].duration_ms / 1000 < 1.5
    assert all(by_name[f"fast-{index}"].status is Status.OK for index in range(30))
    assert max(by_name[f"fast-{index}"].duration_ms for index in range(30)) < 900
    assert elapsed < 1.8


async def test_many_hung_targets_time_out_together(silent_port: int) -> None:
    hung = [
        http_check(f"hung-{index}", f"http://127.0.0.1:{silent_port}/", timeout_s=1.0)
        for index in range(20)
    ]
    started = time.perf_counter()
    results = await run_checks(hung, redactor=Redactor(), concurrency=256)
    assert time.perf_counter() - started < 2.0
    assert {result.status for result in results} == {Status.CRITICAL}


async def test_statuses_from_conditions_and_failures(web_port: int) -> None:
    refused_port = 1  # nothing listens on port 1 here
    checks = [
        http_check("fine", f"http://127.0.0.1:{web_port}/ok", crit="status_code != 200"),
        http_check("down", f"http://127.0.0.1:{web_port}/broken", crit="status_code != 200"),
        http_check("slow", f"http://127.0.0.1:{web_port}/slow", warn="response_time_ms > 200"),
        http_check("refused", f"http://127.0.0.1:{refused_port}/"),
    ]
    results = {result.check: result for result in await run_checks(checks, redactor=Redactor())}
    assert results["fine"].status is Status.OK
    assert results["down"].status is Status.CRITICAL
    assert results["down"].message.startswith("crit: status_code != 200 (status_code=503)")
    assert results["slow"].status is Status.WARNING
    slow_ms = results["slow"].metrics["response_time_ms"]
    assert isinstance(slow_ms, float) and slow_ms >= 290
    assert results["refused"].status is Status.CRITICAL
    assert results["refused"].metrics == {}
    assert results["refused"].message


class ExplodingProbe(Probe[TcpTarget, NoParams]):
    target_kind: ClassVar[str] = "tcp"
    name: ClassVar[str] = "explode"
    summary: ClassVar[str] = "A probe with a bug."
    metrics: ClassVar[tuple[MetricSpec, ...]] = ()

    async def run(self, target: TcpTarget, params: NoParams, context: ProbeContext) -> ProbeOutcome:
        raise ZeroDivisionError(
            f"bug while probing with secret {context.extra.get('x', 'Sekrit-Value-1')}"
        )


async def test_a_probe_bug_is_unknown_with_the_reason_redacted() -> None:
    redactor = Redactor()
    redactor.add("Sekrit-Value-1")
    check = compiled("buggy", ExplodingProbe, TcpTarget(kind="tcp", host="127.0.0.1", port=9))
    http = HttpClient()
    try:
        (result,) = await CheckRunner(redactor=redactor, http=http).run_many([check])
    finally:
        await http.close()
    assert result.status is Status.UNKNOWN
    assert "ZeroDivisionError" in result.message
    assert "Sekrit" not in result.message and "***" in result.message


async def test_tcp_refused_is_critical_with_the_address() -> None:
    check = compiled("tcp", ConnectProbe, TcpTarget(kind="tcp", host="127.0.0.1", port=1))
    (result,) = await run_checks([check], redactor=Redactor())
    assert result.status is Status.CRITICAL
    assert "127.0.0.1:1" in result.message


def test_selection_by_names_and_labels() -> None:
    target = TcpTarget(kind="tcp", host="127.0.0.1", port=1)
    checks = [
        compiled("a", ConnectProbe, target, labels={"env": "prod", "tier": "web"}),
        compiled("b", ConnectProbe, target, labels={"env": "prod", "tier": "db"}),
        compiled("c", ConnectProbe, target, labels={"env": "staging"}),
    ]
    assert [check.name for check in select_checks(checks)] == ["a", "b", "c"]
    assert [check.name for check in select_checks(checks, labels={"env": "prod"})] == ["a", "b"]
    assert [
        check.name for check in select_checks(checks, labels={"env": "prod", "tier": "db"})
    ] == ["b"]
    assert [check.name for check in select_checks(checks, ["c", "a"])] == ["a", "c"]
    with pytest.raises(KeyError, match="nope"):
        select_checks(checks, ["a", "nope"])


HANG_S = 5.0

P = ParamSpec("P")
R = TypeVar("R")


def _hang_then(function: Callable[P, R]) -> Callable[P, R]:
    """Given a blocking function, return one that first hangs like a dead NFS mount."""

    def hung(*args: P.args, **kwargs: P.kwargs) -> R:
        time.sleep(HANG_S)
        return function(*args, **kwargs)

    return hung


@pytest.mark.parametrize("probe", ["host.disk", "logs.size", "logs.errors", "mysql.ping"])
def test_a_hung_blocking_call_does_not_hold_up_asyncio_run(
    probe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    from upkeep.probes import host, logs, mysql

    (tmp_path / "app.log").write_text("ERROR one\n")
    if probe == "host.disk":
        monkeypatch.setattr(psutil, "disk_usage", _hang_then(psutil.disk_usage))
        check = compiled(
            "d", host.DiskProbe, host.HostTarget(), timeout_s=0.5, params=host.DiskParams()
        )
    elif probe.startswith("logs."):
        monkeypatch.setattr(logs, "list_log_files", _hang_then(logs.list_log_files))
        target = logs.LogsTarget(path=str(tmp_path))
        if probe == "logs.size":
            check = compiled("l", logs.SizeProbe, target, timeout_s=0.5)
        else:
            params = logs.ErrorsParams()
            check = compiled("l", logs.ErrorsProbe, target, timeout_s=0.5, params=params)
    else:
        monkeypatch.setattr(mysql, "_session", _hang_then(mysql._session))
        mysql_target = mysql.MysqlTarget(dsn="mysql://root@127.0.0.1:1/test")
        check = compiled("m", mysql.PingProbe, mysql_target, timeout_s=0.5)

    started = time.perf_counter()
    (result,) = asyncio.run(run_checks([check], redactor=Redactor()))
    elapsed = time.perf_counter() - started

    assert result.status is Status.CRITICAL
    assert "0.5s" in result.message
    # asyncio.run no longer joins the thread that is still stuck in the call.
    assert elapsed < 2.0
