"""Log analysis on constructed logs with known answers: access, JSON, plain, archives."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import zstandard

from upkeep.analysis.logs import analyze, endpoint_of, sparkline


def _access(path: Path, compress: str = "") -> Path:
    lines = []
    # 100 requests to /api/users/<id> (times 1..100 ms; every 10th a 500), 50 to /health.
    for n in range(100):
        status = 500 if n % 10 == 0 else 200
        minute = 0 if n < 60 else 7  # two 5-minute bins: 12:00 and 12:05
        lines.append(
            f"10.0.0.{n % 7} - - [23/Nov/2026:12:{minute:02d}:{n % 60:02d} +0000] "
            f'"GET /api/users/{n}?x=1 HTTP/1.1" {status} 512 "-" "curl/8" {(n + 1) / 1000:.3f}'
        )
    for n in range(50):
        lines.append(
            f'10.0.0.9 - - [23/Nov/2026:12:01:{n:02d} +0000] "GET /health HTTP/1.1" '
            f'{401 if n == 0 else 200} 2 "-" "probe" 0.001'
        )
    data = ("\n".join(lines) + "\n").encode()
    if compress == "gz":
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    elif compress == "zst":
        path = path.with_name(path.name + ".zst")
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


def test_access_logs_give_counts_error_rates_and_percentiles_per_endpoint_and_bin(
    tmp_path: Path,
) -> None:
    result = analyze([_access(tmp_path / "access.log")])
    report = result.to_json()
    assert report["requests"] == 150 and report["formats"] == {"combined": 1}
    users = report["endpoints"]["/api/users/:id"]
    assert users["requests"] == 100 and users["errors"] == 10
    assert users["error_rate_percent"] == 10.0
    assert (users["p50_ms"], users["p95_ms"], users["p99_ms"]) == (51.0, 96.0, 100.0)
    assert report["endpoints"]["/health"]["requests"] == 50
    assert report["bins"] == {
        "2026-11-23T12:00:00+00:00": report["bins"]["2026-11-23T12:00:00+00:00"],
        "2026-11-23T12:05:00+00:00": report["bins"]["2026-11-23T12:05:00+00:00"],
    }
    assert report["bins"]["2026-11-23T12:05:00+00:00"]["requests"] == 40
    assert report["security_events"] == {"HTTP 401": 1}


def test_gzip_and_zstd_archives_read_the_same(tmp_path: Path) -> None:
    plain = analyze([_access(tmp_path / "a.log")]).to_json()
    for kind in ("gz", "zst"):
        assert analyze([_access(tmp_path / f"b-{kind}.log", kind)]).to_json() == plain


def test_since_keeps_only_recent_bins(tmp_path: Path) -> None:
    result = analyze([_access(tmp_path / "a.log")], since=datetime(2026, 11, 23, 12, 5, tzinfo=UTC))
    assert result.to_json()["requests"] == 40


def test_plain_and_json_logs_give_levels_patterns_and_security_events(tmp_path: Path) -> None:
    plain = tmp_path / "app.log"
    plain.write_text(
        "2026-11-23 12:00:01 ERROR db timeout after 5s\n"
        "2026-11-23 12:00:02 WARNING slow query\n"
        "2026-11-23 12:00:03 INFO ok\n"
        "Nov 23 12:00:04 host sshd[1]: Failed password for root from 10.0.0.1\n"
        "2026-11-23 12:00:05 ERROR AUTH_FAILED user=bob\n"
    )
    structured = tmp_path / "app.json"
    structured.write_text(
        "\n".join(
            json.dumps(record)
            for record in [
                {"level": "error", "msg": "boom", "time": "2026-11-23T12:00:00Z"},
                {"level": "info", "msg": "GET", "path": "/a/1", "status": 503, "duration_ms": 7},
                {"severity": "WARNING", "message": "authentication failure for alice"},
            ]
        )
        + "\n"
    )
    report = analyze([plain, structured], patterns=["timeout", "slow"]).to_json()
    assert report["formats"] == {"plain": 1, "json": 1}
    assert report["levels"] == {"ERROR": 3, "WARN": 2, "INFO": 2}
    assert report["patterns"] == {"timeout": 1, "slow": 1}
    assert report["security_events"] == {
        "Failed password": 1,
        "AUTH_FAILED": 1,
        "authentication failure": 1,
    }
    assert report["endpoints"]["/a/:id"]["errors"] == 1


def test_endpoints_and_sparkline() -> None:
    assert endpoint_of("/users/42/orders/7?page=2") == "/users/:id/orders/:id"
    assert endpoint_of("/files/3f2a9c1e5b7d4f60a1b2") == "/files/:id"
    assert sparkline([0, 5, 10]) == "▁▄█"
    assert sparkline([]) == ""
