"""LogTail: each byte read once, rotation followed, nothing counted twice."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from upkeep.analysis.tail import LogTail
from upkeep.tasks.logs import rotation

HOUR = timedelta(hours=1)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _lines(count: int, level: str = "ERROR", age: timedelta = timedelta(0), start: int = 0) -> str:
    moment = datetime.now(UTC) - age
    return "".join(f"{_stamp(moment)} {level} line {start + index}\n" for index in range(count))


def _refresh(tail: LogTail, *paths: Path, deadline_s: float = 30.0) -> tuple[int, bool]:
    report = tail.refresh(
        list(paths),
        horizon=HOUR,
        now=datetime.now(UTC),
        deadline=time.monotonic() + deadline_s,
    )
    return report.bytes_read, report.complete


def _errors(tail: LogTail) -> int:
    return tail.window(datetime.now(UTC) - HOUR).levels["ERROR"]


def test_each_refresh_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    first = _lines(30)
    log.write_text(first)
    tail = LogTail("auto", ())
    assert _refresh(tail, log) == (len(first), True)
    assert _errors(tail) == 30
    second = _lines(5, start=30)
    last = f"{_stamp(datetime.now(UTC))} ERROR half a line\n"
    with open(log, "a") as handle:
        handle.write(second + last[:-4])  # the writer is mid-line
    assert _refresh(tail, log) == (len(second), True)
    assert _errors(tail) == 35  # the unfinished line waits for its newline
    with open(log, "a") as handle:
        handle.write(last[-4:])
    read, _ = _refresh(tail, log)
    assert read == len(last)
    assert _errors(tail) == 36


def test_lines_older_than_the_window_are_not_counted(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(4, age=3 * HOUR) + _lines(3, age=timedelta(minutes=10)))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    assert _errors(tail) == 3
    assert tail.window(datetime.now(UTC) - timedelta(minutes=5)).levels["ERROR"] == 0


def test_a_renamed_log_keeps_its_lines_and_the_new_one_is_read_from_its_start(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(10))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    os.rename(log, tmp_path / "app.log-20261201-000000")  # rename-mode rotation
    log.write_text(_lines(4, start=10))
    _refresh(tail, log)  # the pattern no longer lists the archive
    assert _errors(tail) == 14


def test_a_collapse_rotation_is_followed_without_counting_twice(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(2000))  # several filesystem blocks
    tail = LogTail("auto", ())
    _refresh(tail, log)
    assert _errors(tail) == 2000
    result = rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    assert result is not None and result.method == "collapse"
    assert log.stat().st_size < 4096 * 2  # the archived prefix is gone from the log
    with open(log, "a") as handle:
        handle.write(_lines(7, start=2000))
    read, _ = _refresh(tail, log)
    assert read == len(_lines(7, start=2000))  # resumed exactly after what it had read
    assert _errors(tail) == 2007


def test_a_truncated_log_is_read_again_from_its_start_keeping_what_was_counted(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(50))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    os.truncate(log, 0)  # logrotate's copytruncate
    with open(log, "a") as handle:
        handle.write(_lines(3, start=50))
    _refresh(tail, log)
    assert _errors(tail) == 53


def test_a_refresh_out_of_time_keeps_its_place_and_the_next_carries_on(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(20_000))
    tail = LogTail("auto", ())
    read, complete = _refresh(tail, log, deadline_s=-1.0)
    assert not complete and 0 < read < log.stat().st_size
    partial = _errors(tail)
    assert 0 < partial < 20_000
    read_rest, complete = _refresh(tail, log)
    assert complete and read + read_rest == log.stat().st_size
    assert _errors(tail) == 20_000


def test_formats_are_detected_per_file_even_in_short_files(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    access = tmp_path / "access.log"
    clf = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    access.write_text(
        f'127.0.0.1 - - [{clf}] "GET /api/orders/17 HTTP/1.1" 200 12 "-" "curl" 0.120\n'
        f'127.0.0.1 - - [{clf}] "GET /api/orders/18 HTTP/1.1" 502 12 "-" "curl" 0.900\n'
    )
    events = tmp_path / "events.log"
    events.write_text(
        f'{{"level": "warning", "msg": "slow", "time": "{now.isoformat()}"}}\n'
        f'{{"level": "error", "msg": "AUTH_FAILED for bob", "time": "{now.isoformat()}"}}\n'
    )
    tail = LogTail("auto", ())
    _refresh(tail, access, events)
    found = tail.window(now - HOUR)
    assert found.endpoints["/api/orders/:id"].requests == 2
    assert found.endpoints["/api/orders/:id"].errors == 1
    assert found.levels["WARN"] == 1 and found.levels["ERROR"] == 1
    assert found.security["AUTH_FAILED"] == 1


def test_old_files_are_skipped_unread(tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text(_lines(10, age=5 * HOUR))
    moment = (datetime.now(UTC) - 5 * HOUR).timestamp()
    os.utime(log, (moment, moment))
    tail = LogTail("auto", ())
    assert _refresh(tail, log) == (0, True)


def test_compressed_archives_fill_the_window_once_and_later_rotations_are_not_recounted(
    tmp_path: Path,
) -> None:
    import zstandard

    archive = tmp_path / "app.log-20261201-090000.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(_lines(6).encode()))
    log = tmp_path / "app.log"
    log.write_text(_lines(2, start=6))
    tail = LogTail("auto", ())
    _refresh(tail, log, archive)
    assert _errors(tail) == 8  # history from the archive, plus the live file
    # A rotation after the tail started: the new archive holds lines already counted.
    rotated = tmp_path / "app.log-20261201-100000.zst"
    rotated.write_bytes(zstandard.ZstdCompressor().compress(log.read_bytes()))
    log.write_text(_lines(1, start=8))
    _refresh(tail, log, archive, rotated)
    assert _errors(tail) == 9


def _append(path: Path, text: str) -> None:
    with open(path, "a") as handle:
        handle.write(text)


def test_lines_appended_between_a_refresh_and_a_collapse_are_counted_from_the_archive(
    tmp_path: Path,
) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(2000))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _append(log, _lines(300, start=2000))  # written after the last refresh ...
    result = rotation.rotate(log, moment=datetime.now(UTC), compression="zstd")
    assert result is not None and result.method == "collapse"  # ... and rotated away
    _append(log, _lines(5, start=2300))
    _refresh(tail, log)  # the pattern lists only the live log
    assert _errors(tail) == 2305


def test_lines_appended_before_a_rename_are_read_where_the_file_went(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(100))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _append(log, _lines(40, start=100))
    os.rename(log, tmp_path / "app.log-20261201-100000")
    log.write_text(_lines(3, start=140))
    _refresh(tail, log)
    assert _errors(tail) == 143


def test_a_log_truncated_and_grown_past_the_old_offset_is_noticed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(50))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    log.write_text(_lines(80, start=50))  # truncated and rewritten, longer than before
    _refresh(tail, log)
    assert _errors(tail) == 130


def test_a_collapse_that_leaves_less_than_a_fingerprint_is_followed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    block = os.statvfs(tmp_path).f_bsize
    line = _lines(1)
    count = block // len(line) + 2  # just past one block
    log.write_text(_lines(count))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    assert 0 < log.stat().st_size < 256
    _append(log, _lines(2, start=count))
    _refresh(tail, log)
    assert _errors(tail) == count + 2


def test_a_refresh_out_of_time_keeps_the_places_of_files_it_did_not_reach(tmp_path: Path) -> None:
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    first.write_text(_lines(20_000))
    second.write_text(_lines(10))
    tail = LogTail("auto", ())
    _refresh(tail, first, second)
    _append(first, _lines(20_000, start=20_000))
    _, complete = _refresh(tail, first, second, deadline_s=-1.0)
    assert not complete
    _refresh(tail, first, second)
    assert _errors(tail) == 40_010


def test_an_archive_read_out_of_time_is_finished_on_the_next_refresh(tmp_path: Path) -> None:
    import zstandard

    archive = tmp_path / "app.log-20261201-090000.zst"
    archive.write_bytes(zstandard.ZstdCompressor().compress(_lines(20_000).encode()))
    log = tmp_path / "app.log"
    log.write_text(_lines(2, start=20_000))
    tail = LogTail("auto", ())
    _, complete = _refresh(tail, archive, log, deadline_s=-1.0)
    assert not complete
    _, complete = _refresh(tail, archive, log)
    assert complete and _errors(tail) == 20_002


def test_uncompressed_archives_appearing_later_are_not_counted_again(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(2000))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    result = rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    assert result is not None
    _refresh(tail, log, result.archive)  # a pattern like app.log* lists the archive too
    assert _errors(tail) == 2000


def test_a_line_too_deeply_nested_for_the_parser_is_counted_once(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    stamp = datetime.now(UTC).isoformat()
    good = f'{{"level": "error", "msg": "x", "time": "{stamp}"}}\n'
    log.write_text(good * 25 + "[" * 100_000 + "]" * 100_000 + "\n" + good)
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _refresh(tail, log)
    assert _errors(tail) == 26


def test_two_rotations_between_refreshes_count_both_archives(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text(_lines(2000))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _append(log, _lines(300, start=2000))
    rotation.rotate(log, moment=datetime.now(UTC), compression="zstd")
    _append(log, _lines(300, start=2300))
    rotation.rotate(log, moment=datetime.now(UTC) + timedelta(seconds=1), compression="zstd")
    _append(log, _lines(5, start=2600))
    _refresh(tail, log)
    assert _errors(tail) == 2605


def test_a_log_of_identical_lines_is_followed_by_the_rotations_own_count(
    tmp_path: Path,
) -> None:
    line = "ERROR database connection refused by upstream pool worker xyzwv\n"
    assert len(line) == 64  # divides the block size: every block-aligned guess would match
    log = tmp_path / "app.log"
    log.write_text(line * 100)
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _append(log, line * 200)
    rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    _refresh(tail, log)
    assert tail.window(datetime(2000, 1, 1, tzinfo=UTC)).levels["ERROR"] == 300


def test_refreshes_after_a_realign_close_to_the_start_keep_working(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    block = os.statvfs(tmp_path).f_bsize
    count = block // len(_lines(1)) + 2
    log.write_text(_lines(count))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    for index in range(3):
        _append(log, _lines(1, start=count + index))
        assert _refresh(tail, log)[1]
    assert _errors(tail) == count + 3


def test_a_damaged_archive_counts_up_to_the_damage_once(tmp_path: Path) -> None:
    import zstandard

    good = zstandard.ZstdCompressor().compress(_lines(50).encode())
    damaged = bytearray(
        zstandard.ZstdCompressor(write_checksum=True).compress(_lines(500).encode())
    )
    for index in range(20, len(damaged) - 10, 7):
        damaged[index] ^= 0x55
    archive = tmp_path / "app.log-20261201-090000.zst"
    archive.write_bytes(good + bytes(damaged))
    tail = LogTail("auto", ())
    assert _refresh(tail, archive)[1]
    first = _errors(tail)  # what decoded before the damage (buffering may take all of it)
    for _ in range(2):
        assert _refresh(tail, archive)[1]
    assert _errors(tail) == first < 550


def test_logrotate_names_are_archives(tmp_path: Path) -> None:
    from upkeep.analysis.tail import is_archive_name

    for name in (
        "app.log-20261201-093000.zst",
        "app.log-20261201",
        "app.log-2026120110",
        "app.log-2026-12-01",
        "app.log.1",
        "app.log.2.gz",
        "app.log-20261201.xz",
        "app.log.3.bz2",
    ):
        assert is_archive_name(name), name
    for name in ("app.log", "access.log", "app-2.log", "events.jsonl"):
        assert not is_archive_name(name), name


def test_lines_a_truncation_carried_are_counted_once(tmp_path: Path, monkeypatch: Any) -> None:
    """Copy-and-truncate (where collapse is impossible) carries what the writer appended
    while the archive was being verified: neither in the archive nor in the log, those
    lines start the next archive, and the tail counts them, each as a line."""
    log = tmp_path / "app.log"
    log.write_text(_lines(2000))
    tail = LogTail("auto", ())
    _refresh(tail, log)
    _append(log, _lines(300, start=2000))
    real = rotation._ArchiveWriter.commit

    def slow_commit(writer: Any, before_naming: Any = None) -> Path:
        _append(log, _lines(7, start=2300))  # appended while the archive is verified
        return real(writer, before_naming)

    monkeypatch.setattr(rotation._ArchiveWriter, "commit", slow_commit)
    result = rotation.rotate(log, moment=datetime.now(UTC), compression="zstd", mode="truncate")
    monkeypatch.undo()
    assert result is not None and result.method == "truncate"
    assert log.stat().st_size == 0
    _append(log, _lines(5, start=2307))
    _refresh(tail, log)
    assert _errors(tail) == 2312


def _filled(log: Path) -> int:
    data = log.read_bytes()
    return len(data) - len(data.lstrip(b"\n"))


def test_a_tail_started_after_a_rotation_skips_the_filler_and_follows_the_next_cut(
    tmp_path: Path,
) -> None:
    """A tail that first reads a log just rotated begins after the filler (newlines written
    over the end of the line archived whole): no fragment counted, and its fingerprint holds
    only bytes the next archive holds, so what is appended between a refresh and the next
    rotation is counted from that archive, once."""
    log = tmp_path / "app.log"
    log.write_text(_lines(2000, level="INFO"))
    rotation.rotate(log, moment=datetime.now(UTC), compression="zstd")
    assert _filled(log) > 0
    kept = log.read_bytes().count(b"INFO")
    tail = LogTail("auto", ())
    _refresh(tail, log)
    window = tail.window(datetime.now(UTC) - HOUR)
    assert window.lines == window.levels["INFO"] == kept  # whole lines only
    _append(log, _lines(1, start=5000))  # less than a fingerprint past the filler
    _refresh(tail, log)
    _append(log, _lines(400, start=5001))
    time.sleep(1.05)  # the next archive's name: a new second
    rotation.rotate(log, moment=datetime.now(UTC), compression="zstd")
    _append(log, _lines(3, start=5401))
    _refresh(tail, log)
    assert _errors(tail) == 404
    window = tail.window(datetime.now(UTC) - HOUR)
    assert window.lines == kept + 404


def test_a_tail_that_read_past_the_cut_line_resumes_through_the_filler(tmp_path: Path) -> None:
    """Its fingerprint (the last 256 bytes read) reaches back into the end of the line the
    cut fell in, which is newlines now: they match what they stood for."""
    log = tmp_path / "app.log"
    block = os.statvfs(tmp_path).f_bsize
    line = _lines(1)
    log.write_text(_lines(block // len(line) + 3))  # the cut line ends < 256 bytes from the end
    tail = LogTail("auto", ())
    _refresh(tail, log)
    total = block // len(line) + 3
    rotation.rotate(log, moment=datetime.now(UTC), compression="none")
    assert _filled(log) > 0 and len(log.read_bytes().lstrip(b"\n")) < 256
    _append(log, _lines(2, start=total))
    read, _ = _refresh(tail, log)
    assert read == len(_lines(2, start=total))  # resumed exactly where it stopped
    assert _errors(tail) == total + 2


def test_a_tail_caught_between_the_cut_and_its_record_counts_each_line_once(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Between the collapse (and fill) and the final state the rotation state still gives
    the old count: the tail realigns on whole blocks, the filler within its fingerprint
    matching what it stood for."""
    log = tmp_path / "app.log"
    total = os.statvfs(tmp_path).f_bsize // len(_lines(1)) + 3
    log.write_text(_lines(total))  # the cut line ends < 256 bytes from the end
    tail = LogTail("auto", ())
    _refresh(tail, log)
    monkeypatch.setattr(rotation, "_finish_cut", lambda *_: None)  # the state not final yet
    rotation.rotate(log, moment=datetime.now(UTC), compression="zstd")
    monkeypatch.undo()
    assert _filled(log) > 0
    _append(log, _lines(5, start=total))
    _refresh(tail, log)
    assert _errors(tail) == total + 5
    assert rotation.recover(log) is True  # the next run finishes the record
    _append(log, _lines(5, start=total + 5))
    _refresh(tail, log)
    assert _errors(tail) == total + 10
