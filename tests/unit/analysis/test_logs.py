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


# --- --since windows every figure, in every format -------------------------------------------

SINCE = datetime(2026, 11, 23, 12, 3, tzinfo=UTC)
"""Mid-bin on purpose: the 12:00 bin holds lines on both sides of it."""


def _old_and_new(old: list[str], new: list[str], path: Path) -> Path:
    path.write_text("\n".join([*old, *new]) + "\n")
    return path


def _combined(minute: int, second: int, status: int, path: str = "/api/x") -> str:
    return (
        f"10.0.0.1 - - [23/Nov/2026:12:{minute:02d}:{second:02d} +0000] "
        f'"GET {path} HTTP/1.1" {status} 5 "-" "curl/8" 0.010'
    )


def _json(minute: int, status: int, level: str, message: str, ts: object = None) -> str:
    stamp = f"2026-11-23T12:{minute:02d}:00Z" if ts is None else ts
    return json.dumps(
        {"ts": stamp, "level": level, "msg": message, "path": "/api/x", "status": status}
    )


def _windowed_only(report: dict[str, object], expected: dict[str, object]) -> None:
    for key, value in expected.items():
        assert report[key] == value, key


def test_since_windows_every_figure_of_a_combined_log(tmp_path: Path) -> None:
    # Before 12:03: two 500s, a 401 and a pattern hit, in the same 5-minute bin as the
    # window's start (the old filter kept whole bins, and counted lines and patterns over
    # the whole file).
    log = _old_and_new(
        [_combined(1, 0, 500), _combined(2, 59, 500), _combined(2, 0, 401, "/login")],
        [_combined(3, 0, 200), _combined(4, 0, 503), _combined(12, 0, 200)],
        tmp_path / "access.log",
    )
    report = analyze([log], since=SINCE, patterns=["GET"]).to_json()
    _windowed_only(
        report,
        {
            "lines": 3,
            "requests": 3,
            "patterns": {"GET": 3},
            "statuses": {"200": 2, "503": 1},
            "security_events": {},
        },
    )
    assert report["endpoints"]["/api/x"]["errors"] == 1
    assert report["bins"]["2026-11-23T12:00:00+00:00"]["requests"] == 2
    assert report["bins"]["2026-11-23T12:10:00+00:00"]["requests"] == 1


def test_since_windows_every_figure_of_a_json_log(tmp_path: Path) -> None:
    log = _old_and_new(
        [
            _json(0, 500, "error", "authentication failure for bob"),
            # Epoch seconds (11:00 UTC) and a continuation line without a time of its own.
            _json(0, 500, "error", "old", ts=1795431600),
            json.dumps(
                {"level": "error", "msg": "trace of the old one", "status": 500, "path": "/api/x"}
            ),
        ],
        [_json(3, 200, "info", "fine"), _json(5, 503, "error", "boom")],
        tmp_path / "app.json",
    )
    report = analyze([log], since=SINCE, patterns=["error"]).to_json()
    _windowed_only(
        report,
        {
            "lines": 2,
            "requests": 2,
            "levels": {"INFO": 1, "ERROR": 1},
            "patterns": {"error": 1},
            "statuses": {"200": 1, "503": 1},
            "security_events": {},
        },
    )


def _naive(minute: int, second: int) -> str:
    """Return 12:MM:SS UTC on the test's day as a plain log without an offset writes it: in
    the local time of the machine (the documented reading of a time without an offset),
    so the test holds in every zone the suite runs in."""
    moment = datetime(2026, 11, 23, 12, minute, second, tzinfo=UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def test_since_windows_every_figure_of_a_plain_log(tmp_path: Path) -> None:
    # It wrote 12:00 without an offset and read it as UTC: wrong wherever TZ is not UTC.
    log = _old_and_new(
        [
            f"{_naive(0, 1)} ERROR Failed password for root",
            "  at a stack trace line of the old error",
        ],
        [f"{_naive(3, 0)} WARNING slow", f"{_naive(4, 0)} ERROR timeout"],
        tmp_path / "app.log",
    )
    report = analyze([log], since=SINCE, patterns=["stack", "slow"]).to_json()
    _windowed_only(
        report,
        {
            "lines": 2,
            "levels": {"WARN": 1, "ERROR": 1},
            "patterns": {"slow": 1},
            "security_events": {},
        },
    )


def test_a_date_in_a_request_path_is_not_the_lines_time(tmp_path: Path) -> None:
    # The bracketed field is the combined line's time; an ISO date in the path must not
    # move an old request into the window.
    log = _old_and_new(
        [_combined(0, 0, 500, "/reports/2026-11-23T12:30:00Z")], [], tmp_path / "a.log"
    )
    assert analyze([log], since=SINCE, log_format="combined").to_json()["lines"] == 0


def _rotated(log: Path, data: bytes) -> bytes:
    """Write ``data`` to ``log``, rotate it losslessly and return what the live log holds."""
    from upkeep.tasks.logs.rotation import rotate

    log.write_bytes(data)
    assert rotate(log, moment=datetime(2026, 11, 23, tzinfo=UTC)) is not None
    return log.read_bytes()


def test_a_rotated_plain_log_counts_as_many_lines_as_levels(tmp_path: Path) -> None:
    """After a collapse the live log began with the end of a line (``37:32,270 INFO …``
    or worse, no level at all): 32 lines, 31 levels. Now it begins with empty lines, which
    count nothing, then whole lines."""
    log = tmp_path / "app.log"
    data = b"".join(
        b"2026-11-23 13:%02d:%02d,270 %s request %05d served by worker %s\n"
        % (n // 60 % 60, n % 60, (b"INFO", b"WARN", b"ERROR")[n % 3], n, b"w" * (n % 50))
        for n in range(100)
    )
    live = _rotated(log, data)
    assert live.startswith(b"\n")
    whole = live.lstrip(b"\n")
    assert data.endswith(whole) and data[: len(data) - len(whole)].endswith(b"\n")
    found = analyze([log])
    assert found.lines == sum(found.levels.values()) == whole.count(b"\n")


def test_a_rotated_json_log_is_still_json_whatever_number_of_empty_lines_it_begins_with(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    line = json.dumps({"level": "error", "message": "x" * 960}).encode() + b"\n"
    live = _rotated(log, line * 10)  # the cut at 8 KiB falls 754 bytes before a line ends
    assert len(live) - len(live.lstrip(b"\n")) > 20  # more than the format sample
    found = analyze([log])
    assert found.formats == {"json": 1}
    assert found.lines == found.levels["ERROR"] == 1


def test_empty_lines_are_no_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"\n\r\n2026-11-23 INFO a\n\n2026-11-23 ERROR b\r\n\n")
    found = analyze([log], patterns=["^"])
    assert (found.lines, dict(found.levels), found.patterns["^"]) == (2, {"INFO": 1, "ERROR": 1}, 2)
