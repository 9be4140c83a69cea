"""Notifications through a receiver outage: every notice arrives, exactly once, afterwards.

Starts the real daemon (``upkeep serve``, a subprocess, SQLite store in a temporary
directory) with N TCP checks against a closed port on 127.0.0.1 (every 10 s, critical at
once, P2; half ``env=prod``, half ``env=staging``), one route to a JSON webhook channel
with ``repeat: 1m`` (so notices keep being enqueued during the outage), and delivery
settings ``timeout: 5s, backoff: 1s, max_backoff: 30s``. The webhook receiver
(``tests.support.receivers.WebhookReceiver``, a thread of this process) is *down* (its
port closed) for ``--down`` seconds; with ``--kill`` the daemon is killed with SIGKILL
half-way through the outage and a new one started on the same store. Then the receiver
comes up, the script waits until every notice enqueued before that is sent (or dead) and
nothing is overdue, stops the daemon with SIGTERM and prints:

* notifications enqueued (rows, by kind; before and after the receiver came up);
* rows sent / dead / left unsent; messages (batches) they went out as;
* requests received, distinct ``Idempotency-Key``s, keys received more than once;
* notifications lost: sent rows whose message key never arrived, and unsent rows that
  were due before the stop;
* attempts per row (max, median), time from receiver up to the first delivery, to the
  last notice of the backlog and to the last delivery;
* the daemon's CPU time and peak RSS (``wait4`` rusage of each daemon process).

Exits 1 if anything was lost or delivered twice.

Usage: .venv/bin/python benchmarks/outbox_outage.py [--down 300] [--checks 50] [--kill]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HOST = "127.0.0.1"
SERVE = (sys.executable, "-m", "upkeep.cli.main", "serve")
STORE_URL = "sqlite:///upkeep.db"
LEADER_TIMEOUT_S = 60.0
"""Named timeout: how long a started daemon may take to become leader."""
STOP_TIMEOUT_S = 60.0
"""Named timeout: how long a daemon may take to exit after SIGTERM."""
DRAIN_TIMEOUT_S = 600.0
"""Named timeout: how long the backlog may take to be delivered once the receiver is up."""
OVERDUE_GRACE = timedelta(seconds=3)
"""A pending row is overdue once its next attempt is this far in the past."""
POLL_S = 1.0


def write_config(directory: Path, checks: int, channel_url: str, listen: str, closed: int) -> Path:
    """Given a directory, write the benchmark's ``upkeep.yaml`` and return its path."""
    document: dict[str, Any] = {
        "store": STORE_URL,
        "engine": {"listen": listen},
        "targets": {"dead": {"kind": "tcp", "host": HOST, "port": closed}},
        "checks": {
            f"down-{index:03d}": {
                "target": "dead",
                "every": "10s",
                "timeout": "1s",
                "severity": "P2",
                "labels": {"env": "prod" if index % 2 == 0 else "staging"},
            }
            for index in range(checks)
        },
        "channels": {"ops": channel_url},
        "routes": [{"notify": ["ops"], "repeat": "1m"}],
        "alerting": {"delivery": {"timeout": "5s", "backoff": "1s", "max_backoff": "30s"}},
    }
    path = directory / "upkeep.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Daemon:
    """One ``upkeep serve`` process and, once it has exited, its resource usage."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes] = field(repr=False)
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    leader_after_s: float | None = None

    def health(self) -> dict[str, Any] | None:
        """Return /healthz as JSON, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=3) as answer:
                result: dict[str, Any] = json.loads(answer.read())
                return result
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def wait_leader(self) -> None:
        """Block until the daemon reports role ``leader``; raise if it exits or times out."""
        started = time.monotonic()
        while time.monotonic() - started < LEADER_TIMEOUT_S:
            if self.process.poll() is not None:
                raise SystemExit(f"upkeep serve exited early:\n{self.log()[-4000:]}")
            health = self.health()
            if health is not None and health.get("role") == "leader":
                self.leader_after_s = time.monotonic() - started
                return
            time.sleep(0.2)
        raise SystemExit(f"upkeep serve not leader within {LEADER_TIMEOUT_S}s")

    def log(self) -> str:
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def reap(self, timeout_s: float) -> int | None:
        """Wait up to ``timeout_s`` for the process to exit, recording its rusage; return
        its exit code, or None if it is still running."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                self.process.returncode = os.waitstatus_to_exitcode(status)
                self.cpu_s = usage.ru_utime + usage.ru_stime
                self.peak_rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
                self.log_file.close()
                return self.process.returncode
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)


def start_daemon(config: Path, port: int, directory: Path, index: int) -> Daemon:
    """Start ``upkeep serve`` on the config and wait until it leads."""
    log_path = directory / f"serve-{index}.log"
    log_file = log_path.open("wb")
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    environment.update({"NO_COLOR": "1", "COLUMNS": "200"})
    process = subprocess.Popen(
        [*SERVE, "-c", str(config), "--listen", f"{HOST}:{port}"],
        cwd=directory,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    daemon = Daemon(process, port, log_path, log_file)
    daemon.wait_leader()
    return daemon


def read_rows(directory: Path) -> list[dict[str, Any]]:
    """Return every outbox row of the benchmark's store."""
    from sqlalchemy import select

    from upkeep.store.schema import outbox
    from upkeep.store.store import Store

    store = Store.open(STORE_URL, directory)
    try:
        with store.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(outbox))]
    finally:
        store.close()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def drained(rows: list[dict[str, Any]], up_at: datetime, now: datetime) -> bool:
    """Given the outbox, return whether every notice enqueued before ``up_at`` is sent or
    dead and no pending or sending row is overdue."""
    for row in rows:
        unsent = row["status"] in ("pending", "sending")
        if unsent and _aware(row["created_at"]) < up_at:
            return False
        if unsent and _aware(row["next_attempt_at"]) < now - OVERDUE_GRACE:
            return False
    return True


