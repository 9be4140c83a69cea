"""The analyzer probes (levels, security, access) on real files, run after run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import zstandard
from pydantic import ValidationError

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.logs import AccessParams, AccessProbe, LevelsProbe, LogsTarget, SecurityProbe

NOW = datetime.now(UTC)


def _iso(age: timedelta) -> str:
    return (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")


def _access_line(age: timedelta, path: str, status: int, seconds: float) -> str:
    moment = (datetime.now(UTC) - age).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'10.0.0.1 - - [{moment}] "GET {path} HTTP/1.1" {status} 512 "-" "curl/8" {seconds}\n'


async def test_levels_counts_the_window_and_then_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(
        f"{_iso(timedelta(hours=3))} ERROR too old\n"
        f"{_iso(timedelta(minutes=20))} ERROR db timeout\n"
        "Traceback (most recent call last):\n"  # a continuation: no level of its own
        f"{_iso(timedelta(minutes=10))} CRITICAL disk full\n"
        f"{_iso(timedelta(minutes=5))} WARNING slow query\n"
        f"{_iso(timedelta(minutes=1))} INFO fine\n"
    )
    target = {"path": str(tmp_path)}
    params = {"window": "1h", "pattern": "timeout"}
    first = await run_probe(LevelsProbe, LogsTarget, target, params)
    assert first.metrics == {
        "lines": 5,
        "critical": 1,
        "errors": 2,
        "warnings": 1,
        "matches": 1,
        "errors_per_min": pytest.approx(2 / 60, abs=0.001),
    }
    with open(log, "a") as handle:
        handle.write(f"{_iso(timedelta(0))} ERROR another timeout\n")
    second = await run_probe(LevelsProbe, LogsTarget, target, params)
    assert second.metrics["errors"] == 3 and second.metrics["matches"] == 2
    assert "3 errors (1 critical)" in second.message


async def test_security_counts_failed_logins_and_denied_requests(tmp_path: Path) -> None:
    stamp = (datetime.now(UTC) - timedelta(minutes=2)).astimezone().strftime("%b %d %H:%M:%S")
    (tmp_path / "auth.log").write_text(
        f"{stamp} host sshd[1]: Failed password for root from 203.0.113.9 port 22 ssh2\n"
        f"{stamp} host sshd[1]: Invalid user admin from 203.0.113.9 port 22\n"
        f"{stamp} host sshd[1]: Accepted publickey for deploy from 10.0.0.2\n"
        f"{stamp} host app[2]: AUTH_FAILED user=bob\n"
    )
    (tmp_path / "access.log").write_text(
        _access_line(timedelta(minutes=1), "/admin", 403, 0.01)
        + _access_line(timedelta(minutes=1), "/api/me", 401, 0.01)
        + _access_line(timedelta(minutes=1), "/", 200, 0.01)
    )
    outcome = await run_probe(SecurityProbe, LogsTarget, {"path": str(tmp_path)}, {"window": "15m"})
    assert outcome.metrics == {"events": 5, "failed_logins": 3, "denied_requests": 2}
    assert "Failed password 1" in outcome.message


async def test_access_gives_rates_and_percentiles_per_window_and_endpoint(tmp_path: Path) -> None:
    lines = [_access_line(timedelta(hours=2), "/api/orders/1", 500, 9.0)]  # outside the window
    lines += [
        _access_line(timedelta(minutes=2), f"/api/orders/{n}", 200, n / 1000) for n in range(1, 101)
    ]
    lines += [_access_line(timedelta(minutes=1), "/health", 200, 0.001) for _ in range(20)]
    lines += [_access_line(timedelta(minutes=1), "/api/orders/7", 502, 2.0)]
    archive = tmp_path / "access.log-20261201-000000.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress("".join(lines[:50]).encode()))
    (tmp_path / "access.log").write_text("".join(lines[50:]))
    target = {"path": str(tmp_path), "pattern": "access.log*"}
    outcome = await run_probe(AccessProbe, LogsTarget, target, {"window": "5m"})
    metrics = outcome.metrics
    assert metrics["requests"] == 121 and metrics["errors"] == 1
    assert metrics["error_rate_percent"] == pytest.approx(100 / 121, abs=0.001)
    assert metrics["requests_per_min"] == pytest.approx(121 / 5, abs=0.001)
    p99, p95, p50 = metrics["p99_ms"], metrics["p95_ms"], metrics["p50_ms"]
    assert isinstance(p99, float) and isinstance(p95, float) and isinstance(p50, float)
    assert p99 >= p95 >= p50 > 0
    assert "slowest /api/orders/:id" in outcome.message
    orders = await run_probe(
        AccessProbe, LogsTarget, target, {"window": "5m", "endpoint": "/api/orders*"}
    )
    assert orders.metrics["requests"] == 101
    assert orders.metrics["p50_ms"] == pytest.approx(51.0)
    assert orders.metrics["p99_ms"] == pytest.approx(100.0)  # nearest rank: the 100th of 101


async def test_access_without_traffic_or_without_times(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text("")
    quiet = await run_probe(AccessProbe, LogsTarget, {"path": str(log)}, {"window": "5m"})
    assert quiet.metrics["requests"] == 0 and quiet.metrics["p95_ms"] == 0.0
    moment = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    log.write_text(f'10.0.0.1 - - [{moment}] "GET / HTTP/1.1" 200 5 "-" "curl/8"\n')
    untimed = await run_probe(
        AccessProbe, LogsTarget, {"path": str(tmp_path / "access.log")}, {"window": "6m"}
    )
    assert untimed.metrics["requests"] == 1 and "p95_ms" not in untimed.metrics
    assert "no response times in the log" in untimed.message


async def test_a_missing_path_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await run_probe(LevelsProbe, LogsTarget, {"path": str(tmp_path / "none")})


def test_a_window_under_a_minute_is_refused() -> None:
    with pytest.raises(ValidationError, match="at least 1m"):
        AccessParams.model_validate({"window": "30s"})
