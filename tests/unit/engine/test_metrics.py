"""The daemon's /metrics: what upkeep measures is exported per check, so Grafana can graph
it, and a check a reload removes (or a metric a probe stops returning) stops being
exported."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from upkeep.core.results import CheckResult, MetricValue
from upkeep.core.status import Status
from upkeep.engine.metrics import DaemonMetrics


def result(check: str, target: str, metrics: dict[str, MetricValue]) -> CheckResult:
    return CheckResult(
        check=check,
        target=target,
        probe="probe",
        status=Status.WARNING,
        metrics=metrics,
        message="m",
        duration_ms=250.0,
        at=datetime(2026, 12, 7, tzinfo=UTC),
    )


def samples(metrics: DaemonMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def test_every_numeric_metric_of_a_result_is_a_gauge_labelled_with_check_and_target() -> None:
    metrics = DaemonMetrics()
    metrics.observe_result(
        result("api", "web", {"response_time_ms": 42.5, "status_code": 200, "tls": True, "v": "x"}),
        lag_s=0.0,
    )
    assert samples(metrics, "upkeep_probe_metric") == {
        (("check", "api"), ("metric", "response_time_ms"), ("target", "web")): 42.5,
        (("check", "api"), ("metric", "status_code"), ("target", "web")): 200.0,
        (("check", "api"), ("metric", "tls"), ("target", "web")): 1.0,  # a text is left out
    }
    assert samples(metrics, "upkeep_check_last_duration_seconds") == {
        (("check", "api"), ("target", "web")): 0.25
    }
    assert samples(metrics, "upkeep_check_status") == {(("check", "api"),): 1.0}


def test_a_metric_no_longer_returned_and_a_check_no_longer_configured_stop_being_exported() -> None:
    metrics = DaemonMetrics()
    metrics.observe_result(result("api", "web", {"a": 1, "b": 2}), lag_s=0.0)
    metrics.observe_result(result("db", "pg", {"c": 3}), lag_s=0.0)
    metrics.observe_result(result("api", "web", {"a": 5}), lag_s=0.0)
    assert samples(metrics, "upkeep_probe_metric") == {
        (("check", "api"), ("metric", "a"), ("target", "web")): 5.0,
        (("check", "db"), ("metric", "c"), ("target", "pg")): 3.0,
    }
    # A reload that renames db's target, then one that drops the check.
    metrics.observe_result(result("db", "pg2", {"c": 4}), lag_s=0.0)
    assert (("check", "db"), ("target", "pg")) not in samples(
        metrics, "upkeep_check_last_duration_seconds"
    )
    metrics.keep_checks({"api"})
    assert samples(metrics, "upkeep_probe_metric") == {
        (("check", "api"), ("metric", "a"), ("target", "web")): 5.0
    }
    assert set(samples(metrics, "upkeep_check_last_duration_seconds")) == {
        (("check", "api"), ("target", "web"))
    }
    assert set(samples(metrics, "upkeep_check_status")) == {(("check", "api"),)}
