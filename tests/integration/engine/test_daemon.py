"""``upkeep serve`` as real processes: health and metrics, drain, crash recovery, reload, leaders.

Every test starts the console entry point (``python -m upkeep.cli.main serve``) on a free
loopback port and talks to it only as an operator would: HTTP (/healthz, /metrics),
signals (SIGTERM, SIGHUP, SIGKILL), the config file and the store. Runbook firings are
made deterministic through the real catch-up path: a ``schedule_marks`` row written a few
minutes in the past before the daemon starts makes the latest missed firing of a
``* * * * *`` runbook run at once and the older ones be recorded ``missed``. Tests that
name firings run the daemon on an ``OffsetClock`` (``tests/support/clocks.py``): it starts
a few seconds into a minute, so no firing comes unplanned, and is moved forward when a
test wants the next one, so none waits for a real minute to pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import psutil
import pytest
import yaml
from sqlalchemy import update

from tests.support.clocks import OffsetClock
from tests.support.receivers import WebhookReceiver
from upkeep.engine.scheduler import runbook_mark
from upkeep.store.runs import RunRecord, RunStatus
from upkeep.store.schema import schedule_marks
from upkeep.store.store import Store

START_TIMEOUT_S = 20.0
SERVE = (sys.executable, "-m", "upkeep.cli.main", "serve")
CLOCKED_SERVE = (sys.executable, "-m", "tests.support.clocked_serve")
"""``upkeep serve`` on an ``OffsetClock``; it imports ``tests``, so it runs from the repository."""
REPOSITORY = Path(__file__).resolve().parents[3]
FIRST_SECOND = 5.0
"""Where in its minute a clocked daemon starts: 55 s of schedule before an unplanned firing."""


# --- helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def write_config(
    path: Path,
    *,
    store: str,
    listen: int,
    checks: dict[str, dict[str, Any]] | None = None,
    runbooks: dict[str, dict[str, Any]] | None = None,
    targets: dict[str, dict[str, Any]] | None = None,
    **engine: str,
) -> Path:
    document: dict[str, Any] = {
        "store": store,
        "engine": {
            "listen": f"127.0.0.1:{listen}",
            "takeover_interval": "1s",
            "write_interval": "200ms",
            **engine,
        },
        "targets": {"local": {"kind": "host"}, **(targets or {})},
        "checks": checks or {},
        "runbooks": runbooks or {},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def beat(every: str = "1s") -> dict[str, Any]:
    """A cheap check: the host's uptime, always ok."""
    return {"target": "local", "probe": "uptime", "every": every, "warn": "seconds < 0"}


def each_minute(*argv: str) -> dict[str, Any]:
    """A runbook firing every minute with one command step."""
    return {"schedule": "* * * * *", "steps": [{"name": "work", "command": list(argv)}]}


