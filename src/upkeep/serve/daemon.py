"""``upkeep serve``: the daemon that runs the schedule, serves /healthz and /metrics.

Lifecycle
    Start: load the config (refuse to start on any error), open the store, register this
    instance, serve HTTP on ``engine.listen``, then try to lead (``leader.py``). A standby
    keeps serving /healthz and retries every ``engine.takeover_interval``. The leader first
    takes over the runs whose owner died in a wait, watch or approval step and resumes
    them, marks the other runs of dead owners ``interrupted`` (it sweeps again every
    minute), records firings missed while nobody ran, then runs the scheduler, the
    remediator (runbooks that alerts start, ``engine/remediation.py``) and an hourly
    retention pass.

    SIGTERM / SIGINT: stop scheduling, let running checks and runbooks finish within
    ``engine.drain_timeout``, cancel what is left (recorded ``cancelled``; a run in a
    wait, watch or approval step is handed over to the next leader instead), flush
    results, release the lead and exit 0.

    SIGHUP: reload the config on a worker thread (the event loop keeps serving /healthz
    and running checks meanwhile); if it is valid the scheduler restarts on it (running
    runbooks finish on the old one). On any failure (every config error, an unexpected
    exception, a load past ``RELOAD_TIMEOUT_S``) the reason is logged, the reload counts
    as rejected, and the old config stays in force.

    Lost lead (the PostgreSQL session died): stop scheduling at once, cancel running work,
    and go back to standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.engine.leader import Leadership, leadership_for
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.runs import keep_alive, new_instance_id

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from upkeep.config.loader import CompiledCheck, LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.engine.pipeline import Pipeline
    from upkeep.engine.remediation import Remediator
    from upkeep.engine.runbooks import RunbookExecutor
    from upkeep.engine.scheduler import Scheduler
    from upkeep.io.http import HttpClient
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store
    from upkeep.web.app import DaemonState

logger = logging.getLogger(__name__)

ORPHAN_SWEEP_INTERVAL_S = 60.0
"""How often the leader looks for runs whose owner died."""
RETENTION_INTERVAL_S = 3600.0
"""How often the leader applies the retention settings."""
SERVER_START_TIMEOUT_S = 10.0
"""How long the HTTP server may take to start listening."""
LISTEN_BACKLOG = 1024
"""The kernel's queue of connections completed but not yet accepted (no descriptor of
ours is spent on them)."""
RELOAD_TIMEOUT_S = 60.0
"""How long a SIGHUP reload may take to read and check the config before it is given up
(a ``${file:}`` on a hung network mount); the running config stays in force."""
RELOAD_ISSUES_LOGGED = 100
"""How many errors of a rejected reload are logged (``upkeep validate`` lists them all)."""


def parse_listen(listen: str) -> tuple[str, int]:
    """Given ``host:port`` (IPv6 in brackets), return (host, port); raise ValueError if bad."""
    host, _, port_text = listen.rpartition(":")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    return host.strip("[]"), port


@dataclass
class _Events:
    stop: asyncio.Event
    reload: asyncio.Event


class Daemon:
    """One ``upkeep serve`` process."""

    def __init__(
        self, loaded: LoadedConfig, *, listen: str | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.loaded = loaded
        # The one clock of the schedule, runbooks, alerts and deliveries. The heartbeat and
        # the HTTP server's timeouts stay on real time: other processes judge this one's
        # liveness by their own clocks, and clients wait in real time.
        self.clock = clock
        self.listen = listen or loaded.config.engine.listen
        self.instance_id = new_instance_id()
        self.metrics = DaemonMetrics()
        self.exit_code = 0
        self._store: Store | None = None
        self._state: DaemonState | None = None
        self._server: Any = None
        self._retired: list[Scheduler] = []
        self._running_runbooks: dict[str, asyncio.Task[None]] = {}
        self.reload_timeout_s = RELOAD_TIMEOUT_S
        self._pipeline: Pipeline | None = None
        self._leading_blind = False
        self._scheduler: Scheduler | None = None
        self._remediation: asyncio.Task[None] | None = None

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; return the process exit code.

        Raise ``StoreError`` if the store cannot be opened at start.
        """
        from upkeep.web.app import DaemonState

        store = await asyncio.to_thread(self.loaded.config.store.open, self.loaded.base_dir)
        self._store = store
        pipeline = await asyncio.to_thread(self._new_pipeline, store)
        self._state = DaemonState(
            instance_id=self.instance_id,
            loaded=self.loaded,
            store=store,
            metrics=self.metrics,
            store_health=lambda: pipeline.health,
            clock=self.clock,
            started_at=self.clock.now(),
            run_checks_now=self._run_checks_now,
            record_results=self._record_results,
            on_ping=self._heartbeat_pinged,
        )
        events = _Events(asyncio.Event(), asyncio.Event())
        self._install_signals(events)
        try:
            await asyncio.to_thread(store.runs.register_instance, self.instance_id, "standby")
        except Exception as error:  # noqa: BLE001 - a full or read-only store must not stop the alarm
            logger.error("cannot register this instance in the store: %s", self._redact(str(error)))
        state = self._state
        heartbeat = asyncio.create_task(
            keep_alive(store.runs, self.instance_id, lambda: state.role, self._redact),
            name="heartbeat",
        )
        leadership = leadership_for(store)
        try:
            await self._start_server()
            logger.info("upkeep serve: instance %s listening on %s", self.instance_id, self.listen)
            await self._lead_or_wait(leadership, events)
        finally:
            await self._drain_jobs()
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await leadership.release()
            await self._stop_server()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(store.runs.unregister_instance, self.instance_id)
            await asyncio.to_thread(pipeline.close)
            store.close()
            self._remove_signals()
        return self.exit_code

    async def _drain_jobs(self) -> None:
        """Let backups, verifications and drills the API started end (within
        ``engine.drain_timeout``) before the store they record in closes."""
        if self._state is None:
            return
        drain = self.loaded.config.engine.drain_timeout.total_seconds()
        left = await self._state.jobs.drain(drain)
        if left:
            logger.warning("stopping while API jobs still run: %s", ", ".join(left))

    def _heartbeat_pinged(self, targets: tuple[str, ...]) -> None:
        """Given the heartbeat targets a ping came for, run their checks now if this
        daemon schedules (a standby's leader finds the ping at the checks' next run)."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        names = [
            check.name for check in scheduler.loaded.checks.values() if check.target_name in targets
        ]
        scheduler.run_now(names)

    def _new_pipeline(self, store: Store) -> Pipeline:
        """Return the pipeline that records results (in the store, or in the spill while
        the store fails), alerts and delivers, and keeps the store's health for /healthz
        and /metrics."""
        from upkeep.engine.pipeline import Pipeline

        pipeline = Pipeline(
            self.loaded, store, on_health=self.metrics.observe_store_health, clock=self.clock
        )
        self.metrics.observe_store_health(pipeline.health)
        self._pipeline = pipeline
        return pipeline

    # --- what the API asks of the daemon ---------------------------------------------------

    async def _run_checks_now(
        self, checks: Sequence[CompiledCheck]
    ) -> tuple[list[CheckResult], list[str]]:
        """Run checks now (``POST /api/checks/run``) and record them through the pipeline
        as the schedule's are; return the results and what went wrong recording them."""
        from upkeep.engine.runner import run_checks

        loaded = self.loaded
        # The store as the schedule's runner has it: a heartbeat's check reads its pings.
        results = await run_checks(
            checks,
            redactor=loaded.redactor,
            concurrency=loaded.config.engine.concurrency,
            store=self._store,
        )
        for result in results:
            self.metrics.observe_result(result, 0.0)
        return results, await self._record_results(results)

    async def _record_results(self, results: Sequence[CheckResult]) -> list[str]:
        """Record results through the pipeline (stored or spilled, alerted on); return what
        went wrong. The leader's delivery loop sends what they cause; a standby has none,
        so it ticks and delivers at once, as ``upkeep check`` does."""
        pipeline = self._pipeline
        if pipeline is None:
            return ["results were not recorded: the daemon has no pipeline yet"]
        leading = self._state is not None and self._state.role == "leader"
        settle = pipeline.take if leading else pipeline.settle
        settled = await asyncio.to_thread(settle, results)
        return settled.problems

    def _runbook_starter(self, http: HttpClient) -> Any:
        """Given the lead's HTTP client, return the function the API starts runs with
        (``DaemonState.start_runbook``): one run of a runbook at a time, dry runs aside;
        the run is the daemon's like a scheduled one (drained on stop)."""
        from upkeep.web.runbooks import RunRefused

        dry_runs = iter(range(1, 2**62))

        async def start(name: str, dry_run: bool, by: str) -> int:
            store, pipeline = self._store, self._pipeline
            if store is None or pipeline is None:
                raise RunRefused(503, "the daemon is not ready")
            running = self._running_runbooks.get(name)
            if not dry_run and running is not None and not running.done():
                raise RunRefused(409, f"runbook {name} is already running")
            loop = asyncio.get_running_loop()
            started: asyncio.Future[int] = loop.create_future()

            def on_start(run_id: int) -> None:
                if not started.done():
                    started.set_result(run_id)

            executor = self._executor(http, on_start=on_start)

            async def run() -> None:
                record = await executor.execute(
                    name, trigger="api", triggered_by=by, dry_run=dry_run
                )
                if record is not None:
                    self.metrics.observe_run(record)

            key = f"{name} (dry run {next(dry_runs)})" if dry_run else name
            task = asyncio.create_task(run(), name=f"runbook-{key}")
            self._running_runbooks[key] = task

            def forget(done: asyncio.Task[None]) -> None:
                if self._running_runbooks.get(key) is done:
                    del self._running_runbooks[key]
                if not done.cancelled() and done.exception() is not None:
                    logger.error(
                        "runbook %s failed to run: %s",
                        name,
                        self._redact(f"{type(done.exception()).__name__}: {done.exception()}"),
                    )

            task.add_done_callback(forget)
            either: set[asyncio.Future[Any]] = {started, task}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if started.done():
                return started.result()
            started.cancel()
            raise RunRefused(503, f"the run of {name} could not be recorded (see the log)")

        return start

    def _executor(
        self, http: HttpClient, on_start: Callable[[int], None] | None = None
    ) -> RunbookExecutor:
        """Given the lead's HTTP client, return an executor of the config in force for a
        run the API or an alert starts, recording through the pipeline's alert manager."""
        from upkeep.engine.runbooks import RunbookExecutor
        from upkeep.engine.runner import CheckRunner
        from upkeep.reports.service import ReportService

        store, pipeline = self._store, self._pipeline
        if store is None or pipeline is None:
            raise RuntimeError("the store is open before runs start")
        loaded = self.loaded
        return RunbookExecutor(
            loaded,
            store,
            http=http,
            checks=CheckRunner(
                redactor=loaded.redactor,
                http=http,
                concurrency=loaded.config.engine.concurrency,
                clock=self.clock,
                store=store,
            ),
            owner=self.instance_id,
            on_start=on_start,
            alerts=pipeline.manager,
            clock=self.clock,
            # A run waiting (wait, watch, approval) when this daemon stops is handed over
            # to the next leader rather than cancelled.
            hand_over=True,
            # As the schedule's executor (``_new_scheduler``): report.send needs it.
            reports=ReportService(loaded, store),
        )

    # --- signals ---------------------------------------------------------------------------

    def _install_signals(self, events: _Events) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, events.stop.set)
        loop.add_signal_handler(signal.SIGHUP, events.reload.set)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    # --- HTTP --------------------------------------------------------------------------------

    async def _start_server(self) -> None:
        import uvicorn

        from upkeep.web.app import create_app
        from upkeep.web.guard import listen_refusal
        from upkeep.web.server import (
            ACCEPT_BACKLOG,
            connection_limits,
            protocol_for,
            raise_open_file_limit,
        )

        if self._state is None:
            raise RuntimeError("state is built before the server starts")
        host, port = parse_listen(self.listen)
        engine = self.loaded.config.engine
        refusal = listen_refusal(engine, host)
        if refusal is not None:
            raise OSError(refusal)
        self._state.listen = self.listen
        # Checks, step commands and the store need descriptors too; the HTTP server gets a
        # quarter of the (raised) limit at most, so a flood of connections cannot take them.
        limits = connection_limits(engine.http, raise_open_file_limit())

        class _Server(uvicorn.Server):
            # The daemon owns SIGTERM/SIGINT (it drains first); uvicorn must not take them.
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        config = uvicorn.Config(
            create_app(self._state),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            http=protocol_for(limits),
            backlog=ACCEPT_BACKLOG,
            # Headers beyond 16 KiB are a 400 from h11 before anything else reads them.
            h11_max_incomplete_event_size=16 * 1024,
            server_header=False,
        )
        server = _Server(config)
        self._server = server
        # Bind here, not in uvicorn: uvicorn answers a busy port with sys.exit, which
        # escapes the event loop; an OSError from bind is ours to report and clean up after.
        listener = _bind(host, port)
        self._server_task = asyncio.create_task(server.serve(sockets=[listener]), name="http")
        async with asyncio.timeout(SERVER_START_TIMEOUT_S):
            while not server.started:
                if self._server_task.done():
                    self._server = None
                    raise OSError(f"cannot serve on {self.listen}")
                await asyncio.sleep(0.02)
        # asyncio listens with its accept batch (ACCEPT_BACKLOG, small so a flood cannot take
        # a burst of descriptors); the kernel's queue of completed connections may be longer,
        # so a health probe behind a flood waits there instead of having its SYN dropped.
        listener.listen(LISTEN_BACKLOG)

    async def _stop_server(self) -> None:
        if self._server is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception, SystemExit):
            async with asyncio.timeout(10):
                await self._server_task

    # --- leadership and the schedule ------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return self.loaded.redactor.redact(text)

    async def _lead_or_wait(self, leadership: Leadership, events: _Events) -> None:
        interval = self.loaded.config.engine.takeover_interval.total_seconds()
        while not events.stop.is_set():
            if await leadership.try_acquire():
                await self._lead(leadership, events)
                continue
            if self._state is not None:
                self._state.role = "standby"
            await self.clock.wait(events.stop, timeout=interval)
            if events.reload.is_set():
                events.reload.clear()
                await self._reload(events.stop)

    async def _load_for_reload(self, stop: asyncio.Event) -> LoadedConfig | None:
        """Load the config file again on a worker thread; return it, or None if it is not
        to be applied (the reason logged and counted as a rejected reload).

        Never raises: whatever goes wrong in loading must not end the daemon. A stop
        request while loading abandons the load.
        """
        from upkeep.config.errors import ConfigError
        from upkeep.config.loader import load_config
        from upkeep.io.threads import run_blocking

        load = functools.partial(load_config, self.loaded.path, check_channels=True)
        loading = asyncio.ensure_future(run_blocking(load, timeout_s=self.reload_timeout_s))
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not loading.done():
            loading.cancel()  # the worker thread is abandoned, not waited for
            await asyncio.gather(loading, return_exceptions=True)
            logger.warning("config reload abandoned: the daemon is stopping")
            return None
        reason: str | None = None
        try:
            return loading.result()
        except ConfigError as error:
            # The issues are redacted with the secrets of the file they come from.
            shown = [str(issue) for issue in error.issues[:RELOAD_ISSUES_LOGGED]]
            if len(error.issues) > RELOAD_ISSUES_LOGGED:
                shown.append(f"... and {len(error.issues) - RELOAD_ISSUES_LOGGED} more")
            reason = "\n".join(shown)
        except TimeoutError:
            reason = f"reading and checking the config took longer than {self.reload_timeout_s:g}s"
        except Exception as error:  # noqa: BLE001 - a failed reload must leave the daemon running
            reason = self._redact(f"unexpected {type(error).__name__}: {error}")
        self.metrics.config_reloads.labels("rejected").inc()
        logger.error("config reload rejected, keeping the running config:\n%s", reason)
        return None

    async def _reload(self, stop: asyncio.Event) -> bool:
        """Load the config again and apply it if it is valid; return whether it was."""
        fresh = await self._load_for_reload(stop)
        if fresh is None:
            return False
        self._use(fresh)
        self.metrics.config_reloads.labels("applied").inc()
        logger.info("config reloaded from %s", fresh.path)
        return True

    def _use(self, loaded: LoadedConfig) -> None:
        """Make ``loaded`` the config in force for everything but the schedule (the
        pipeline records, alerts and delivers by it from now on)."""
        self.loaded = loaded
        if self._state is not None:
            self._state.loaded = loaded
        if self._pipeline is not None:
            self._pipeline.use_config(loaded)

    async def _lead(self, leadership: Leadership, events: _Events) -> None:
        from upkeep.io.http import HttpClient

        pipeline = self._pipeline
        if self._store is None or self._state is None or pipeline is None:
            raise RuntimeError("the store is open before leading")
        self._state.role = "leader"
        self.metrics.leader.set(1)
        resumed = await self._clean_up_after_the_dead(self._store)
        http = HttpClient()
        interval = self.loaded.config.engine.takeover_interval.total_seconds()
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        scheduler = self._new_scheduler(http, resume=resumed)
        alerting = asyncio.create_task(pipeline.run_ticks(), name="alert-ticks")
        delivery_stop = asyncio.Event()
        delivery = asyncio.create_task(
            pipeline.run_deliveries(delivery_stop, self.instance_id), name="deliveries"
        )
        schedule_task = asyncio.create_task(scheduler.run(), name="scheduler")
        self._take_work(http)
        lost = False
        try:
            while True:
                await self.clock.wait(events.stop, events.reload, timeout=interval)
                if events.stop.is_set():
                    break
                if events.reload.is_set():
                    events.reload.clear()
                    scheduler, schedule_task = await self._reload_schedule(
                        scheduler, schedule_task, http, events.stop
                    )
                    continue
                if not await leadership.still_held():
                    if await self._lead_without_store(leadership):
                        continue
                    logger.error("lost the lead (store session gone); stopping the schedule")
                    lost = True
                    break
        finally:
            self._stop_taking_work()
            scheduler.stop()
            await asyncio.gather(schedule_task, return_exceptions=True)
            drain = timedelta(0) if lost else self.loaded.config.engine.drain_timeout
            for old in [*self._retired, scheduler]:
                cancelled = await old.drain(drain)
                if cancelled:
                    logger.warning("cancelled running runbook(s): %s", ", ".join(cancelled))
            self._retired.clear()
            housekeeping.cancel()
            alerting.cancel()
            # Deliveries stop after the drain, so notices caused by the last results go out.
            delivery_stop.set()
            await asyncio.gather(housekeeping, alerting, delivery, return_exceptions=True)
            await http.close()
            self._stand_down()
            if lost:
                await leadership.release()

    def _remediator(self, http: HttpClient) -> Remediator:
        """Given the lead's HTTP client, return what starts the runbooks alerts ask for
        (``on_alert:``): the leader's only, so one daemon decides each firing."""
        from upkeep.engine.remediation import Remediator

        if self._store is None:
            raise RuntimeError("the store is open before leading")
        return Remediator(
            lambda: self.loaded,
            self._store,
            executor=lambda: self._executor(http),
            running=self._running_runbooks,
            clock=self.clock,
            on_run=self.metrics.observe_run,
        )

    def _take_work(self, http: HttpClient) -> None:
        """As the lead begins: start runbooks the API asks for and those alerts ask for."""
        if self._state is not None:
            self._state.start_runbook = self._runbook_starter(http)
        self._remediation = asyncio.create_task(self._remediator(http).run(), name="remediation")

    def _stop_taking_work(self) -> None:
        """As the lead ends: refuse runbooks the API asks for, start none for alerts (those
        running drain with the rest), and let pings wait for the next leader's checks."""
        if self._state is not None:
            self._state.start_runbook = None
        if self._remediation is not None:
            self._remediation.cancel()
            self._remediation = None
        self._scheduler = None

    def _stand_down(self) -> None:
        """Count and show this daemon as a standby again."""
        self.metrics.leader.set(0)
        if self._state is not None:
            self._state.role = "standby"

    async def _lead_without_store(self, leadership: Leadership) -> bool:
        """The lead's lock session is gone; return whether to keep running the schedule.

        If the store does not answer at all, checks keep running and alert from the spill
        (``alerting/guard.py``) until it answers again; then the lock is taken again, or,
        if another daemon took it meanwhile, the lead is given up. Stopping instead would
        silence every alarm for as long as the store is down. The price: another daemon
        that still reaches the store (a network split) leads too, and the alarm may come
        twice, from both; never not at all.
        """
        if self._store is None:
            return False
        if await asyncio.to_thread(_answers, self._store):
            self._leading_blind = False
            if await leadership.try_acquire():
                logger.warning("the store answers again: lead taken back")
                return True
            return False
        if not self._leading_blind:
            logger.error(
                "the store does not answer: the schedule keeps running and alerting works "
                "from the spill until it does"
            )
        self._leading_blind = True
        return True

    async def _clean_up_after_the_dead(self, store: Store) -> list[tuple[int, str]]:
        """On taking the lead: register as leader, take over the runs of dead owners that
        can be resumed (``_sweep_orphans``; returned as (run id, runbook) for the scheduler
        to resume), mark the others interrupted, and hand the dead's outbox claims back, so
        their notices go out now, not after the lease. A store that takes no writes (full,
        read-only) is logged and led anyway: the alarm works from the spill, and
        housekeeping sweeps again every minute.
        """
        try:
            await asyncio.to_thread(store.runs.register_instance, self.instance_id, "leader")
            resumed = await asyncio.to_thread(self._sweep_orphans, store)
            released = await asyncio.to_thread(
                store.outbox.release_dead_claims, store.runs.owner_is_dead
            )
        except Exception as error:  # noqa: BLE001 - see the docstring
            logger.error("could not clean up after dead instances: %s", self._redact(str(error)))
            return []
        if released:
            logger.warning("took back %d notification(s) a dead instance was sending", released)
        return resumed

    def _sweep_orphans(self, store: Store) -> list[tuple[int, str]]:
        """Take over the unfinished runs of dead owners that stopped in a wait, watch or
        approval step of a runbook this config still has unchanged (``can_resume``), mark
        the other orphans interrupted; return the runs taken over as (id, runbook).

        The takeover is a compare-and-set on the run's owner, so a run goes to one daemon
        only, even should two believe they lead for a moment.
        """
        from upkeep.engine.runbooks import can_resume

        loaded = self.loaded
        names: dict[int, str] = {}

        def resumable(record: RunRecord) -> bool:
            if not can_resume(loaded, record):
                return False
            names[record.id] = record.runbook
            return True

        swept = store.runs.sweep_orphans(new_owner=self.instance_id, resumable=resumable)
        if swept.interrupted:
            logger.warning("marked %d run(s) interrupted: their owner died", len(swept.interrupted))
        if swept.resumed:
            logger.warning(
                "took over %d run(s) whose owner died in a wait, watch or approval step",
                len(swept.resumed),
            )
        return [(run_id, names[run_id]) for run_id in swept.resumed]

    async def _reload_schedule(
        self,
        scheduler: Scheduler,
        schedule_task: asyncio.Task[None],
        http: HttpClient,
        stop: asyncio.Event,
    ) -> tuple[Scheduler, asyncio.Task[None]]:
        """As the leader, reload the config and restart the schedule on it; return the
        scheduler now running. Should the schedule fail to start on a config that loaded,
        the previous config takes over again, schedule included."""
        previous = self.loaded
        if not await self._reload(stop):
            return scheduler, schedule_task
        try:
            return await self._replace_scheduler(scheduler, schedule_task, http)
        except Exception as error:  # noqa: BLE001 - the previous config takes over again
            logger.error(
                "the schedule could not start on the reloaded config (%s: %s); "
                "back to the previous config",
                type(error).__name__,
                self._redact(str(error)),
            )
            self._use(previous)
            if scheduler not in self._retired:
                self._retired.append(scheduler)  # stopped either way; drained at the end
            fresh = self._new_scheduler(http)
            return fresh, asyncio.create_task(fresh.run(), name="scheduler")

    async def _replace_scheduler(
        self, scheduler: Scheduler, schedule_task: asyncio.Task[None], http: HttpClient
    ) -> tuple[Scheduler, asyncio.Task[None]]:
        """Stop a scheduler after a reload and start one on the new config.

        The old one's running checks and runbooks finish on the old config; it is kept
        only until they have, so reloads never pile up schedulers.
        """
        scheduler.stop()
        await schedule_task
        self._retired = [old for old in self._retired if not old.idle]
        self._retired.append(scheduler)
        fresh = self._new_scheduler(http)
        return fresh, asyncio.create_task(fresh.run(), name="scheduler")

    def _new_scheduler(self, http: HttpClient, resume: Sequence[tuple[int, str]] = ()) -> Scheduler:
        """Given the lead's HTTP client, return a scheduler on the config in force (the
        one pings use), resuming the runs ``resume`` names (id, runbook) taken over from
        dead owners."""
        from upkeep.engine.runbooks import RunbookExecutor
        from upkeep.engine.runner import CheckRunner
        from upkeep.engine.scheduler import Scheduler, SchedulerStats
        from upkeep.reports.service import ReportService

        pipeline = self._pipeline
        if self._store is None or self._state is None or pipeline is None:
            raise RuntimeError("the store is open before scheduling")
        loaded = self.loaded
        checks = CheckRunner(
            redactor=loaded.redactor,
            http=http,
            concurrency=loaded.config.engine.concurrency,
            clock=self.clock,
            store=self._store,
        )
        # The pipeline follows the config in force (``_use``): its alert manager is this
        # config's, and results the store does not take go to its spill.
        executor = RunbookExecutor(
            loaded,
            self._store,
            http=http,
            checks=checks,
            owner=self.instance_id,
            alerts=pipeline.manager,
            clock=self.clock,
            reports=ReportService(loaded, self._store),
            hand_over=True,
        )
        stats = self._state.stats or SchedulerStats()
        self._state.stats = stats
        self.metrics.checks_configured.set(
            sum(1 for check in loaded.checks.values() if check.enabled)
        )
        self.metrics.keep_checks(set(loaded.checks))
        # The newest scheduler is the one a ping's checks run on (``_heartbeat_pinged``).
        self._scheduler = Scheduler(
            loaded,
            self._store,
            checks=checks,
            runbooks=executor,
            owner=self.instance_id,
            on_result=self.metrics.observe_result,
            on_run=self.metrics.observe_run,
            stats=stats,
            running_runbooks=self._running_runbooks,
            alerts=pipeline.manager,
            guard=pipeline.guard,
            clock=self.clock,
        )
        self._scheduler.resume(resume)
        return self._scheduler

    async def _housekeeping(self) -> None:
        """Sweep orphaned runs every minute and apply retention every hour, as the leader."""
        from upkeep.probes.heartbeat import heartbeat_digests

        if self._store is None:
            return
        store = self._store
        since_retention = RETENTION_INTERVAL_S
        next_integrity = 0.0
        while True:
            if self._pipeline is not None and self.clock.monotonic() >= next_integrity:
                # At the start of the lead, then every integrity_interval: a damaged store
                # is found before it fails a read someone needs (and raises upkeep:store).
                interval = self.loaded.config.alerting.store_failure.integrity_interval
                next_integrity = self.clock.monotonic() + interval.total_seconds()
                try:
                    integrity = await asyncio.to_thread(self._pipeline.check_integrity)
                    if integrity is not None:
                        logger.info("store integrity check took %.2f s", integrity.seconds)
                except Exception as error:  # noqa: BLE001 - retried at the next interval
                    logger.warning("integrity check failed to run: %s", self._redact(str(error)))
            try:
                # Orphans are swept only with a scheduler to resume what is taken over.
                scheduler = self._scheduler
                if scheduler is not None:
                    scheduler.resume(await asyncio.to_thread(self._sweep_orphans, store))
                if since_retention >= RETENTION_INTERVAL_S:
                    since_retention = 0.0
                    retention = self.loaded.config.retention
                    report = await asyncio.to_thread(
                        store.prune,
                        keep_results=retention.results,
                        keep_rollups=retention.rollups,
                    )
                    runs_deleted = await asyncio.to_thread(store.runs.prune_runs, retention.runs)
                    alerts_deleted, notices_deleted = await asyncio.to_thread(
                        functools.partial(
                            store.alerts.prune,
                            keep_alerts=retention.alerts,
                            keep_notifications=retention.notifications,
                        )
                    )
                    backup_rows = await asyncio.to_thread(
                        store.backups.prune, self.clock.now() - retention.runs
                    )
                    pings_deleted = await asyncio.to_thread(
                        store.pings.prune,
                        self.clock.now() - retention.results,
                        set(heartbeat_digests(self.loaded.config.targets)),
                    )
                    if pings_deleted:
                        logger.info("retention: %d heartbeat ping(s) deleted", pings_deleted)
                    if backup_rows:
                        logger.info("retention: %d backup record(s) deleted", backup_rows)
                    logger.info(
                        "retention: %d results rolled up, %d deleted; deleted %d rollups, %d runs, "
                        "%d resolved alerts, %d finished notifications",
                        report.results_rolled_up,
                        report.results_deleted,
                        report.rollups_deleted,
                        runs_deleted,
                        alerts_deleted,
                        notices_deleted,
                    )
            except Exception as error:  # noqa: BLE001 - housekeeping failures are logged and retried
                logger.warning("housekeeping failed: %s", self._redact(str(error)))
            await self.clock.sleep(ORPHAN_SWEEP_INTERVAL_S)
            since_retention += ORPHAN_SWEEP_INTERVAL_S


def _answers(store: Store) -> bool:
    """Return whether the store answers a query (blocking; the store's connect timeout)."""
    from sqlalchemy import text

    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001 - any failure means: it does not answer
        return False
    return True


def _bind(host: str, port: int) -> socket.socket:
    """Given a host and port, return a listening socket; raise OSError if it cannot bind."""
    from upkeep.web.server import ACCEPT_BACKLOG

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(ACCEPT_BACKLOG)
    except OSError as error:
        listener.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    listener.setblocking(False)
    return listener


def serve(config_path: Path | None, listen: str | None = None) -> int:
    """Given a config path, run the daemon until it is told to stop; return the exit code."""
    from upkeep.config.loader import load_config

    loaded = load_config(config_path, check_channels=True)
    daemon = Daemon(loaded, listen=listen)
    started = datetime.now(UTC)
    code = asyncio.run(daemon.run())
    logger.info("upkeep serve stopped after %s", datetime.now(UTC) - started)
    return code
