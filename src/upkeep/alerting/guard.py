"""Results in, alerts out, whatever state the store is in.

The alarm must not depend on the thing that is failing. Normally a batch of results goes
through ``AlertManager.record``: one store transaction keeps the results, the alert
changes and their notices together. When the store does not take it (a full disk, a
read-only or damaged file, a PostgreSQL server that is gone or a role that lost its
rights), ``StoreGuard`` records the batch in the spill instead (``store/spill.py``): the
same alert manager and the same dispatcher, on a store of their own, so the notices still
go out, with the keys the store would have had for notices it already held. It also
raises ``upkeep:store`` (``alerting/system.py``): critical while results cannot be stored
or the store fails its integrity check, on the routes like any alert, once per episode.

While an episode lasts, the guard tries every ``RECONCILE_RETRY_S`` to write the spill back
into the store (``Spill.reconcile``); once that works the store's own dispatcher takes
over, the spilled notices that went out are recorded sent (none is sent twice), and the
next batch resolves ``upkeep:store``.

The integrity check (``Store.check_integrity``: SQLite's ``PRAGMA quick_check``) runs at
the daemon's start, every ``alerting.store_failure.integrity_interval``, and at once when
the store answers "database disk image is malformed"; ``upkeep check`` runs it when the
last sound check is older than that interval (the time is kept in the store).

One guard serves one process. ``record``, ``tick`` and ``check_integrity`` block (call
them from a thread); ``deliver_spill`` is async and skips a round while a reconcile runs,
so a reconcile never races a delivery out of the spill.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from upkeep.alerting.manager import AlertManager, AlertProcessingError, AlertReport
from upkeep.config.models import STORE_CHECK, STORE_PROBE, StoreConfig
from upkeep.core.clock import SYSTEM_CLOCK, Clock
from upkeep.core.redaction import display_url
from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.spill import (
    MEMORY,
    Episode,
    ReconcileReport,
    Spill,
    SpillBusyError,
    read_only_snapshot,
)
from upkeep.store.store import error_reason, is_corruption, normalise_url

if TYPE_CHECKING:
    from upkeep.alerting.delivery import DeliveryReport
    from upkeep.config.loader import LoadedConfig
    from upkeep.store.store import IntegrityReport, Store

logger = logging.getLogger(__name__)

RECONCILE_RETRY_S = 2.0
"""While an episode lasts, how often writing the spill back into the store is tried."""
CORRUPTION_RECHECK_S = 60.0
"""A "malformed" error runs the integrity check at once, but at most this often."""
INTEGRITY_MARK = "upkeep:store-integrity"
"""``schedule_marks`` name: when the store last passed its integrity check."""


class ResultsNotRecordedError(Exception):
    """Neither the store nor the spill took a batch of results; keep it and retry."""


HealthStatus = Literal["ok", "degraded", "unhealthy"]


@dataclass(frozen=True)
class StoreHealth:
    """What the guard knows of the store now: the answer behind ``/healthz``."""

    writable: bool | None = None
    """Whether the last write of results worked (None: none tried yet)."""
    write_problem: str | None = None
    failing_since: datetime | None = None
    integrity_ok: bool | None = None
    """Whether the last integrity check passed (None: not checked yet)."""
    integrity_problem: str | None = None
    integrity_checked_at: datetime | None = None
    integrity_seconds: float | None = None
    spill: str | None = None
    """Where alerting works while the store cannot (a spill file, ``memory``), else None."""
    episode_since: datetime | None = None
    alarm_ok: bool = True
    """False when results could not be alerted on at all (store and spill both failed)."""

    @property
    def status(self) -> HealthStatus:
        """Return ``ok``, ``degraded`` (the store fails, alerting works without it) or
        ``unhealthy`` (alerting itself fails)."""
        if not self.alarm_ok:
            return "unhealthy"
        return "degraded" if self.reasons else "ok"

    @property
    def reasons(self) -> list[str]:
        """Return why the store is not ok, one sentence each (empty when it is)."""
        found: list[str] = []
        if self.writable is False or self.spill is not None:
            found.append(f"results cannot be stored: {self.write_problem or 'see the log'}")
        if self.integrity_ok is False:
            found.append(f"store integrity check failed: {self.integrity_problem}")
        if not self.alarm_ok:
            found.append("alerts cannot be recorded anywhere (store and spill both fail)")
        return found

    def to_json(self) -> dict[str, Any]:
        """Return the health as JSON-ready data."""

        def iso(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "status": self.status,
            "reasons": self.reasons,
            "writable": self.writable,
            "failing_since": iso(self.failing_since),
            "integrity_ok": self.integrity_ok,
            "integrity_checked_at": iso(self.integrity_checked_at),
            "integrity_seconds": (
                round(self.integrity_seconds, 3) if self.integrity_seconds is not None else None
            ),
            "spill": self.spill,
            "spill_since": iso(self.episode_since),
        }


@dataclass(frozen=True)
class Recorded:
    """What became of one batch: stored in the store, or kept in the spill (``spill`` says
    where, ``reason`` why), and what alerting did with it."""

    written: int
    report: AlertReport
    stored: bool = True
    reason: str | None = None
    spill: str | None = None
    reconciled: ReconcileReport | None = None


@dataclass
class _Reported:
    """What this process last recorded for ``upkeep:store``, and where."""

    where: str = ""
    status: Status | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StoreGuard:
    """Records results and runs alerting through the store, or through the spill while
    the store cannot; keeps the store's health."""

    def __init__(
        self,
        loaded: LoadedConfig,
        store: Store | None,
        *,
        open_error: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        on_change: Callable[[StoreHealth], None] | None = None,
    ) -> None:
        self.loaded = loaded
        self.main = store
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._spill: Spill | None = None
        self._spill_manager: AlertManager | None = None
        self._episode: Episode | None = None
        # "Never" is minus infinity: the monotonic clock counts from boot, so 0.0 would
        # read as "a moment ago" for the first minutes (or hour) after a host starts.
        self._last_attempt = -math.inf
        self._last_spill_look = -math.inf
        self._last_corruption_check = -math.inf
        self._reported = _Reported()
        self._manager: AlertManager | None = (
            AlertManager(loaded, store, clock=clock) if store else None
        )
        self._health = StoreHealth()
        if store is None:
            self._note_write_failure(open_error or "the store cannot be opened")
        self._look_for_spill(force=True)

    # --- what the outside sees --------------------------------------------------------------

    @property
    def health(self) -> StoreHealth:
        """Return the store's health now."""
        return self._health

    @property
    def manager(self) -> AlertManager | None:
        """Return the alert manager of the store (None if the store could not be opened)."""
        return self._manager

    @property
    def spilling(self) -> bool:
        """Return whether an episode is going on (alerting works from the spill)."""
        return self._episode is not None

    @property
    def spill_store(self) -> Store | None:
        """Return the spill's store while an episode is going on."""
        return self._spill.store if self._spill is not None and self._episode else None

    def use_config(self, loaded: LoadedConfig, manager: AlertManager | None = None) -> None:
        """Given a reloaded config (and the store's alert manager for it, if the caller
        has one), use it from the next batch on. Does not wait for the guard's lock: the
        event loop calls it, and ``deliver_spill`` holds that lock across awaits."""
        self.loaded = loaded
        self._manager = manager or (
            AlertManager(loaded, self.main, clock=self.clock) if self.main else None
        )
        self._spill_manager = None

    def close(self) -> None:
        """Release the spill (a spill in memory, and its episode, end here)."""
        with self._lock:
            if self._spill is not None:
                if self._spill.in_memory and self._episode is not None:
                    logger.error(
                        "the store is still failing: alerting state kept in memory is lost"
                    )
                self._spill.close()
                self._spill = None
                self._episode = None

    # --- results --------------------------------------------------------------------------

    def record(self, results: Sequence[CheckResult], run_id: int | None = None) -> Recorded:
        """Given results, store them with their alerts, or keep them in the spill with
        theirs if the store does not take them; return what happened.

        Raise ``AlertProcessingError`` if the store kept the results but their alerts
        could be processed nowhere (retry ``AlertManager.process``), and
        ``ResultsNotRecordedError`` if neither the store nor the spill took them.
        """
        with self._lock:
            reconciled: ReconcileReport | None = None
            self._look_for_spill()
            self._notice_episode_written_back()
            if self._episode is not None and self.main is not None and self._retry_due():
                reconciled = self._try_reconcile()
            if self._episode is not None or self.main is None or self._manager is None:
                reason = self._health.write_problem or "the store is not available"
                return replace(
                    self._record_in_spill(results, run_id, reason), reconciled=reconciled
                )
            batch = [*results, *self._store_result("main")]
            try:
                written, report = self._manager.record(batch, run_id)
            except AlertProcessingError as error:
                return self._alerts_in_spill(results, error)
            except Exception as error:  # noqa: BLE001 - every store failure is handled alike
                reason = self._describe(error)
                logger.error("results cannot be stored, alerting from the spill: %s", reason)
                self._note_write_failure(reason)
                if is_corruption(error):
                    self._check_corruption()
                return replace(
                    self._record_in_spill(results, run_id, reason), reconciled=reconciled
                )
            self._note_write_success()
            self._mark_reported("main", batch)
            return Recorded(written - _count_store(batch), report, reconciled=reconciled)

    def _record_in_spill(
        self, results: Sequence[CheckResult], run_id: int | None, reason: str
    ) -> Recorded:
        for attempt in range(2):
            spill = self._open_spill(memory=attempt > 0)
            try:
                episode = self._begin(spill, reason)
                manager = self._manager_for(spill, episode)
                batch = [*results, *self._store_result(episode.token, force=True)]
                written, report = manager.record(batch, run_id)
            except AlertProcessingError as error:
                # The spill kept the results; their alerts wait for the next attempt.
                logger.error("alerts could not be processed in the spill either: %s", error)
                self._set(alarm_ok=False)
                return Recorded(error.written, AlertReport(), False, reason, spill.location)
            except Exception as error:  # noqa: BLE001 - a spill file that fails gives way to memory
                logger.error("the spill %s fails: %s", spill.location, self._describe(error))
                self._drop_spill()
                if spill.in_memory:
                    break
                continue
            dropped = spill.trim()
            if dropped:
                logger.warning("spill full: dropped the %d oldest result(s)", dropped)
            self._mark_reported(episode.token, batch)
            self._set(alarm_ok=True, spill=spill.location, episode_since=episode.since)
            return Recorded(written - _count_store(batch), report, False, reason, spill.location)
        self._set(alarm_ok=False)
        raise ResultsNotRecordedError(
            f"results cannot be stored in the store or the spill: {reason}"
        )

    def _alerts_in_spill(
        self, results: Sequence[CheckResult], error: AlertProcessingError
    ) -> Recorded:
        """The store kept the results but not their alerts: process those in the spill."""
        cause = self._describe(error.__cause__ or error)
        reason = f"alerts cannot be stored: {cause}"
        logger.error("%s; alerting from the spill", reason)
        self._note_write_failure(reason)
        try:
            spill = self._open_spill()
            episode = self._begin(spill, reason)
            manager = self._manager_for(spill, episode)
            batch = [*results, *self._store_result(episode.token, force=True)]
            report = manager.process(batch)
        except Exception as spill_error:  # noqa: BLE001 - then the caller retries as before
            logger.error("the spill fails too: %s", self._describe(spill_error))
            raise error from None
        self._mark_reported(episode.token, batch)
        self._set(alarm_ok=True, spill=spill.location, episode_since=episode.since)
        return Recorded(error.written, report, True, cause, spill.location)

    # --- time and delivery ------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> AlertReport:
        """Run the alerts' clock (repeats, escalation, lapsed acknowledgements) where the
        alerts are now: in the spill during an episode, else in the store."""
        with self._lock:
            self._notice_episode_written_back()
            if self._episode is not None and self.main is not None and self._retry_due():
                # No results may come (no checks due): the clock tries the store too.
                self._try_reconcile()
            if self._episode is not None and self._spill is not None:
                return self._manager_for(self._spill, self._episode).tick(now)
            manager = self._manager
        return manager.tick(now) if manager is not None else AlertReport()

    async def deliver_spill(self, owner: str) -> list[DeliveryReport]:
        """During an episode, deliver what the spill's outbox has due (as ``owner``) and
        return what happened; do nothing otherwise, or while a reconcile runs."""
        from upkeep.alerting.delivery import Dispatcher

        if self._episode is None or self._spill is None:
            return []
        if not self._lock.acquire(blocking=False):
            return []  # a reconcile (or a batch) is busy with the spill: next round
        try:
            spill = self._spill
            if self._episode is None or spill is None:
                return []
            config = self.loaded.config
            dispatcher = Dispatcher(
                spill.store.outbox,
                config.channels,
                config.alerting.delivery,
                self.loaded.redactor,
                owner,
                clock=self.clock,
            )
            return await dispatcher.deliver_due()
        finally:
            self._lock.release()

    def release_spill_claims(self, owner: str) -> None:
        """Hand back what ``owner`` was sending from the spill (a clean stop)."""
        spill = self._spill
        if spill is not None:
            try:
                spill.store.outbox.release(owner)
            except Exception as error:  # noqa: BLE001 - the leases run out on their own anyway
                logger.warning("could not release spill claims: %s", error)

    def reconcile_now(self) -> ReconcileReport | None:
        """Try to write the spill back into the store now; return what was imported, or
        None if there was nothing to import or the store does not take it yet."""
        with self._lock:
            self._look_for_spill(force=True)
            if self._episode is None or self.main is None:
                return None
            return self._try_reconcile()

    # --- integrity --------------------------------------------------------------------------

    def check_integrity(self, *, only_if_due: bool = False) -> IntegrityReport | None:
        """Check the store's integrity and keep the outcome in the health; return it, or
        None if there is no store or (with ``only_if_due``) it passed within
        ``integrity_interval`` (the time of the last pass is kept in the store)."""
        store = self.main
        if store is None:
            return None
        interval = self.loaded.config.alerting.store_failure.integrity_interval
        now = self.clock.now()
        if only_if_due:
            try:
                last = store.runs.schedule_mark(INTEGRITY_MARK)
            except Exception:  # noqa: BLE001 - a store that cannot say is checked
                last = None
            if (
                last is not None
                and now - last < interval
                and self._health.integrity_ok is not False
            ):
                return None
        report = store.check_integrity()
        if report.unchecked is not None:
            logger.warning(
                "could not check the store's integrity: %s", self._redact(report.unchecked)
            )
            return report
        if report.ok:
            if self._health.integrity_ok is False:
                logger.warning("the store passed its integrity check again")
            try:
                store.runs.set_schedule_mark(INTEGRITY_MARK, now)
            except Exception as error:  # noqa: BLE001 - then the next run checks again
                logger.debug("could not record the integrity check: %s", error)
        else:
            logger.error(
                "the store failed its integrity check (%.2f s): %s",
                report.seconds,
                self._redact(report.reason),
            )
        self._set(
            integrity_ok=report.ok,
            integrity_problem=None if report.ok else self._redact(report.reason),
            integrity_checked_at=now,
            integrity_seconds=report.seconds,
        )
        return report

    def _check_corruption(self) -> None:
        if self.clock.monotonic() - self._last_corruption_check < CORRUPTION_RECHECK_S:
            return
        self._last_corruption_check = self.clock.monotonic()
        self.check_integrity()

    # --- the spill --------------------------------------------------------------------------

    def _settings(self) -> tuple[StoreConfig, Any, str | None]:
        config = self.loaded.config
        return config.store, self.loaded.base_dir, config.alerting.store_failure.spill_dir

    def _look_for_spill(self, *, force: bool = False) -> None:
        """Find an episode another process (or an earlier run) left in the spill file."""
        if self._episode is not None:
            return
        if not force and self.clock.monotonic() - self._last_spill_look < RECONCILE_RETRY_S:
            return
        self._last_spill_look = self.clock.monotonic()
        if self._spill is None:
            store, base_dir, directory = self._settings()
            self._spill = Spill.find(store.url, base_dir, directory, schema=store.schema_name)
        if self._spill is None:
            return
        try:
            self._episode = self._spill.episode()
        except Exception as error:  # noqa: BLE001 - an unreadable spill holds nothing for us
            logger.warning("cannot read the spill %s: %s", self._spill.location, error)
            self._drop_spill()
            return
        if self._episode is not None:
            self._spill_manager = None
            self._last_attempt = -math.inf
            self._set(
                spill=self._spill.location,
                episode_since=self._episode.since,
                write_problem=self._health.write_problem or self._episode.reason,
            )

    def _open_spill(self, *, memory: bool = False) -> Spill:
        if self._spill is not None and (self._spill.in_memory or not memory):
            return self._spill
        self._drop_spill()
        store, base_dir, directory = self._settings()
        self._spill = Spill.open(
            store.url, base_dir, directory, memory=memory, schema=store.schema_name
        )
        return self._spill

    def _drop_spill(self) -> None:
        if self._spill is not None:
            try:
                self._spill.close()
            except Exception:  # closing a broken spill may fail; it is dropped anyway
                logger.debug("closing the spill failed", exc_info=True)
        self._spill = None
        self._spill_manager = None
        self._episode = None

    def _begin(self, spill: Spill, reason: str) -> Episode:
        current = spill.episode()
        if current != self._episode:
            # Another process (a cron check, the daemon) wrote the last episode back and
            # started the next one meanwhile: work in that one, with its keys.
            self._episode, self._spill_manager = current, None
        if self._episode is None:
            source = self.main
            if source is None:
                store, base_dir, _ = self._settings()
                source = read_only_snapshot(store.url, base_dir)
            try:
                self._episode = spill.begin(self._redact(reason), source, self.clock.now())
            finally:
                if source is not None and source is not self.main:
                    source.close()
            self._spill_manager = None
            logger.warning(
                "spill episode %s started in %s: %s", self._episode.token, spill.location, reason
            )
        return self._episode

    def _manager_for(self, spill: Spill, episode: Episode) -> AlertManager:
        if self._spill_manager is None:
            self._spill_manager = AlertManager(
                self.loaded, spill.store, clock=self.clock, key_prefix=episode.key_prefix
            )
        return self._spill_manager

    def _retry_due(self) -> bool:
        return self.clock.monotonic() - self._last_attempt >= RECONCILE_RETRY_S

    def _notice_episode_written_back(self) -> None:
        """If another process wrote this process's episode back into the store (the spill
        holds none now), end the episode here too: the store takes writes again. Without
        this, a batch before the next retry took the emptied spill for a new outage,
        started another episode and raised ``upkeep:store`` again."""
        spill = self._spill
        if self._episode is None or spill is None or spill.in_memory or self.main is None:
            return
        try:
            current = spill.episode()
        except Exception:  # noqa: BLE001 - an unreadable spill: the batch finds out
            return
        if current is not None:
            return
        logger.warning("spill episode %s was written back by another process", self._episode.token)
        self._end_episode(spill)

    def _end_episode(self, spill: Spill) -> None:
        """The episode is over (written back): alerting works on the store again."""
        self._episode = None
        self._spill_manager = None
        if spill.in_memory:
            self._drop_spill()
        self._note_write_success()
        self._set(spill=None, episode_since=None)

    def _try_reconcile(self) -> ReconcileReport | None:
        """Write the spill back into the store; on success the episode is over."""
        self._last_attempt = self.clock.monotonic()
        spill, main = self._spill, self.main
        if spill is None or main is None:
            return None
        try:
            report = spill.reconcile(main, self.clock.now())
        except SpillBusyError as busy:
            # Not the store's fault: written back at the next try, once those are sent.
            logger.info("spill episode not written back yet: %s", busy)
            return None
        except Exception as error:  # noqa: BLE001 - the store still fails: keep spilling
            reason = self._describe(error)
            logger.info("the store does not take the spill yet: %s", reason)
            self._note_write_failure(reason)
            if is_corruption(error):
                self._check_corruption()
            return None
        if report is not None:
            logger.warning(
                "the store takes writes again: spill episode %s written back "
                "(%d result(s), %d alert(s), %d notice(s))",
                report.token,
                report.results,
                report.alerts,
                report.notices,
            )
        self._end_episode(spill)
        recovery = self._store_result("main")
        if recovery and self._manager is not None:
            # Resolved now, not with the next batch (which may be a while away).
            try:
                self._manager.record(recovery)
                self._mark_reported("main", recovery)
            except Exception as error:  # noqa: BLE001 - the next batch carries it again
                logger.warning("could not record the store's recovery: %s", self._describe(error))
        return report

    # --- the store alert --------------------------------------------------------------------

    def _store_result(self, where: str, *, force: bool = False) -> list[CheckResult]:
        """Return the ``upkeep:store`` result to record with a batch going to ``where``
        (the store, or an episode's spill), if what it says changed since this process last
        recorded it there; ``force`` makes it critical (the batch goes to the spill)."""
        health = self._health
        problems = health.reasons if not force else self._spill_reasons()
        status = Status.CRITICAL if problems else Status.OK
        reported = self._reported
        if reported.where == where and reported.status is status:
            return []
        if status is Status.OK and reported.status is None and not self._store_alert_open():
            self._reported = _Reported(where, status)
            return []
        config = self.loaded.config
        url = display_url(normalise_url(config.store.url, self.loaded.base_dir))
        if problems:
            message = "; ".join(problems)
            if health.spill or force:
                place = "memory" if (self._spill and self._spill.in_memory) else "the spill file"
                message += f". Alerting continues from {place}"
        else:
            message = f"the store {url} is writable and sound again"
        return [
            CheckResult(
                check=STORE_CHECK,
                target=url[:200],
                probe=STORE_PROBE,
                status=status,
                metrics={
                    "writable": 0 if (force or health.writable is False) else 1,
                    "sound": 0 if health.integrity_ok is False else 1,
                },
                message=self._redact(message)[:2000],
                duration_ms=0.0,
                at=self.clock.now(),
                severity=config.alerting.store_failure.severity,
                labels=dict(config.alerting.store_failure.labels),
            )
        ]

    def _spill_reasons(self) -> list[str]:
        reasons = self._health.reasons
        if not any(reason.startswith("results cannot") for reason in reasons):
            why = self._health.write_problem or (self._episode.reason if self._episode else "")
            reasons.insert(0, f"results cannot be stored: {why or 'the store is not available'}")
        return reasons

    def _store_alert_open(self) -> bool:
        """Return whether the store has an open ``upkeep:store`` alert (False if it cannot
        be read: the next problem raises a new one anyway)."""
        if self.main is None:
            return False
        try:
            with self.main.engine.connect() as connection:
                return bool(self.main.alerts.open_alerts(connection, [STORE_CHECK]))
        except Exception:  # noqa: BLE001 - see the docstring
            return False

    def _mark_reported(self, where: str, batch: Sequence[CheckResult]) -> None:
        for result in batch:
            if result.check == STORE_CHECK:
                self._reported = _Reported(where, result.status)

    # --- health -----------------------------------------------------------------------------

    def _note_write_failure(self, reason: str) -> None:
        since = self._health.failing_since or self.clock.now()
        self._set(writable=False, write_problem=self._redact(reason), failing_since=since)

    def _note_write_success(self) -> None:
        if self._health.writable is False:
            logger.warning("the store takes results again")
        self._set(writable=True, write_problem=None, failing_since=None, alarm_ok=True)

    def _set(self, **changes: Any) -> None:
        with self._health_lock:
            before = self._health
            after = replace(before, **changes)
            if after == before:
                return
            self._health = after
        if self.on_change is not None:
            try:
                self.on_change(after)
            except Exception:  # a metrics hook must not break recording
                logger.debug("store health listener failed", exc_info=True)

    def _describe(self, error: BaseException) -> str:
        return self._redact(error_reason(error))

    def _redact(self, text: str) -> str:
        return self.loaded.redactor.redact(text)


def _count_store(batch: Sequence[CheckResult]) -> int:
    return sum(1 for result in batch if result.check == STORE_CHECK)


def location_label(location: str | None) -> str:
    """Given a spill location, return how to name it in a sentence."""
    if location is None:
        return "nowhere"
    return "memory (this process only)" if location == MEMORY else f"the spill file {location}"