def make_receiver() -> Any:
    """Return a down ``WebhookReceiver`` that also notes when each request arrived."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.receivers import WebhookReceiver

    class TimedReceiver(WebhookReceiver):
        def __init__(self) -> None:
            super().__init__()
            self.arrivals: list[tuple[float, str | None]] = []

        async def _handle(self, request: Any) -> Any:
            response = await super()._handle(request)
            with self._guard:
                self.arrivals.append((time.time(), self._deliveries[-1].key))
            return response

    return TimedReceiver()


def run(args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    """Run the outage scenario in ``directory`` and return the raw figures."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.receivers import free_port

    receiver = make_receiver()  # down: its port is chosen and closed
    config = write_config(
        directory, args.checks, receiver.url(), f"{HOST}:{free_port()}", free_port()
    )
    daemons: list[Daemon] = []
    port = free_port()
    started = time.monotonic()
    daemons.append(start_daemon(config, port, directory, 0))
    print(
        f"[{time.monotonic() - started:6.1f}s] daemon {daemons[-1].process.pid} leads; "
        f"receiver down for {args.down:g}s",
        flush=True,
    )
    if args.kill:
        time.sleep(max(0.0, args.down / 2 - (time.monotonic() - started)))
        victim = daemons[-1]
        victim.process.send_signal(signal.SIGKILL)
        victim.reap(STOP_TIMEOUT_S)
        print(
            f"[{time.monotonic() - started:6.1f}s] killed daemon {victim.process.pid} (-9)",
            flush=True,
        )
        daemons.append(start_daemon(config, port, directory, 1))
        print(
            f"[{time.monotonic() - started:6.1f}s] daemon {daemons[-1].process.pid} leads "
            f"after {daemons[-1].leader_after_s:.1f}s",
            flush=True,
        )
    time.sleep(max(0.0, args.down - (time.monotonic() - started)))
    before_up = read_rows(directory)
    receiver.start()
    up_wall = time.time()
    up_at = datetime.now(UTC)
    print(
        f"[{time.monotonic() - started:6.1f}s] receiver up; {len(before_up)} notices in the outbox",
        flush=True,
    )
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    drained_ok = False
    while time.monotonic() < deadline:
        if daemons[-1].process.poll() is not None:
            break
        if drained(read_rows(directory), up_at, datetime.now(UTC)):
            drained_ok = True
            break
        time.sleep(POLL_S)
    drained_after_s = time.time() - up_wall
    print(
        f"[{time.monotonic() - started:6.1f}s] "
        f"{'drained' if drained_ok else 'NOT drained'} after {drained_after_s:.1f}s; SIGTERM",
        flush=True,
    )
    last = daemons[-1]
    stop_at = datetime.now(UTC)
    exit_code: int | None = last.process.returncode
    if exit_code is None:
        last.process.send_signal(signal.SIGTERM)
        exit_code = last.reap(STOP_TIMEOUT_S)
        if exit_code is None:
            last.process.send_signal(signal.SIGKILL)
            last.reap(STOP_TIMEOUT_S)
    time.sleep(0.5)
    receiver.stop()
    rows = read_rows(directory)
    logs = [daemon.log() for daemon in daemons]
    return {
        "rows": rows,
        "before_up": before_up,
        "up_at": up_at,
        "up_wall": up_wall,
        "stop_at": stop_at,
        "drained": drained_ok,
        "drained_after_s": drained_after_s,
        "exit_code": exit_code,
        "deliveries": receiver.deliveries,
        "arrivals": list(receiver.arrivals),
        "daemons": daemons,
        "logs": logs,
    }


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    """Given what ``run`` saw, return the figures (and what was lost or doubled)."""
    rows: list[dict[str, Any]] = raw["rows"]
    up_at: datetime = raw["up_at"]
    stop_at: datetime = raw["stop_at"]
    batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        if row["batch"] is not None:
            batches[row["batch"]].append(row)

    def message_key(row: dict[str, Any]) -> str:
        # A batch of one row carries the row's key; a larger batch carries its id.
        members = batches.get(row["batch"], [row])
        return str(row["key"]) if len(members) <= 1 else str(row["batch"])

    keys = Counter(delivery.key for delivery in raw["deliveries"])
    bodies: dict[str | None, set[bytes]] = defaultdict(set)
    for delivery in raw["deliveries"]:
        bodies[delivery.key].add(delivery.body)
    first_arrival: dict[str | None, float] = {}
    for moment, key in raw["arrivals"]:
        first_arrival.setdefault(key, moment)
    statuses = Counter(row["status"] for row in rows)
    sent = [row for row in rows if row["status"] == "sent"]
    unsent = [row for row in rows if row["status"] in ("pending", "sending")]
    sent_not_received = [row for row in sent if message_key(row) not in keys]
    unsent_overdue = [
        row for row in unsent if _aware(row["next_attempt_at"]) < stop_at - OVERDUE_GRACE
    ]
    expected_keys = {message_key(row) for row in sent}
    unexpected = [key for key in keys if key not in expected_keys]
    duplicates = {key: count for key, count in keys.items() if count > 1}
    backlog = [row for row in rows if _aware(row["created_at"]) < up_at]
    backlog_arrivals = [
        first_arrival[message_key(row)] for row in backlog if message_key(row) in first_arrival
    ]
    attempts = [int(row["attempts"]) for row in rows]
    arrivals = [moment for moment, _ in raw["arrivals"]]
    daemons: list[Daemon] = raw["daemons"]
    return {
        "enqueued": len(rows),
        "by_kind": dict(Counter(row["kind"] for row in rows)),
        "enqueued_before_up": len(backlog),
        "statuses": {status: statuses.get(status, 0) for status in sorted(statuses)},
        "messages_sent": len({message_key(row) for row in sent}),
        "rows_in_multi_row_batches": sum(1 for row in sent if message_key(row) != row["key"]),
        "requests_received": len(raw["deliveries"]),
        "distinct_keys": len(keys),
        "duplicate_keys": duplicates,
        "duplicates_differing_bodies": sum(1 for key in duplicates if len(bodies[key]) > 1),
        "unexpected_keys": unexpected,
        "sent_not_received": [row["key"] for row in sent_not_received],
        "unsent_overdue": [row["key"] for row in unsent_overdue],
        "unsent_recent": [row["key"] for row in unsent if row not in unsent_overdue],
        "lost": len(sent_not_received) + len(unsent_overdue),
        "attempts_max": max(attempts, default=0),
        "attempts_median": statistics.median(attempts) if attempts else 0,
        "first_delivery_s": min(arrivals) - raw["up_wall"] if arrivals else None,
        "backlog_delivered_s": max(backlog_arrivals) - raw["up_wall"]
        if len(backlog_arrivals) == len(backlog) and backlog
        else None,
        "last_delivery_s": max(arrivals) - raw["up_wall"] if arrivals else None,
        "drained": raw["drained"],
        "drained_after_s": raw["drained_after_s"],
        "exit_code": raw["exit_code"],
        "daemons": [
            {
                "pid": daemon.process.pid,
                "exit": daemon.process.returncode,
                "cpu_s": daemon.cpu_s,
                "peak_rss_mb": daemon.peak_rss_mb,
                "leader_after_s": daemon.leader_after_s,
            }
            for daemon in daemons
        ],
        "log_problems": [
            line
            for log in raw["logs"]
            for line in log.splitlines()
            if any(word in line for word in ("Traceback", "ERROR", "CRITICAL", "lost the claim"))
        ][:40],
    }