@dataclass
class Serve:
    """One running ``upkeep serve``."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    log_file: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def get(self, path: str) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=3) as answer:
                return int(answer.status), answer.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def health(self) -> dict[str, Any] | None:
        """Return /healthz as JSON, or None while it does not answer."""
        try:
            status, body = self.get("/healthz")
        except OSError:
            return None
        if status != 200:
            return None
        answer: dict[str, Any] = json.loads(body)
        return answer

    def role(self) -> str | None:
        health = self.health()
        return None if health is None else str(health["role"])

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200
        return body.decode()

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"upkeep serve did not exit within {timeout}s; log:\n{self.log()}")

    def wait_role(self, role: str, timeout: float = START_TIMEOUT_S) -> None:
        def reached() -> bool:
            if not self.alive():
                pytest.fail(f"upkeep serve exited with {self.process.returncode}:\n{self.log()}")
            return self.role() == role

        wait_for(reached, timeout, f"role {role} on port {self.port}")


ServeFactory = Callable[..., Serve]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start real ``upkeep serve`` processes; every one is killed when the test ends."""
    started: list[Serve] = []

    def start(config: Path, port: int | None = None, clock: OffsetClock | None = None) -> Serve:
        listen = port or yaml.safe_load(config.read_text())["engine"]["listen"].rsplit(":", 1)[1]
        log_path = tmp_path / f"serve-{len(started)}.log"
        log_file = log_path.open("wb")
        environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
        environment.update({"NO_COLOR": "1", "COLUMNS": "200"})
        command: list[str] = [*SERVE]
        if clock is not None:
            command = [*CLOCKED_SERVE, str(clock.path)]
            paths = [str(REPOSITORY), environment.get("PYTHONPATH", "")]
            environment["PYTHONPATH"] = os.pathsep.join(path for path in paths if path)
        process = subprocess.Popen(
            [*command, "-c", str(config), "--listen", f"127.0.0.1:{listen}"],
            cwd=tmp_path,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        handle = Serve(process, int(listen), log_path, log_file)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.process.poll() is None:
            handle.process.kill()
        handle.process.wait(10)
        handle.log_file.close()


@pytest.fixture
def clock(tmp_path: Path) -> OffsetClock:
    """The clock of the daemons a test starts with ``serve(config, clock=clock)``."""
    return OffsetClock(tmp_path / "clock-offset")


def open_store(url: str) -> Store:
    return Store.open(url)


def set_mark(store: Store, runbook: str, until: datetime) -> None:
    """Write a runbook's schedule mark, backwards too (as if no daemon ran since ``until``)."""
    store.runs.set_schedule_mark(runbook_mark(runbook), until)
    with store.engine.begin() as connection:
        connection.execute(
            update(schedule_marks)
            .where(schedule_marks.c.name == runbook_mark(runbook))
            .values(evaluated_until=until)
        )


def runs_of(store: Store, runbook: str) -> list[RunRecord]:
    """Return the runs of a runbook, oldest firing first, with their steps."""
    records = store.runs.list_runs(runbook=runbook, limit=1000)
    full = [store.runs.get_run(record.id) for record in records]
    return sorted(
        (record for record in full if record is not None),
        key=lambda record: (record.scheduled_for or record.started_at, record.id),
    )


def active_run(store: Store, runbook: str) -> RunRecord | None:
    """Return the runbook's run whose first step is running, or None."""
    for record in runs_of(store, runbook):
        if record.status == "running" and record.steps and record.steps[0].status == "running":
            return record
    return None


def step_processes(daemon: Serve, count: int) -> list[psutil.Process] | None:
    """Return the daemon's ``sleep`` step commands once there are ``count`` of them."""
    found = [
        child
        for child in psutil.Process(daemon.pid).children(recursive=True)
        if child.name() == "sleep"
    ]
    return found if len(found) == count else None


def minutes_between(after: datetime, until: datetime) -> list[datetime]:
    """Return every whole minute strictly after ``after`` and at or before ``until``."""
    moment = minute_floor(after) + timedelta(minutes=1)
    found = []
    while moment <= until:
        found.append(moment)
        moment += timedelta(minutes=1)
    return found


def results_since(store: Store, check: str, since: datetime) -> int:
    return len(store.history(check, since=since, limit=10_000))


def upkeep_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "upkeep.cli.main", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
        cwd=config.parent,
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'upkeep.db'}"


@pytest.fixture
def postgres_url(postgres_dsn: str) -> Iterator[str]:
    """A database of its own: the leader's advisory lock is per database, so tests running
    elsewhere against ``test`` can never steal or block the lead."""
    import psycopg

    name = f"upkeep_daemon_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{postgres_dsn.split('?', 1)[0].rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- 1. health, metrics, results ---------------------------------------------------------------


