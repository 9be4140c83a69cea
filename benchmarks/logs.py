"""Log rotation against logrotate: the same log text, rotated and compressed by each.

Generates ``--size-mb`` of nginx-combined-like log text once (every line ends with a
10-digit sequence number, ``rid=0000000042``, so a lost, doubled or reordered line is
seen), then, each contender on its own fresh copy of those bytes (copied and fsynced
before it starts, so both find the same bytes in the page cache and no dirty pages):

1. **Static** rotate + compress, no writer: upkeep's ``rotate(log, moment=...,
   compression="zstd")`` (level 3, multi-threaded) and ``compression="gzip"`` (level 6),
   each in a fresh interpreter, against ``/usr/sbin/logrotate -f -s <state> <conf>`` with
   ``copytruncate``, ``compress`` (``/bin/gzip``, level 6), ``rotate 1``, ``missingok``.
   Measured per contender: wall time (whole process, start-up included); CPU (user +
   system, children such as ``gzip`` included) and peak RSS from GNU ``/usr/bin/time``
   (its ``wait4``); the output's size. Each output is checked: decompressed archive (+ carry
   + live file after its filler) must equal the generated text byte for byte.
2. **Under a concurrent writer**: the log starts as the same text; a writer process
   appends ``--writer-lines`` more numbered lines, one ``os.write`` per line through
   ``O_APPEND``, as fast as it can; when a third of them are written, one rotation starts
   (upkeep zstd in ``auto`` mode; logrotate copytruncate + compress). After the writer
   ends, every line is counted: upkeep = archive + carry (state file) + live file after its
   filler; logrotate = ``app.log.1.gz`` + live file. Lines lost, doubled, out of order and
   torn are reported, and whether the live file's first non-empty line is whole.

upkeep's collapse archives the line its block-aligned cut falls in whole and leaves the
rest of it in the live file as newlines (the *filler*, as many as its state file records):
the live file is read from after them, and every one of them is checked to be a newline.

Prints tables of figures and the speed ratio (logrotate wall / upkeep wall). Exits 1 if
upkeep lost, doubled, reordered or tore a line, or an output did not verify.

Usage: .venv/bin/python benchmarks/logs.py [--size-mb 1024] [--writer-lines 3000000]
                                           [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOGROTATE = "/usr/sbin/logrotate"
TIME = "/usr/bin/time"
CHUNK = 8 << 20
RID = b"rid="
RID_WIDTH = 10
WHOLE_LINE = re.compile(rb"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3} - - \[.*rid=\d{10}$")
"""A generated (or written) line from its first byte to its last."""
ROTATE_TIMEOUT_S = 1800.0
"""Named timeout: how long one rotation (either contender) may take."""
WRITER_TIMEOUT_S = 1800.0
"""Named timeout: how long the writer may take for its lines."""

# One rotation by upkeep, in a fresh interpreter: prints what it did and how long the
# import and the call took.
UPKEEP_CHILD = r"""
import json, sys, time
started = time.perf_counter()
from datetime import UTC, datetime
from pathlib import Path
from upkeep.tasks.logs.rotation import rotate
imported = time.perf_counter()
result = rotate(Path(sys.argv[1]), moment=datetime.now(UTC), compression=sys.argv[2])
done = time.perf_counter()
print(json.dumps({
    "archive": str(result.archive), "bytes": result.bytes_archived,
    "method": result.method, "loss_window_s": result.loss_window_s,
    "import_s": imported - started, "rotate_s": done - imported,
}))
"""

# The writer: one os.write per line through O_APPEND, as fast as it can. Prints "third"
# when a third of its lines are written, then its timeline (CLOCK_MONOTONIC) at the end.
WRITER = r"""
import os, sys, time
path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefixes = [
    b'198.51.100.%d - - [23/Nov/2026:13:00:00 +0000] "GET /api/v1/items/%d HTTP/1.1" 200 %d '
    b'"-" "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0" 0.%03d '
    % (i % 250, i * 7919 % 100000, 200 + i * 37 % 9000, i % 1000)
    for i in range(1024)
]
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
third = first + count // 3
start = time.monotonic()
third_at = start
write = os.write
for number in range(first, first + count):
    if number == third:
        third_at = time.monotonic()
        sys.stdout.write("third\n")
        sys.stdout.flush()
    write(fd, b"%srid=%010d\n" % (prefixes[number & 1023], number))
