"""Config of the PostgreSQL vacuum and transaction health probes: their params and metrics
are checked when the file loads, errors at their keys."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.probes.postgres_health import TransactionsProbe

HEADER = """\
targets:
  db: {kind: postgres, dsn: "postgresql://app@127.0.0.1/app"}
checks:
"""


def _write(tmp_path: Path, checks: str) -> Path:
    path = tmp_path / "upkeep.yaml"
    path.write_text(HEADER + checks, encoding="utf-8")
    return path


def test_health_checks_load_with_params_and_conditions(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
  db-sessions:
    target: db
    probe: transactions
    params: {idle_over: 10m, blocked_over: 30s}
    warn: idle_in_transaction > 0 or blocked > 0
    crit: idle_in_transaction_longest_s > 3600
  db-wraparound:
    target: db
    probe: wraparound
    warn: xid_freeze_percent > 80 or mxid_freeze_percent > 80
    crit: xid_wraparound_percent > 50
  db-sequences: {target: db, probe: sequences, params: {over_percent: 90}, warn: near_exhaustion > 0}
  db-slots: {target: db, probe: replication_slots, warn: inactive_retained_wal_bytes > 1073741824}
  db-vacuum: {target: db, probe: vacuum, warn: tables_needing_analyze > 0 or vacuum_threshold_ratio_max > 2}
""",
    )

    checks = load_config(path, environ={}).config.checks

    sessions = TransactionsProbe.Params.model_validate(checks["db-sessions"].params)
    assert sessions.model_dump() == {
        "idle_over": timedelta(minutes=10),
        "blocked_over": timedelta(seconds=30),
    }
    assert sorted(checks) == [
        "db-sequences",
        "db-sessions",
        "db-slots",
        "db-vacuum",
        "db-wraparound",
    ]


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            "  s: {target: db, probe: sequences, params: {over_percent: 150}}\n",
            "checks.s.params.over_percent",
        ),
        (
            "  t: {target: db, probe: transactions, params: {idle_over: soon}}\n",
            "checks.t.params.idle_over",
        ),
        (
            "  w: {target: db, probe: wraparound, warn: xid_percent > 50}\n",
            "checks.w.warn: unknown metric 'xid_percent' for probe postgres.wraparound",
        ),
    ],
)
def test_bad_health_params_are_errors_at_their_keys(
    tmp_path: Path, check: str, expected: str
) -> None:
    path = _write(tmp_path, check)

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})

    issues = [str(issue) for issue in caught.value.issues]
    assert any(expected in issue and f"{path}:4:" in issue for issue in issues), issues