def test_serve_answers_healthz_and_metrics_and_stores_check_results(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    config = write_config(
        tmp_path / "upkeep.yaml", store=sqlite_url, listen=free_port(), checks={"beat": beat()}
    )
    daemon = serve(config)
    daemon.wait_role("leader")

    health = daemon.health()
    assert health is not None
    assert health["status"] == "ok"
    assert health["role"] == "leader"
    assert health["checks"] == 1
    assert str(daemon.pid) in health["instance"]

    store = open_store(sqlite_url)
    try:
        wait_for(
            lambda: results_since(store, "beat", datetime.now(UTC) - timedelta(hours=1)) >= 3,
            10,
            "three stored results of an every-1s check",
        )
    finally:
        store.close()

    metrics = daemon.metrics()
    assert 'upkeep_check_results_total{status="ok"}' in metrics
    # What the probe measured, per check, for Grafana.
    assert 'upkeep_probe_metric{check="beat",metric="seconds",target="local"}' in metrics
    assert 'upkeep_check_last_duration_seconds{check="beat",target="local"}' in metrics
    assert "upkeep_check_lag_seconds_bucket" in metrics
    assert "upkeep_check_lag_seconds_count" in metrics
    assert "upkeep_leader 1.0" in metrics

    history = upkeep_cli(config, "history", "beat", "--json")
    assert history.returncode == 0, history.stderr
    results = json.loads(history.stdout)["results"]
    assert len(results) >= 3
    assert {row["check"] for row in results} == {"beat"}
    assert {row["status"] for row in results} == {"ok"}

    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0


STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+05:30 (INFO|WARNING|ERROR) ")
"""A daemon log line's start: ISO time in the config's zone (Asia/Kolkata), then the level."""


def test_the_daemon_logs_stamped_lines_alerts_and_deliveries_without_secrets(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    password = "hook-Passw0rd-long-enough"
    with WebhookReceiver() as receiver:
        config = write_config(
            tmp_path / "upkeep.yaml",
            store=sqlite_url,
            listen=free_port(),
            targets={
                "switch": {
                    "kind": "command",
                    # Critical while the file "down" exists beside the config.
                    "command": [
                        "/bin/sh",
                        "-c",
                        "if [ -e down ]; then echo CRITICAL - down; exit 2; fi; echo OK",
                    ],
                }
            },
            checks={"switch": {"target": "switch", "every": "1s", "severity": "P1"}},
        )
        document = yaml.safe_load(config.read_text())
        document["timezone"] = "Asia/Kolkata"
        url = receiver.url().replace("://", f"://hook:{password}@")
        document["channels"] = {"hook": url}
        document["routes"] = [{"notify": ["hook"]}]
        config.write_text(yaml.safe_dump(document, sort_keys=False))
        daemon = serve(config)
        daemon.wait_role("leader")
        (tmp_path / "down").touch()
        wait_for(
            lambda: re.search(r"alert \d+ firing: check switch \(P1, critical\)", daemon.log()),
            30,
            "the firing logged",
        )
        wait_for(
            lambda: re.search(r"sent 1 notification\(s\) to hook \(key \S+\)", daemon.log()),
            30,
            "the delivery logged",
        )
        (tmp_path / "down").unlink()
        wait_for(
            lambda: re.search(
                r"alert \d+ resolved: check switch \(P1, was critical\)", daemon.log()
            ),
            30,
            "the recovery logged",
        )
        wait_for(lambda: len(receiver.deliveries) >= 2, 30, "firing and resolved notices")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(15) == 0
    lines = [line for line in daemon.log().splitlines() if line.strip()]
    unstamped = [line for line in lines if not STAMP.match(line)]
    assert not unstamped, "\n".join(unstamped)
    log = daemon.log()
    assert password not in log and f"127.0.0.1:{receiver.port}" not in log


# --- 2. SIGTERM drain ---------------------------------------------------------------------------


def test_sigterm_lets_short_steps_finish_and_cancels_long_ones(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str, clock: OffsetClock
) -> None:
    drain_s = 4
    config = write_config(
        tmp_path / "upkeep.yaml",
        store=sqlite_url,
        listen=free_port(),
        runbooks={"short": each_minute("sleep", "2"), "long": each_minute("sleep", "30")},
        drain_timeout=f"{drain_s}s",
    )
    store = open_store(sqlite_url)
    try:
        started = clock.start_at_second(FIRST_SECOND)
        mark = started - timedelta(minutes=2, seconds=10)
        for name in ("short", "long"):
            set_mark(store, name, mark)
        daemon = serve(config, clock=clock)
        daemon.wait_role("leader")
        wait_for(
            lambda: active_run(store, "short") and active_run(store, "long"),
            10,
            "both caught-up runs to be running their command step",
        )

        steps = wait_for(
            lambda: step_processes(daemon, count=2), 5, "both steps' commands to start"
        )
        assert sorted(child.cmdline()[-1] for child in steps) == ["2", "30"]

        daemon.signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert daemon.wait_exit(drain_s + 10) == 0
        took = time.monotonic() - signalled
        assert took < drain_s + 5, f"drain took {took:.1f}s with drain_timeout {drain_s}s"
        # The cancelled step's command was killed, not left behind.
        _gone, alive = psutil.wait_procs(steps, timeout=2)
        assert not alive, alive

        latest = minute_floor(started)
        for name, run_status, step_status in (
            ("short", "succeeded", "ok"),
            ("long", "cancelled", "cancelled"),
        ):
            records = runs_of(store, name)
            ran = [record for record in records if record.status != "missed"]
            assert len(ran) == 1, [(r.scheduled_for, r.status) for r in records]
            assert ran[0].scheduled_for == latest
            assert ran[0].trigger == "schedule"
            assert ran[0].status == run_status, ran[0].message
            assert ran[0].finished_at is not None
            assert [step.status for step in ran[0].steps] == [step_status]
            # The older firings in the (mark, start] span were recorded, not run.
            missed = [record.scheduled_for for record in records if record.status == "missed"]
            assert missed == minutes_between(mark, latest)[:-1]
            assert len(missed) == 2
        assert "cancelled running runbook(s): long" in daemon.log()
        assert not store.runs.list_runs(statuses=(RunStatus.RUNNING, RunStatus.WAITING))
    finally:
        store.close()


# --- 3. kill -9 and restart -------------------------------------------------------------------


def test_after_kill_9_the_run_becomes_interrupted_and_missed_firings_are_caught_up(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str, clock: OffsetClock
) -> None:
    port = free_port()
    checks = {"beat": beat()}
    config = write_config(
        tmp_path / "upkeep.yaml",
        store=sqlite_url,
        listen=port,
        checks=checks,
        runbooks={"slow": each_minute("sleep", "20")},
    )
    store = open_store(sqlite_url)
    try:
        started = clock.start_at_second(FIRST_SECOND)
        set_mark(store, "slow", started - timedelta(minutes=1, seconds=30))
        first = serve(config, clock=clock)
        first.wait_role("leader")
        running = wait_for(lambda: active_run(store, "slow"), 10, "the slow run to start")

        orphans = wait_for(lambda: step_processes(first, count=1), 5, "the step's command")
        first.process.kill()
        first.wait_exit(5)
        for child in orphans:  # the step's process group may outlive a SIGKILLed daemon
            # ... or not: its supervisor ends it when the daemon dies, and may be first.
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        # Nothing cleaned up after a SIGKILL: the record still says running.
        stuck = store.runs.get_run(running.id)
        assert stuck is not None and stuck.status == "running"

        # While it was down, a new runbook's schedule went unevaluated for five minutes.
        write_config(
            config,
            store=sqlite_url,
            listen=port,
            checks=checks,
            runbooks={"slow": each_minute("sleep", "20"), "tick": each_minute("true")},
        )
        down_since = clock.now() - timedelta(minutes=5)
        set_mark(store, "tick", down_since)
        restarted_at = clock.now()
        second = serve(config, clock=clock)
        second.wait_role("leader")

        def interrupted() -> RunRecord | None:
            record = store.runs.get_run(running.id)
            return record if record is not None and record.status == "interrupted" else None

        record = wait_for(interrupted, 5, "the orphaned run to become interrupted")
        assert record.finished_at is not None
        assert [step.status for step in record.steps] == ["interrupted"]
        assert "marked 1 run(s) interrupted" in second.log()

        latest = minute_floor(restarted_at)
        firings = minutes_between(down_since, latest)
        assert len(firings) == 5

        def tick_done() -> list[RunRecord] | None:
            records = [r for r in runs_of(store, "tick") if r.scheduled_for in firings]
            done = [r for r in records if r.status in ("succeeded", "failed", "missed")]
            return records if len(done) == len(firings) else None

        records = wait_for(tick_done, 10, "every missed firing of tick to be recorded")
        assert [r.scheduled_for for r in records] == firings
        assert [r.status for r in records] == ["missed"] * 4 + ["succeeded"]
        listed = upkeep_cli(config, "runs", "list", "tick", "--json")
        assert listed.returncode == 0, listed.stderr
        shown = [run for run in json.loads(listed.stdout) if run["status"] != "running"]
        assert sorted(run["status"] for run in shown) == ["missed"] * 4 + ["succeeded"]
        # No slow run stays running from the first process.
        assert all(
            r.status != "running" or r.owner != running.owner for r in runs_of(store, "slow")
        )
    finally:
        store.close()


def test_after_kill_9_a_new_daemon_resumes_a_run_in_its_watch_with_the_time_left(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str, clock: OffsetClock
) -> None:
    port = free_port()
    watched = {
        "schedule": "* * * * *",
        "steps": [
            # Long enough to outlast the restart (a few seconds), so the new daemon watches
            # for the time left.
            {"watch": {"checks": {"names": ["beat"]}, "for": "15s", "every": "1s"}},
            {"name": "after", "command": ["true"]},
        ],
    }
    config = write_config(
        tmp_path / "upkeep.yaml",
        store=sqlite_url,
        listen=port,
        checks={"beat": beat("1h")},
        runbooks={"canary": watched},
    )
    store = open_store(sqlite_url)
    try:
        started = clock.start_at_second(FIRST_SECOND)
        set_mark(store, "canary", started - timedelta(minutes=1, seconds=30))
        first = serve(config, clock=clock)
        first.wait_role("leader")

        def watched_twice() -> RunRecord | None:
            record = active_run(store, "canary")
            rounds = record.steps[0].detail.get("rounds", 0) if record else 0
            return record if rounds >= 2 else None

        running = wait_for(watched_twice, 15, "the watch's second round")
        until = datetime.fromisoformat(running.steps[0].detail["until"])
        first.process.kill()
        first.wait_exit(5)

        second = serve(config, clock=clock)
        second.wait_role("leader")
        leading_since = clock.now()

        def finished() -> RunRecord | None:
            record = store.runs.get_run(running.id)
            return record if record is not None and record.finished_at is not None else None

        record = wait_for(finished, 30, "the resumed run to finish")
        assert record.status == "succeeded", record.message
        watch, after = record.steps
        assert (watch.status, after.status) == ("ok", "ok")
        assert record.owner != running.owner
        assert watch.detail["until"] == until.isoformat()
        # It watched to the watch's own end, not for 15 s from the restart: at `until`, or
        # at once if the new daemon led only after it (a slow start on a loaded machine).
        assert watch.finished_at is not None
        assert until <= watch.finished_at < max(until, leading_since) + timedelta(seconds=1.5)
        rounds_after = watch.detail["rounds"] - running.steps[0].detail["rounds"]
        # A round on resuming, then one a second (plus the round's own time) for the time
        # left: it kept watching, not one look and done.
        left_s = (until - leading_since).total_seconds()
        assert rounds_after >= max(1, int(left_s / 2)), (watch.detail, leading_since, until)
        assert "took over 1 run(s)" in second.log()
        assert "resuming run" in second.log()
        # One run of that firing, resumed, never interrupted nor run again.
        assert [r.id for r in runs_of(store, "canary") if r.status != "missed"] == [running.id]
    finally:
        store.close()


# --- 4. SIGHUP reload --------------------------------------------------------------------------


def test_sighup_applies_a_valid_config_and_keeps_the_old_one_on_errors(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "upkeep.yaml", store=sqlite_url, listen=port, checks={"first": beat()}
    )
    daemon = serve(config)
    daemon.wait_role("leader")
    store = open_store(sqlite_url)
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        wait_for(lambda: results_since(store, "first", since), 10, "a result of first")

        write_config(
            config,
            store=sqlite_url,
            listen=port,
            checks={"first": beat(), "second": beat()},
        )
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: results_since(store, "second", since), 10, "a result of the added check")
        health = daemon.health()
        assert health is not None and health["checks"] == 2 and health["role"] == "leader"

        config.write_text(
            config.read_text() + "\nthis_key_does_not_exist: true\n", encoding="utf-8"
        )
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reload rejected" in daemon.log(), 10, "the rejection in the log")
        assert "this_key_does_not_exist" in daemon.log()
        assert daemon.alive()

        rejected_at = datetime.now(UTC)
        wait_for(
            lambda: (
                results_since(store, "first", rejected_at) >= 2
                and results_since(store, "second", rejected_at) >= 2
            ),
            10,
            "the old checks to keep producing results after a rejected reload",
        )
        health = daemon.health()
        assert health is not None and health["checks"] == 2 and health["role"] == "leader"
        metrics = daemon.metrics()
        assert 'upkeep_config_reloads_total{outcome="rejected"} 1.0' in metrics
        assert 'upkeep_config_reloads_total{outcome="applied"} 1.0' in metrics
        assert daemon.alive()
    finally:
        store.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0


def test_a_check_running_during_a_reload_still_stores_its_result(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    port = free_port()
    settings: dict[str, Any] = {
        "store": sqlite_url,
        "listen": port,
        "targets": {"slow": {"kind": "command", "command": ["sleep", "3"]}},
        "checks": {"slowcheck": {"target": "slow", "every": "5s"}},
    }
    config = write_config(tmp_path / "upkeep.yaml", **settings)
    daemon = serve(config)
    daemon.wait_role("leader")
    store = open_store(sqlite_url)
    try:
        wait_for(lambda: step_processes(daemon, count=1), 10, "the slow check to be running")
        reloaded_at = datetime.now(UTC)
        write_config(config, **settings)  # the same config: a valid reload
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in daemon.log(), 5, "the reload")

        def started_before_reload() -> list[Any]:
            return [row for row in store.history("slowcheck") if row.at < reloaded_at]

        # The check started by the old scheduler finishes about 3 s later; its result is
        # written then, not held back until the daemon stops.
        rows = wait_for(started_before_reload, 8, "the in-flight check's result")
        assert rows[0].status.label == "ok"
    finally:
        store.close()


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, levels)]
    return "\n".join(lines) + "\n"