end = time.monotonic()
os.close(fd)
sys.stdout.write("%f %f %f\n" % (start, third_at, end))
"""

LOGROTATE_CONF = """{log} {{
    copytruncate
    compress
    rotate 1
    missingok
}}
"""


def generate(path: Path, size_bytes: int, seed: int = 5) -> tuple[int, str]:
    """Write nginx-combined-like lines numbered from 0 until ``size_bytes``; return the
    number of lines and the text's sha256."""
    rng = random.Random(seed)  # noqa: S311 - reproducible log text, not secrets
    ips = [
        f"{rng.choice((10, 172, 192, 203))}.{rng.randrange(256)}.{rng.randrange(256)}."
        f"{rng.randrange(1, 255)}".encode()
        for _ in range(4096)
    ]
    methods = [b"GET"] * 14 + [b"POST"] * 4 + [b"PUT", b"DELETE"]
    paths = [
        b"/",
        b"/index.html",
        b"/api/v1/items/",
        b"/api/v1/users/",
        b"/api/v1/orders/",
        b"/static/js/app.",
        b"/static/css/site.",
        b"/images/p/",
        b"/search?q=item",
        b"/healthz?probe=",
    ]
    statuses = [200] * 40 + [201, 204, 301, 302, 304, 304, 400, 401, 403, 404, 404, 499, 500, 502]
    referers = [
        b"-",
        b"-",
        b"https://www.example.com/",
        b"https://www.example.com/search?q=shoes",
        b"https://news.example.org/article/2026/11/23",
        b"https://www.google.com/",
    ]
    agents = [
        b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/131.0.0.0 Safari/537.36",
        b"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
        b"(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        b"curl/8.5.0",
        b"kube-probe/1.31",
        b"Prometheus/2.55.0",
        b"python-requests/2.32.3",
        b"Go-http-client/1.1",
    ]
    digest = hashlib.sha256()
    written = 0
    number = 0
    second = 0
    with open(path, "wb") as handle:
        while written < size_bytes:
            batch: list[bytes] = []
            for _ in range(20_000):
                bits = rng.getrandbits(64)
                if number % 400 == 0:
                    second += 1
                    stamp = b"%02d/Nov/2026:%02d:%02d:%02d +0000" % (
                        1 + second // 86400 % 28,
                        second // 3600 % 24,
                        second // 60 % 60,
                        second % 60,
                    )
                batch.append(
                    b'%s - - [%s] "%s %s%d HTTP/1.1" %d %d "%s" "%s" %d.%03d rid=%010d\n'
                    % (
                        ips[bits & 4095],
                        stamp,
                        methods[(bits >> 12) % 20],
                        paths[(bits >> 17) % 10],
                        (bits >> 21) & 0xFFFFF,
                        statuses[(bits >> 41) % 54],
                        (bits >> 47) & 0x3FFF,
                        referers[(bits >> 24) % 6],
                        agents[(bits >> 27) % 8],
                        (bits >> 61) & 1,
                        (bits >> 30) % 1000,
                        number,
                    )
                )
                number += 1
            data = b"".join(batch)
            handle.write(data)
            digest.update(data)
            written += len(data)
    return number, digest.hexdigest()


def fresh_copy(base: Path, directory: Path) -> Path:
    """Copy the generated text into an empty directory as ``app.log`` and fsync it."""
    directory.mkdir(mode=0o755)
    log = directory / "app.log"
    shutil.copyfile(base, log)
    descriptor = os.open(log, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return log


@dataclass
class Run:
    """One measured process: wall time, CPU, peak RSS, its output."""

    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    started: float = 0.0
    ended: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def measured(command: list[str]) -> Run:
    """Run a command to its end and measure it. CPU and peak RSS come from GNU time's
    ``wait4`` of the command (children it waited for, such as logrotate's gzip, included):
    a child's peak RSS starts at the RSS of the process that forked it, which for this
    script (holding decompressed chunks while it checks outputs) would be ~200 MB, for
    ``/usr/bin/time`` ~2 MB. Without ``/usr/bin/time``, this script's own ``wait4``."""
    usage_file = None
    if Path(TIME).exists():
        handle, name = tempfile.mkstemp(prefix="upkeep-bench-time-")
        os.close(handle)
        usage_file = Path(name)
        command = [TIME, "-f", "%U %S %M", "-o", str(usage_file), *command]
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=ROOT, env=child_env()
    )
    assert process.stdout is not None  # noqa: S101 - stdout=PIPE above
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.monotonic()
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stdout.close()
    cpu_s = usage.ru_utime + usage.ru_stime
    peak_rss_mb = usage.ru_maxrss / 1024
    if usage_file is not None:
        # The last line: GNU time writes "Command exited with non-zero status" first.
        user, system, rss_kib = usage_file.read_text().split("\n")[-2].split()
        usage_file.unlink()
        cpu_s, peak_rss_mb = float(user) + float(system), int(rss_kib) / 1024
    return Run(
        wall_s=ended - started,
        cpu_s=cpu_s,
        peak_rss_mb=peak_rss_mb,
        returncode=process.returncode,
        stdout=out.decode(),
        started=started,
        ended=ended,
    )


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    return env


