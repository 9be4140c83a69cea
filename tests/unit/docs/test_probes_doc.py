from __future__ import annotations

from pathlib import Path

from upkeep.docs import render
from upkeep.probes.registry import TARGET_KINDS

SPEC_METRICS = {
    ("http", "request"): {"status_code", "response_time_ms", "body_bytes", "cert_days_left"},
    ("tcp", "connect"): {"connect_ms"},
    ("postgres", "ping"): {"latency_ms", "version"},
    ("postgres", "connections"): {"active", "idle", "total", "max", "usage_percent"},
    ("postgres", "long_queries"): {"count", "longest_s"},
    ("postgres", "replication"): {"lag_bytes", "lag_s", "replicas"},
    ("postgres", "size"): {"bytes", "largest_table_bytes"},
    ("postgres", "vacuum"): {"dead_tuple_percent_max", "tables_needing_vacuum", "oldest_analyze_s"},
    ("postgres", "cache_hit"): {"hit_percent"},
    ("mysql", "ping"): {"latency_ms", "version"},
    ("mysql", "connections"): {"active", "idle", "total", "max", "usage_percent"},
    ("redis", "ping"): {"latency_ms"},
    ("redis", "memory"): {"used_bytes", "used_percent", "fragmentation_ratio"},
    ("redis", "stats"): {"hit_rate_percent", "evicted_keys", "connected_clients", "keys"},
    ("redis", "bigkeys"): {
        "largest_key_bytes",
        "keys_over_threshold",
        "sampled",
        "coverage_percent",
        "complete",
    },
    ("redis", "health"): {
        "allocator_frag_ratio",
        "evicted_per_min",
        "rejecting_writes",
        "policy_mismatch",
        "slow_commands",
        "slowest_ms",
        "latency_spike_ms",
        "persistence_ok",
        "last_save_age_s",
        "findings",
    },
    ("host", "disk"): {"used_percent", "free_bytes"},
    ("host", "memory"): {"used_percent", "available_bytes"},
    ("host", "cpu"): {"used_percent"},
    ("host", "load"): {"load1", "load5", "load15", "load_per_cpu"},
    ("host", "process"): {"count"},
    ("host", "uptime"): {"seconds"},
    ("logs", "errors"): {"count", "rate_per_min"},
    ("logs", "size"): {"bytes", "files"},
    ("tls", "expiry"): {"days_left", "valid"},
    ("command", "run"): {"exit_code"},
}
# Beyond the spec's table: the analyzer probes of the log-maintenance issue (#5).
ADDED_METRICS = {
    ("logs", "levels"): {"lines", "critical", "errors", "warnings", "matches", "errors_per_min"},
    ("logs", "security"): {"events", "failed_logins", "denied_requests"},
    ("logs", "access"): {
        "requests",
        "requests_per_min",
        "errors",
        "error_rate_percent",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    },
}
# The backup target kind of the backups issue (#6).
ADDED_METRICS |= {
    ("backup", "freshness"): {
        "age_s",
        "last_verified_age_s",
        "size_bytes",
        "size_change_percent",
        "backups",
        "last_attempt_ok",
        # Issue #11: a damaged backup is never the newest good one.
        "damaged",
        "newest_intact",
    },
    ("backup", "drill"): {"age_s", "passed", "rto_s", "rpo_s", "rto_met", "rpo_met"},
}
# Heartbeats of the presentation issue (#14): cron jobs that report in.
ADDED_METRICS |= {
    ("heartbeat", "status"): {
        "state",
        "last_ping_age_s",
        "last_duration_s",
        "last_exit_code",
        "running_s",
        "deadline_in_s",
    },
}
# Metrics from the application (#15): a systemd unit's state, a group's health score.
ADDED_METRICS |= {
    ("host", "systemd"): {
        "active",
        "active_state",
        "sub_state",
        "load_state",
        "restarts",
        "main_pid",
        "in_state_s",
        "active_for_s",
    },
    ("group", "health"): {"healthy_percent", "ok", "warning", "critical", "unknown", "total"},
}
# SQL checks of issue #15: the query's own figures; the rest are named in its params.
ADDED_METRICS |= {
    ("postgres", "query"): {"elapsed_ms", "rows"},
    ("mysql", "query"): {"elapsed_ms", "rows"},
}
# MySQL/MariaDB indexes and fragmentation of the database-upkeep issue (#16).
ADDED_METRICS |= {
    ("mysql", "indexes"): {"indexes", "duplicate", "redundant", "unused"},
    ("mysql", "fragmentation"): {"fragmented", "free_bytes_max"},
}
# Vacuum and transaction health of the database-upkeep issue (#16): effective thresholds
# extend the spec's vacuum probe, the rest are probes of their own.
ADDED_METRICS |= {
    ("postgres", "vacuum"): SPEC_METRICS[("postgres", "vacuum")]
    | {
        "tables_needing_analyze",
        "tables_needing_insert_vacuum",
        "vacuum_threshold_ratio_max",
        "autovacuum_disabled_tables",
    },
    ("postgres", "wraparound"): {
        "xid_age",
        "xid_freeze_percent",
        "xid_wraparound_percent",
        "mxid_age",
        "mxid_freeze_percent",
        "mxid_wraparound_percent",
    },
    ("postgres", "sequences"): {"near_exhaustion", "used_percent_max", "sequences"},
    ("postgres", "replication_slots"): {
        "slots",
        "inactive",
        "retained_wal_bytes_max",
        "inactive_retained_wal_bytes",
        "lost",
    },
    ("postgres", "transactions"): {
        "idle_in_transaction",
        "idle_in_transaction_longest_s",
        "blocked",
        "blocked_longest_s",
    },
}
# PostgreSQL index findings of issue #16.
ADDED_METRICS |= {
    ("postgres", "indexes"): {
        "unused",
        "unused_bytes",
        "duplicate",
        "redundant",
        "invalid",
        "fk_without_index",
        "index_bytes",
        "indexes",
        "stats_age_s",
    },
}
SPEC_DEFAULTS = {
    "http": "request",
    "tcp": "connect",
    "postgres": "ping",
    "mysql": "ping",
    "redis": "ping",
    "host": "disk",
    "logs": "errors",
    "tls": "expiry",
    "command": "run",
    "backup": "freshness",
    "heartbeat": "status",
    "group": "health",
}


def test_the_registry_has_exactly_the_spec_probes_and_metric_names() -> None:
    found = {
        (kind.name, probe.name): probe.metric_names()
        for kind in TARGET_KINDS.values()
        for probe in kind.probes
    }
    assert found == SPEC_METRICS | ADDED_METRICS
    assert {name: kind.default_probe for name, kind in TARGET_KINDS.items()} == SPEC_DEFAULTS


def test_probe_classes_declare_their_own_kind() -> None:
    for kind in TARGET_KINDS.values():
        for probe in kind.probes:
            assert probe.target_kind == kind.name, probe


def test_committed_probe_reference_is_current() -> None:
    committed = Path(__file__).parents[3] / "docs" / "probes.md"
    assert committed.read_text(encoding="utf-8") == render(), (
        "run `make docs` and commit docs/probes.md"
    )