def timed_health(daemon: Serve, what: str) -> float:
    """Ask /healthz once; return how long the answer took (failing if none came)."""
    started = time.monotonic()
    if daemon.health() is None:
        state = "died" if not daemon.alive() else "stopped answering /healthz"
        pytest.fail(f"upkeep serve {state} on a reload of {what}:\n{daemon.log()[-3000:]}")
    return time.monotonic() - started


def reload_and_watch_health(daemon: Serve, rejections: int, what: str) -> list[float]:
    """Send SIGHUP and ask /healthz every 50 ms until the log shows the ``rejections``-th
    rejected reload; return how long each answer took."""
    daemon.signal(signal.SIGHUP)
    latencies: list[float] = []
    deadline = time.monotonic() + 20
    while daemon.log().count("config reload rejected") < rejections:
        if not daemon.alive():
            pytest.fail(f"upkeep serve died on a reload of {what}:\n{daemon.log()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no rejection of {what} within 20 s:\n{daemon.log()}")
        latencies.append(timed_health(daemon, what))
        time.sleep(0.05)
    latencies.append(timed_health(daemon, what))
    return latencies


def test_sighup_with_hostile_files_keeps_the_daemon_its_config_and_its_health(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "upkeep.yaml", store=sqlite_url, listen=port, checks={"first": beat()}
    )
    good = config.read_bytes()
    os.mkfifo(tmp_path / "fifo-secret")
    disk = "targets:\n  box: {kind: host}\nchecks:\n  disk:\n    target: box\n    probe: disk\n"
    # A valid shape that takes a while to check, and is rejected at its very end.
    many_checks = "".join(
        f"  c{n}: {{target: local, probe: uptime, every: 1m, warn: 'seconds < {n}'}}\n"
        for n in range(3000)
    )
    slow = good.decode().replace("checks:\n", "checks:\n" + many_checks, 1)
    hostile: dict[str, tuple[bytes, str]] = {
        "a file that is not UTF-8": (
            (disk + "    description: caf\xe9\n").encode("latin-1"),
            "not UTF-8 text: byte 0xe9",
        ),
        "a duration of 99999999999999y": (
            (disk + "    every: 99999999999999y\n").encode(),
            "checks.disk.every: '99999999999999y' is longer than 100y",
        ),
        "a recursive alias": (b"a: &a [*a]\n", "recursive alias"),
        "a billion laughs": (billion_laughs().encode(), "aliases repeat more than 100,000 nodes"),
        "a FIFO as secret file": (
            (disk + "    description: '${file:fifo-secret}'\n").encode(),
            "a FIFO (named pipe), not a regular file",
        ),
        "/dev/zero as secret file": (
            (disk + "    description: '${file:/dev/zero}'\n").encode(),
            "'/dev/zero': a character device, not a regular file",
        ),
        "a condition of 5,000 parentheses": (
            (disk + "    warn: '" + "(" * 5000 + "used_percent > 1" + ")" * 5000 + "'\n").encode(),
            "checks.disk.warn: a condition is at most 4,096 characters",
        ),
        "a slow config with an error at its end": (
            (slow + "\nthis_key_does_not_exist: true\n").encode(),
            "this_key_does_not_exist",
        ),
    }
    daemon = serve(config)
    daemon.wait_role("leader")
    store = open_store(sqlite_url)
    try:
        since = datetime.now(UTC) - timedelta(hours=1)
        wait_for(lambda: results_since(store, "first", since), 10, "a result of first")
        for rejections, (what, (content, reason)) in enumerate(hostile.items(), start=1):
            config.write_bytes(content)
            latencies = reload_and_watch_health(daemon, rejections, what)
            # /healthz kept answering while the file was read and checked.
            assert max(latencies) < 1.0, (what, max(latencies))
            assert reason in daemon.log(), (what, daemon.log()[-3000:])
        assert "Traceback" not in daemon.log()

        # The running config stayed in force: its check still runs, nothing else does.
        rejected_at = datetime.now(UTC)
        wait_for(
            lambda: results_since(store, "first", rejected_at) >= 2,
            10,
            "the old check to keep producing results after the rejected reloads",
        )
        health = daemon.health()
        assert health is not None and health["checks"] == 1 and health["role"] == "leader"
        metrics = daemon.metrics()
        assert f'upkeep_config_reloads_total{{outcome="rejected"}} {len(hostile)}.0' in metrics

        # A good file is still taken after all that.
        second = b"  second: {target: local, probe: uptime, every: 1s, warn: 'seconds < 0'}\n"
        config.write_bytes(good.replace(b"checks:\n", b"checks:\n" + second, 1))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: results_since(store, "second", since), 10, "a result of the added check")
    finally:
        store.close()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(15) == 0


