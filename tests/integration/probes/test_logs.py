"""Log probes against real files: windows, archives, stack traces, missing paths."""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.conftest import run_probe
from upkeep.probes.base import TargetUnreachable
from upkeep.probes.logs import ErrorsProbe, LogsTarget, SizeProbe


def iso(age: timedelta) -> str:
    """Given an age, return that moment (UTC) as an ISO-8601 stamp with a Z."""
    return (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def naive_local(age: timedelta) -> str:
    """Given an age, return that moment as this machine's local time, without an offset."""
    return (datetime.now(UTC) - age).astimezone().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]


def set_age(path: Path, age: timedelta) -> None:
    moment = (datetime.now(UTC) - age).timestamp()
    os.utime(path, (moment, moment))


MINUTES_10 = timedelta(minutes=10)
HOURS_3 = timedelta(hours=3)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    """A log directory with errors inside and outside the last hour, in several shapes."""
    directory = tmp_path / "logs"
    directory.mkdir()
    (directory / "app.log").write_text(
        "\n".join(
            [
                f"{iso(HOURS_3)} ERROR old failure",
                "Traceback (most recent call last):",
                "RuntimeError: CRITICAL old detail",  # continuation of an old record
                f"{iso(HOURS_3)} INFO old fine",
                f"{iso(MINUTES_10)} ERROR new failure",  # counts
                "Traceback (most recent call last):",
                '  File "app.py", line 3, in <module>',
                "RuntimeError: CRITICAL new detail",  # counts: continuation of a new record
                f"{naive_local(MINUTES_10)} - app - FATAL - local naive time",  # counts
                f"{naive_local(HOURS_3)} - app - FATAL - local naive, old",
                f"{iso(timedelta(minutes=1))} INFO all good",
            ]
        )
        + "\n"
    )
    (directory / "access.log").write_text(
        "\n".join(
            [
                _combined(HOURS_3, 'GET /old HTTP/1.1" 500 ERROR'),
                _combined(MINUTES_10, 'GET /new HTTP/1.1" 500 ERROR'),  # counts
                _combined(MINUTES_10, 'GET /ok HTTP/1.1" 200 fine'),
            ]
        )
        + "\n"
    )
    (directory / "events.log").write_text(
        "\n".join(
            [
                f'{{"time": "{iso(HOURS_3)}", "level": "ERROR"}}',
                f'{{"ts": {int((datetime.now(UTC) - MINUTES_10).timestamp() * 1000)}, '
                '"level": "ERROR"}',  # counts
                f'{{"@timestamp": "{iso(MINUTES_10)}", "level": "INFO"}}',
            ]
        )
        + "\n"
    )
    # Rotated and compressed last night; recent content as far as the file times go.
    with gzip.open(directory / "app.log.1.gz", "wt") as archive:
        archive.write(f"{iso(HOURS_3)} ERROR archived old\n")
        archive.write(f"{iso(MINUTES_10)} ERROR archived recent\n")  # counts with *.log*
    # A file nobody has written to for two days is skipped unread, whatever it says.
    stale = directory / "stale.log"
    stale.write_text(f"{iso(MINUTES_10)} ERROR would count if read\n")
    set_age(stale, timedelta(days=2))
    (directory / "notes.txt").write_text(f"{iso(MINUTES_10)} ERROR not a log by the glob\n")
    return directory


def _combined(age: timedelta, request: str) -> str:
    moment = (datetime.now(UTC) - age).strftime("%d/%b/%Y:%H:%M:%S +0000")
    return f'127.0.0.1 - - [{moment}] "{request}'


async def test_errors_counts_only_lines_inside_the_window(log_dir: Path) -> None:
    outcome = await run_probe(ErrorsProbe, LogsTarget, {"path": str(log_dir)}, {"window": "1h"})
    # app.log 3, access.log 1, events.log 1; the .gz is not matched by *.log.
    assert outcome.metrics["count"] == 5
    assert outcome.metrics["rate_per_min"] == pytest.approx(5 / 60, abs=0.001)
    assert "3 of 4 files" in outcome.message


async def test_errors_reads_gzip_archives_the_glob_matches(log_dir: Path) -> None:
    outcome = await run_probe(
        ErrorsProbe, LogsTarget, {"path": str(log_dir), "pattern": "*.log*"}, {"window": "1h"}
    )
    assert outcome.metrics["count"] == 6


async def test_a_wider_window_takes_in_the_older_lines(log_dir: Path) -> None:
    outcome = await run_probe(
        ErrorsProbe, LogsTarget, {"path": str(log_dir), "pattern": "*.log*"}, {"window": "4h"}
    )
    # everything above plus the old ones: app.log 3 + 3, access 1 + 1, events 1 + 1, gz 1 + 1
    assert outcome.metrics["count"] == 12
    assert outcome.metrics["rate_per_min"] == pytest.approx(12 / 240, abs=0.001)