def upkeep_command(log: Path, compression: str) -> list[str]:
    return [sys.executable, "-c", UPKEEP_CHILD, str(log), compression]


def logrotate_command(log: Path) -> list[str]:
    conf = log.parent / "logrotate.conf"
    conf.write_text(LOGROTATE_CONF.format(log=log), encoding="utf-8")
    conf.chmod(0o644)
    return [LOGROTATE, "-f", "-s", str(log.parent / "logrotate.status"), str(conf)]


def chunks_of(path: Path, start: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while chunk := handle.read(CHUNK):
            yield chunk


def decompressed(path: Path) -> Iterator[bytes]:
    """Yield a ``.zst``, ``.gz`` or plain file's content in chunks."""
    if path.suffix == ".zst":
        import zstandard

        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as reader:
            while chunk := reader.read(CHUNK):
                yield chunk
    elif path.suffix == ".gz":
        inflate = zlib.decompressobj(wbits=31)
        for chunk in chunks_of(path):
            yield inflate.decompress(chunk)
        yield inflate.flush()
    else:
        yield from chunks_of(path)


def state_of(log: Path) -> dict[str, Any]:
    state = log.parent / ".upkeep-rotate" / f"{log.name}.json"
    if not state.exists():
        return {}
    loaded: dict[str, Any] = json.loads(state.read_text(encoding="utf-8"))
    return loaded


def filler_of(log: Path) -> int:
    """Return how many of the live file's first bytes are upkeep's filler (newlines in
    place of the end of the line its last cut archived whole); exit 1 if they are not all
    newlines."""
    filled = int(state_of(log).get("filled", 0))
    with open(log, "rb") as handle:
        if handle.read(filled) != b"\n" * filled:
            raise SystemExit(f"the first {filled} bytes of {log} are not all filler newlines")
    return filled


def stream_of(log: Path, archives: list[Path]) -> Iterator[bytes]:
    """Archives in order, what a copy-and-truncate carried (upkeep), then the live file
    after upkeep's filler."""
    for archive in archives:
        yield from decompressed(archive)
    yield base64.b64decode(state_of(log).get("carry", ""))
    yield from chunks_of(log, start=filler_of(log))


def head_is_whole(log: Path) -> bool:
    """Return whether the live file's first non-empty line is one of the generated lines,
    whole (or there is none)."""
    with open(log, "rb") as handle:
        head = handle.read(1 << 16).lstrip(b"\n")
    if b"\n" not in head:
        return not head
    return WHOLE_LINE.match(head[: head.index(b"\n")]) is not None


def sha256_of(chunks: Iterable[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Count:
    """Every line of a stream checked against the numbers 0 .. total - 1."""

    lines: int = 0
    lost: int = 0
    doubled: int = 0
    out_of_order: int = 0
    torn: int = 0
    first_lost: int | None = None
    last_lost: int | None = None


def count_lines(chunks: Iterable[bytes], total: int) -> Count:
    seen = bytearray(total)
    result = Count()
    previous = -1
    held = b""
    width = len(RID) + RID_WIDTH
    for chunk in chunks:
        if not chunk:
            continue
        data = held + chunk
        end = data.rfind(b"\n") + 1
        held = data[end:]
        for line in data[:end].split(b"\n")[:-1]:
            result.lines += 1
            if line[-width:-RID_WIDTH] != RID or not line[-RID_WIDTH:].isdigit():
                result.torn += 1
                continue
            number = int(line[-RID_WIDTH:])
            if number >= total:
                result.torn += 1
                continue
            if seen[number]:
                result.doubled += 1
            else:
                seen[number] = 1
            if number < previous:
                result.out_of_order += 1
            previous = number
    if held:
        result.lines += 1
        result.torn += 1  # a last line without its newline
    result.lost = seen.count(0)
    if result.lost:
        result.first_lost = seen.find(0)
        result.last_lost = seen.rfind(0)
    return result


def static_upkeep(base: Path, directory: Path, compression: str, sha: str) -> dict[str, Any]:
    log = fresh_copy(base, directory)
    run = measured(upkeep_command(log, compression))
    if run.returncode:
        return {"run": run, "ok": False, "error": f"exit {run.returncode}"}
    info = json.loads(run.stdout)
    archive = Path(info["archive"])
    ok = sha256_of(stream_of(log, [archive])) == sha
    return {
        "run": run,
        "ok": ok,
        "output_mb": archive.stat().st_size / 2**20,
        "method": info["method"],
        "rotate_s": info["rotate_s"],
        "import_s": info["import_s"],
        "left_in_log": log.stat().st_size,
    }


def static_logrotate(base: Path, directory: Path, sha: str) -> dict[str, Any]:
    log = fresh_copy(base, directory)
    run = measured(logrotate_command(log))
    archive = log.with_name("app.log.1.gz")
    if run.returncode or not archive.exists():
        return {"run": run, "ok": False, "error": f"exit {run.returncode}"}
    ok = sha256_of(stream_of(log, [archive])) == sha
    return {
        "run": run,
        "ok": ok,
        "output_mb": archive.stat().st_size / 2**20,
        "method": "copytruncate",
        "left_in_log": log.stat().st_size,
    }


def with_writer(
    base: Path, directory: Path, contender: str, first: int, lines: int
) -> dict[str, Any]:
    """Rotate once while a writer appends ``lines`` numbered lines from ``first``."""
    log = fresh_copy(base, directory)
    command = upkeep_command(log, "zstd") if contender == "upkeep" else logrotate_command(log)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(log), str(first), str(lines)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None  # noqa: S101 - stdout=PIPE above
    if writer.stdout.readline().strip() != "third":
        raise SystemExit("the writer did not report its first third")
    run = measured(command)
    out, _ = writer.communicate(timeout=WRITER_TIMEOUT_S)
    writer_start, writer_third, writer_end = (float(value) for value in out.split())
    if run.returncode:
        return {"run": run, "error": f"exit {run.returncode}"}
    if contender == "upkeep":
        info = json.loads(run.stdout)
        archives = [Path(info["archive"])]
        method = info["method"]
    else:
        archives = [log.with_name("app.log.1.gz")]
        method = "copytruncate"
    count = count_lines(stream_of(log, archives), first + lines)
    whole_head = head_is_whole(log)
    return {
        "run": run,
        "count": count,
        "head_whole": whole_head,
        "method": method,
        "writer_s": writer_end - writer_start,
        "writer_rate": lines / (writer_end - writer_start),
        "rotation_from_s": run.started - writer_start,
        "rotation_to_s": run.ended - writer_start,
        "writer_third_s": writer_third - writer_start,
    }


def machine() -> str:
    cpus = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    version = subprocess.run(
        [LOGROTATE, "--version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    return (
        f"{cpus} CPUs ({platform.machine()}), {memory:.0f} GB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, {version}"
    )


def report(static: dict[str, dict[str, Any]], writer: dict[str, dict[str, Any]]) -> None:
    print("\nstatic rotate + compress (no writer)\n")
    print("| contender | wall s | of it: rotate() | CPU s | peak RSS MB | output MB | verified |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, figures in static.items():
        run: Run = figures["run"]
        inner = f"{figures['rotate_s']:.2f}" if "rotate_s" in figures else ""
        output = f"{figures['output_mb']:.1f}" if "output_mb" in figures else ""
        verified = "yes" if figures["ok"] else f"NO {figures.get('error', '')}"
        print(
            f"| {name} | {run.wall_s:.2f} | {inner} | {run.cpu_s:.2f} | "
            f"{run.peak_rss_mb:.0f} | {output} | {verified} |"
        )
    reference = static.get("logrotate (copytruncate, gzip -6)")
    if reference:
        for name, figures in static.items():
            if name.startswith("upkeep"):
                ratio = reference["run"].wall_s / figures["run"].wall_s
                cpu = reference["run"].cpu_s / figures["run"].cpu_s
                print(f"speed ratio logrotate / {name}: wall {ratio:.2f}x, CPU {cpu:.2f}x")

    print("\none rotation under a concurrent O_APPEND writer\n")
    print(
        "| contender | method | writer lines/s | rotation (writer s) | wall s | CPU s |"
        " lines checked | lost | doubled | out of order | torn | live head whole |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, figures in writer.items():
        run = figures["run"]
        if "error" in figures:
            print(f"| {name} | FAILED {figures['error']} |")
            continue
        count: Count = figures["count"]
        span = (
            f"{figures['rotation_from_s']:.1f} → {figures['rotation_to_s']:.1f}"
            f" (writer done at {figures['writer_s']:.1f})"
        )
        print(
            f"| {name} | {figures['method']} | {figures['writer_rate']:,.0f} | {span} | "
            f"{run.wall_s:.2f} | {run.cpu_s:.2f} | {count.lines:,} | {count.lost:,} | "
            f"{count.doubled:,} | {count.out_of_order:,} | {count.torn:,} | "
            f"{'yes' if figures['head_whole'] else 'NO'} |"
        )
        if count.lost:
            print(f"    lost lines numbered {count.first_lost:,} .. {count.last_lost:,}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="log text to generate")
    parser.add_argument("--writer-lines", type=int, default=3_000_000, help="lines appended")
    parser.add_argument(
        "--dir", type=Path, help="work here (default: a new directory under /var/tmp, on disk)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()
    if not Path(LOGROTATE).exists():
        raise SystemExit(f"{LOGROTATE} is not installed")
    parent = args.dir or Path("/var/tmp")  # noqa: S108 - on disk, unlike /tmp on many hosts
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="upkeep-bench-logs-", dir=parent))
    print(machine())
    print(f"working in {directory}")
    try:
        failed = drive(args, directory)
    finally:
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    sys.exit(1 if failed else 0)


def drive(args: argparse.Namespace, directory: Path) -> bool:
    base = directory / "base.log"
    started = time.monotonic()
    base_lines, sha = generate(base, args.size_mb * 2**20)
    size = base.stat().st_size
    print(
        f"generated {size / 2**20:,.0f} MB, {base_lines:,} lines "
        f"({size / base_lines:.0f} bytes/line) in {time.monotonic() - started:.1f} s"
    )
    static: dict[str, dict[str, Any]] = {}
    contenders = [
        ("logrotate (copytruncate, gzip -6)", None),
        ("upkeep zstd -3", "zstd"),
        ("upkeep gzip -6", "gzip"),
    ]
    for index, (name, compression) in enumerate(contenders):
        place = directory / f"static-{index}"
        if compression is None:
            static[name] = static_logrotate(base, place, sha)
        else:
            static[name] = static_upkeep(base, place, compression, sha)
        print(f"{name}: {static[name]['run'].wall_s:.2f} s wall", flush=True)
        shutil.rmtree(place)
    writer: dict[str, dict[str, Any]] = {}
    for name, contender in (("logrotate (copytruncate)", "logrotate"), ("upkeep zstd", "upkeep")):
        place = directory / f"writer-{contender}"
        writer[name] = with_writer(base, place, contender, base_lines, args.writer_lines)
        print(f"{name} under a writer: done", flush=True)
        shutil.rmtree(place)
    report(static, writer)
    upkeep_bad = any(
        not figures["ok"] for name, figures in static.items() if name.startswith("upkeep")
    )
    upkeep_writer = writer["upkeep zstd"]
    if "error" in upkeep_writer:
        upkeep_bad = True
    else:
        count: Count = upkeep_writer["count"]
        upkeep_bad |= bool(count.lost or count.doubled or count.out_of_order or count.torn)
        upkeep_bad |= not upkeep_writer["head_whole"]
    if upkeep_bad:
        print("\nupkeep lost, doubled, reordered or tore a line, or failed: see above")
    return upkeep_bad


if __name__ == "__main__":
    main()