# --- 5. two instances on PostgreSQL ------------------------------------------------------------


@pytest.mark.postgres
def test_two_instances_on_postgres_share_one_schedule_and_fail_over(
    tmp_path: Path, serve: ServeFactory, postgres_url: str, clock: OffsetClock
) -> None:
    ports = [free_port(), free_port()]
    configs = [
        write_config(
            tmp_path / f"upkeep-{index}.yaml",
            store=postgres_url,
            listen=port,
            checks={"beat": beat()},
            runbooks={"tick": each_minute("true")},
        )
        for index, port in enumerate(ports)
    ]
    store = open_store(postgres_url)
    try:
        mark = clock.start_at_second(FIRST_SECOND) - timedelta(minutes=4, seconds=30)
        set_mark(store, "tick", mark)
        daemons = [serve(config, clock=clock) for config in configs]

        def one_leader() -> list[str | None] | None:
            roles = [daemon.role() for daemon in daemons]
            return roles if sorted(map(str, roles)) == ["leader", "standby"] else None

        wait_for(one_leader, START_TIMEOUT_S, "one leader and one standby")
        time.sleep(2)  # several takeover attempts by the standby
        roles = one_leader()
        assert roles is not None, [daemon.role() for daemon in daemons]
        leader, standby = (daemons[0], daemons[1]) if roles[0] == "leader" else daemons[::-1]
        assert "upkeep_leader 0.0" in standby.metrics()

        # The leader catches up: the latest firing runs, the older ones are missed.
        wait_for(
            lambda: any(r.status == "succeeded" for r in runs_of(store, "tick")),
            10,
            "the caught-up tick run",
        )
        # Rewind the mark as if nobody had evaluated the schedule: the next leader's catch-up
        # will try to claim every one of these firings again, and must not run any twice.
        set_mark(store, "tick", mark)

        leader.process.kill()
        leader.wait_exit(5)
        killed_at = time.monotonic()
        standby.wait_role("leader", timeout=10)
        assert time.monotonic() - killed_at < 10
        took_over = clock.now()
        wait_for(
            lambda: results_since(store, "beat", took_over) >= 2,
            10,
            "check results from the new leader",
        )

        # Let one regular firing happen under the new leader: its clock is moved to a
        # second before the next minute rather than waited there.
        boundary = minute_floor(clock.now()) + timedelta(minutes=1)
        clock.move_to(boundary - timedelta(seconds=1))
        wait_for(
            lambda: any(r.scheduled_for == boundary for r in runs_of(store, "tick")),
            10,
            "the new leader to run the next firing",
        )
        time.sleep(1)

        records = runs_of(store, "tick")
        keys = [(r.runbook, r.scheduled_for) for r in records]
        assert len(keys) == len(set(keys)), keys
        firings = minutes_between(mark, clock.now())
        assert [r.scheduled_for for r in records] == firings
        ran = [r for r in records if r.status != "missed"]
        assert all(r.status == "succeeded" for r in ran), [(r.scheduled_for, r.status) for r in ran]
        # Firings before the first leader started were missed but for the latest; every
        # later firing ran, once.
        assert len(ran) >= 2
        assert ran[-1].scheduled_for == boundary
        assert ran[-1].owner != ran[0].owner
        assert "claimed by another instance" in standby.log()
        assert standby.alive()
    finally:
        store.close()


