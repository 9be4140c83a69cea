"""What the daemon exports on ``/metrics`` (Prometheus text format, via prometheus_client).

A registry of its own, not the global one, so tests and several daemons in one process
never share counters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from upkeep.alerting.guard import StoreHealth
    from upkeep.core.results import CheckResult
    from upkeep.engine.scheduler import SchedulerStats
    from upkeep.store.runs import RunRecord
    from upkeep.store.store import Store

LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    """Return the label values of every series a labelled gauge holds."""
    return [
        tuple(sample.labels[name] for name in sorted(sample.labels))
        for metric in gauge.collect()
        for sample in metric.samples
    ]


class DaemonMetrics:
    """The daemon's Prometheus metrics, fed by the scheduler's callbacks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.leader = Gauge(
            "upkeep_leader", "1 while this instance runs the schedule", registry=registry
        )
        self.checks_configured = Gauge(
            "upkeep_checks_configured", "enabled checks in the loaded config", registry=registry
        )
        self.config_reloads = Counter(
            "upkeep_config_reloads", "config reloads by outcome", ["outcome"], registry=registry
        )
        self.check_results = Counter(
            "upkeep_check_results", "check results by status", ["status"], registry=registry
        )
        self.check_status = Gauge(
            "upkeep_check_status",
            "latest status of each check (0 ok, 1 warning, 2 critical, 3 unknown)",
            ["check"],
            registry=registry,
        )
        self.probe_metric = Gauge(
            "upkeep_probe_metric",
            "the latest value of each numeric metric a check's probe returned (true/false as "
            "1/0), for graphing what upkeep measures",
            ["check", "target", "metric"],
            registry=registry,
        )
        self.check_last_duration = Gauge(
            "upkeep_check_last_duration_seconds",
            "how long each check's latest probe took",
            ["check", "target"],
            registry=registry,
        )
        # What each check's series are labelled with now: a metric the next result no
        # longer returns, or a check the config no longer has, stops being exported.
        self._series: dict[str, tuple[str, frozenset[str]]] = {}
        self.check_lag = Histogram(
            "upkeep_check_lag_seconds",
            "delay between a check's due time and its start",
            buckets=LAG_BUCKETS_S,
            registry=registry,
        )
        self.check_duration = Histogram(
            "upkeep_check_duration_seconds",
            "how long each check's probe took",
            buckets=DURATION_BUCKETS_S,
            registry=registry,
        )
        self.runbook_runs = Counter(
            "upkeep_runbook_runs",
            "finished runbook runs by runbook and status",
            ["runbook", "status"],
            registry=registry,
        )
        self.results_written = Gauge(
            "upkeep_results_written", "check results written to the store", registry=registry
        )
        self.write_failures = Gauge(
            "upkeep_store_write_failures", "failed batch writes to the store", registry=registry
        )
        self.checks_skipped = Gauge(
            "upkeep_checks_skipped_busy",
            "check slots skipped because the previous run was still going",
            registry=registry,
        )
        self.runbooks_missed = Gauge(
            "upkeep_runbooks_missed", "runbook firings recorded as missed", registry=registry
        )
        self.runbooks_deferred = Gauge(
            "upkeep_runbooks_deferred", "runbook firings deferred to a window", registry=registry
        )
        self.alert_failures = Gauge(
            "upkeep_alert_processing_failures",
            "result batches whose alert processing failed (retried)",
            registry=registry,
        )
        self.alerts_open = Gauge(
            "upkeep_alerts_open",
            "open alerts by state, severity and whether acknowledged",
            ["state", "severity", "acknowledged"],
            registry=registry,
        )
        self.store_healthy = Gauge(
            "upkeep_store_healthy",
            "1 while the store takes results and passes its integrity check, else 0",
            registry=registry,
        )
        self.store_writable = Gauge(
            "upkeep_store_writable",
            "1 while the last write of results to the store worked, else 0",
            registry=registry,
        )
        self.store_integrity_ok = Gauge(
            "upkeep_store_integrity_ok",
            "1 if the store passed its last integrity check (PRAGMA quick_check), else 0",
            registry=registry,
        )
        self.store_integrity_seconds = Gauge(
            "upkeep_store_integrity_check_seconds",
            "how long the last integrity check of the store took",
            registry=registry,
        )
        self.store_spilling = Gauge(
            "upkeep_store_spilling",
            "1 while alerting works from the spill because the store does not take results",
            registry=registry,
        )
        self.results_spilled = Gauge(
            "upkeep_results_spilled",
            "check results kept in the spill because the store did not take them",
            registry=registry,
        )
        for gauge in (self.store_healthy, self.store_writable, self.store_integrity_ok):
            gauge.set(1)
        self.outbox_rows = Gauge(
            "upkeep_outbox_notifications",
            "notifications in the outbox by status (pending, sending, sent, dead, muted)",
            ["status"],
            registry=registry,
        )

    def observe_result(self, result: CheckResult, lag_s: float) -> None:
        """Given a check result and its lag, count it and export its numeric metrics."""
        label = result.status.label
        self.check_results.labels(label).inc()
        self.check_status.labels(result.check).set(int(result.status))
        self.check_lag.observe(max(lag_s, 0.0))
        self.check_duration.observe(result.duration_ms / 1000)
        numbers = {
            name: float(value)
            for name, value in result.metrics.items()
            if isinstance(value, int | float)  # bool is an int: true/false as 1/0
        }
        self._forget(result.check, keep_target=result.target, keep_metrics=set(numbers))
        for name, value in numbers.items():
            self.probe_metric.labels(result.check, result.target, name).set(value)
        self.check_last_duration.labels(result.check, result.target).set(result.duration_ms / 1000)
        self._series[result.check] = (result.target, frozenset(numbers))

    def keep_checks(self, names: set[str]) -> None:
        """Given the checks of the loaded config, stop exporting the series of any other
        (a check removed or renamed by a reload)."""
        for check in set(self._series) - names:
            self._forget(check)
            del self._series[check]
        for check in {labels[0] for labels in _label_sets(self.check_status)} - names:
            self.check_status.remove(check)

    def _forget(
        self, check: str, keep_target: str | None = None, keep_metrics: set[str] | None = None
    ) -> None:
        """Remove the series of ``check`` except those of ``keep_target`` and
        ``keep_metrics``."""
        if check not in self._series:
            return
        target, metrics = self._series[check]
        for metric in metrics:
            if target != keep_target or metric not in (keep_metrics or set()):
                self.probe_metric.remove(check, target, metric)
        if target != keep_target:
            self.check_last_duration.remove(check, target)

    def observe_run(self, record: RunRecord) -> None:
        """Given a finished run, count it."""
        self.runbook_runs.labels(record.runbook, record.status).inc()

    def update_from(self, stats: SchedulerStats) -> None:
        """Given the scheduler's counters, copy them into the gauges (at scrape time)."""
        self.results_written.set(stats.results_written)
        self.write_failures.set(stats.write_failures)
        self.checks_skipped.set(stats.checks_skipped_busy)
        self.runbooks_missed.set(stats.runbooks_missed)
        self.runbooks_deferred.set(stats.runbooks_deferred)
        self.alert_failures.set(stats.alert_failures)
        self.results_spilled.set(stats.results_spilled)

    def observe_store_health(self, health: StoreHealth) -> None:
        """Given the store's health (``StoreGuard`` calls this on every change), set the
        store gauges."""
        self.store_healthy.set(1 if health.status == "ok" else 0)
        self.store_writable.set(0 if health.writable is False or health.spill else 1)
        self.store_integrity_ok.set(0 if health.integrity_ok is False else 1)
        if health.integrity_seconds is not None:
            self.store_integrity_seconds.set(health.integrity_seconds)
        self.store_spilling.set(1 if health.spill else 0)

    def update_alerting(self, store: Store) -> None:
        """Given the store, set the alert and outbox gauges from it (at scrape time; blocking)."""
        from upkeep.store.outbox import OUTBOX_STATUSES

        counts: dict[tuple[str, str, str], int] = {}
        for record in store.alerts.list_alerts(open_only=True, limit=100_000):
            key = (record.state, record.severity, "yes" if record.acked_by else "no")
            counts[key] = counts.get(key, 0) + 1
        self.alerts_open.clear()
        for (state, severity, acknowledged), count in counts.items():
            self.alerts_open.labels(state, severity, acknowledged).set(count)
        for status in OUTBOX_STATUSES:
            self.outbox_rows.labels(status).set(0)
        for name, count in store.outbox.counts().items():
            self.outbox_rows.labels(name).set(count)