def report(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """Print the figures in plain words."""
    print(
        f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.platform()}\n"
        f"{args.checks} TCP checks (every 10s, P2, repeat 1m) -> json:// webhook down for "
        f"{args.down:g}s{' with a kill -9 half-way' if args.kill else ''}"
    )
    print(
        f"enqueued: {result['enqueued']} notifications {result['by_kind']} "
        f"({result['enqueued_before_up']} before the receiver came up)\n"
        f"outbox at the end: {result['statuses']}; sent as {result['messages_sent']} messages "
        f"({result['rows_in_multi_row_batches']} rows in multi-row batches)\n"
        f"received: {result['requests_received']} requests, {result['distinct_keys']} distinct "
        f"Idempotency-Keys, {len(result['duplicate_keys'])} keys more than once "
        f"({result['duplicates_differing_bodies']} with differing bodies), "
        f"{len(result['unexpected_keys'])} keys matching no sent row\n"
        f"lost: {result['lost']} ({len(result['sent_not_received'])} marked sent but never "
        f"received, {len(result['unsent_overdue'])} unsent and overdue at the stop); "
        f"{len(result['unsent_recent'])} unsent but not yet due at the stop\n"
        f"attempts per row: max {result['attempts_max']}, median {result['attempts_median']}"
    )

    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}s"

    print(
        f"after the receiver came up: first delivery {seconds(result['first_delivery_s'])}, "
        f"whole backlog received {seconds(result['backlog_delivered_s'])}, "
        f"drained (nothing unsent from before, nothing overdue) "
        f"{'yes' if result['drained'] else 'NO'} at {seconds(result['drained_after_s'])}, "
        f"last delivery {seconds(result['last_delivery_s'])}"
    )
    for index, daemon in enumerate(result["daemons"]):
        cpu = "n/a" if daemon["cpu_s"] is None else f"{daemon['cpu_s']:.1f}s"
        rss = "n/a" if daemon["peak_rss_mb"] is None else f"{daemon['peak_rss_mb']:.0f} MB"
        print(
            f"daemon {index} (pid {daemon['pid']}): leader after "
            f"{seconds(daemon['leader_after_s'])}, exit {daemon['exit']}, CPU {cpu}, "
            f"peak RSS {rss}"
        )
    if result["log_problems"]:
        print("log lines worth a look:")
        for line in result["log_problems"]:
            print(f"  {line}")
    for name in ("duplicate_keys", "unexpected_keys", "sent_not_received", "unsent_overdue"):
        if result[name]:
            print(f"{name}: {result[name]}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--down", type=float, default=300.0, help="seconds the receiver is down")
    parser.add_argument("--checks", type=int, default=50, help="failing checks")
    parser.add_argument("--kill", action="store_true", help="kill -9 the daemon mid-outage")
    parser.add_argument("--keep", help="run in this directory and keep it (store, logs)")
    args = parser.parse_args()
    if args.keep:
        directory = Path(args.keep)
        directory.mkdir(parents=True, exist_ok=True)
        result = figures(run(args, directory))
    else:
        with tempfile.TemporaryDirectory(prefix="upkeep-outage-bench-") as name:
            result = figures(run(args, Path(name)))
    report(args, result)
    bad = result["lost"] or result["duplicate_keys"] or result["unexpected_keys"]
    sys.exit(1 if bad or not result["drained"] else 0)


if __name__ == "__main__":
    main()