async def test_custom_pattern(log_dir: Path) -> None:
    outcome = await run_probe(
        ErrorsProbe, LogsTarget, {"path": str(log_dir)}, {"pattern": "FATAL", "window": "1h"}
    )
    assert outcome.metrics["count"] == 1


async def test_a_single_file_path_ignores_the_glob(log_dir: Path) -> None:
    outcome = await run_probe(
        ErrorsProbe, LogsTarget, {"path": str(log_dir / "notes.txt")}, {"window": "1h"}
    )
    assert outcome.metrics["count"] == 1


async def test_lines_without_any_timestamp_take_the_file_time(tmp_path: Path) -> None:
    plain = tmp_path / "plain.log"
    plain.write_text("ERROR one\nnothing\nERROR two\n")
    recent = await run_probe(ErrorsProbe, LogsTarget, {"path": str(plain)}, {"window": "1h"})
    assert recent.metrics["count"] == 2
    set_age(plain, timedelta(hours=2))
    old = await run_probe(ErrorsProbe, LogsTarget, {"path": str(plain)}, {"window": "1h"})
    assert old.metrics["count"] == 0


async def test_invalid_utf8_is_read_with_replacement(tmp_path: Path) -> None:
    (tmp_path / "bin.log").write_bytes(
        f"{iso(MINUTES_10)} ERROR caf\xe9 \xff\xfe broken\n".encode("latin-1")
        + b"\x00\x01 ERROR binary junk\n"
    )
    outcome = await run_probe(ErrorsProbe, LogsTarget, {"path": str(tmp_path)})
    assert outcome.metrics["count"] == 2


async def test_a_damaged_archive_is_named_and_the_rest_still_counts(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text(f"{iso(MINUTES_10)} ERROR fine\n")
    whole = gzip.compress(f"{iso(MINUTES_10)} ERROR in archive\n".encode() * 50)
    (tmp_path / "b.log.gz").write_bytes(whole[: len(whole) // 2])  # cut mid-stream
    (tmp_path / "c.log.gz").write_bytes(b"this is not gzip at all\n")
    outcome = await run_probe(ErrorsProbe, LogsTarget, {"path": str(tmp_path), "pattern": "*.log*"})
    assert int(outcome.metrics["count"]) >= 1
    assert "b.log.gz" in outcome.message
    assert "c.log.gz" in outcome.message


async def test_an_empty_directory_counts_nothing(tmp_path: Path) -> None:
    outcome = await run_probe(ErrorsProbe, LogsTarget, {"path": str(tmp_path)})
    assert outcome.metrics == {"count": 0, "rate_per_min": 0.0}


async def test_missing_directory_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await run_probe(ErrorsProbe, LogsTarget, {"path": str(tmp_path / "gone")})
    with pytest.raises(TargetUnreachable, match="does not exist"):
        await run_probe(SizeProbe, LogsTarget, {"path": str(tmp_path / "gone")})


async def test_a_scan_past_the_timeout_is_unreachable(tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    line = f"{iso(MINUTES_10)} ERROR something broke at a rather verbose length\n"
    big.write_text(line * 400_000)
    with pytest.raises(TargetUnreachable, match="took longer than"):
        await run_probe(ErrorsProbe, LogsTarget, {"path": str(big)}, timeout_s=0.05)


def test_invalid_regex_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ErrorsProbe.Params.model_validate({"pattern": "ERROR|(FATAL"})


async def test_size_sums_the_matching_files(log_dir: Path) -> None:
    outcome = await run_probe(SizeProbe, LogsTarget, {"path": str(log_dir)})
    logs = [path for path in log_dir.iterdir() if path.name.endswith(".log")]
    assert outcome.metrics == {
        "bytes": sum(path.stat().st_size for path in logs),
        "files": len(logs),
    }
    everything = await run_probe(SizeProbe, LogsTarget, {"path": str(log_dir), "pattern": "*.log*"})
    assert everything.metrics["files"] == len(logs) + 1


async def test_size_recurses_with_a_double_star_glob(tmp_path: Path) -> None:
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    (tmp_path / "top.log").write_text("a" * 10)
    (tmp_path / "nested" / "deeper" / "low.log").write_text("b" * 5)
    outcome = await run_probe(SizeProbe, LogsTarget, {"path": str(tmp_path), "pattern": "**/*.log"})
    assert outcome.metrics == {"bytes": 15, "files": 2}