# --- 6. two instances on SQLite ------------------------------------------------------------------


def test_a_second_instance_on_the_same_sqlite_store_stays_standby(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str
) -> None:
    config = write_config(
        tmp_path / "upkeep.yaml", store=sqlite_url, listen=free_port(), checks={"beat": beat()}
    )
    first = serve(config)
    first.wait_role("leader")
    second = serve(config, port=free_port())
    second.wait_role("standby")
    time.sleep(3)  # three takeover attempts
    assert second.role() == "standby"
    assert first.role() == "leader"
    lock = Path(sqlite_url.removeprefix("sqlite:///") + ".leader.lock")
    assert lock.read_text().strip() == str(first.pid)

    first.signal(signal.SIGTERM)
    assert first.wait_exit(15) == 0
    second.wait_role("leader", timeout=5)
    assert lock.read_text().strip() == str(second.pid)
    store = open_store(sqlite_url)
    try:
        handed_over = datetime.now(UTC)
        wait_for(
            lambda: results_since(store, "beat", handed_over) >= 2, 10, "results from the second"
        )
    finally:
        store.close()


# --- 7. Log maintenance on schedule (#5) ------------------------------------------------------


def test_the_daemon_rotates_retains_and_watches_logs_on_schedule(
    tmp_path: Path, serve: ServeFactory, sqlite_url: str, clock: OffsetClock
) -> None:
    import base64

    import zstandard

    logs, second_store = tmp_path / "logs", tmp_path / "second-store"
    logs.mkdir()
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    content = "".join(f"{stamp} ERROR failure {n}\n" for n in range(2000)).encode()
    (logs / "app.log").write_bytes(content)
    expired = logs / "app.log-20250101-000000.zst"
    expired.write_bytes(zstandard.ZstdCompressor().compress(b"old\n"))
    long_ago = (now - timedelta(days=400)).timestamp()
    os.utime(expired, (long_ago, long_ago))
    audit = logs / "audit.log-20250101-000000.zst"  # seven years for audit: kept
    audit.write_bytes(expired.read_bytes())
    os.utime(audit, (long_ago, long_ago))
    port = free_port()
    config = write_config(
        tmp_path / "upkeep.yaml",
        store=sqlite_url,
        listen=port,
        targets={"app-logs": {"kind": "logs", "path": str(logs)}},
        checks={
            "app-errors": {
                "target": "app-logs",
                "probe": "levels",
                "every": "1s",
                "params": {"window": "1h"},
                "warn": "errors > 0",
            }
        },
        runbooks={
            "logs": {
                "schedule": "* * * * *",
                "steps": [
                    # Whatever the order of the first scheduled check and this firing, the
                    # check's tail has read the whole log before it is rotated.
                    {"checks": {"names": ["app-errors"]}},
                    {
                        "task": "logs.rotate",
                        "target": "app-logs",
                        "with": {"compress": "zstd", "min_size": "1KB"},
                    },
                    {
                        "task": "logs.retain",
                        "target": "app-logs",
                        "with": {
                            "classes": [
                                {"match": "audit*", "keep": "7y"},
                                {"match": "security*", "keep": "1y"},
                                {"match": "error*", "keep": "90d"},
                                {"match": "*", "keep": "30d"},
                            ],
                            "archive_to": str(second_store),
                        },
                    },
                ],
            }
        },
    )
    store = open_store(sqlite_url)
    try:
        set_mark(store, "logs", clock.start_at_second(FIRST_SECOND) - timedelta(seconds=90))
        daemon = serve(config, clock=clock)
        daemon.wait_role("leader")

        def finished() -> RunRecord | None:
            done = [r for r in runs_of(store, "logs") if r.status in ("succeeded", "failed")]
            return done[0] if done else None

        run = wait_for(finished, 30, "the scheduled log runbook to finish")
        assert run.status == "succeeded", [(step.status, step.output) for step in run.steps]
        archives = sorted(logs.glob("app.log-2026*.zst"))
        assert len(archives) == 1
        with archives[0].open("rb") as raw:
            archived = zstandard.ZstdDecompressor().stream_reader(raw).read()
        # The archive holds whole lines up to the end of the line the last block boundary
        # falls in; the log keeps the rest, that line's end overwritten with newlines.
        state = json.loads((logs / ".upkeep-rotate" / "app.log.json").read_text())
        carry = base64.b64decode(state["carry"])
        live = (logs / "app.log").read_bytes()
        filled = state["filled"]
        assert live[:filled] == b"\n" * filled and live[filled : filled + 1] != b"\n"
        assert archived.endswith(b"\n") and carry == b""
        assert archived + live[filled:] == content
        assert not expired.exists() and audit.exists()
        # Past its class's keep with no archive_keep: deleted here, never copied there.
        assert sorted(path.name for path in second_store.iterdir()) == sorted(
            [archives[0].name, audit.name]
        )
        # The levels check saw every error exactly once across the rotation.
        assert run.finished_at is not None
        rotated_at = run.finished_at

        def after_rotation() -> dict[str, Any] | None:
            shown = upkeep_cli(config, "history", "app-errors", "--json", "--limit", "1")
            results = json.loads(shown.stdout)["results"]
            if results and datetime.fromisoformat(results[0]["at"]) > rotated_at:
                return dict(results[0])
            return None

        latest = wait_for(after_rotation, 10, "a levels result after the rotation")
        assert latest["status"] == "warning" and latest["metrics"]["errors"] == 2000, latest
    finally:
        store.close()
