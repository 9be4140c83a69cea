"""Loading http checks that read metrics from the answer: names become metrics conditions
may read; bad expressions and unknown names are errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config

HEAD = """targets:
  status: {kind: http, url: 'http://127.0.0.1:9/status', method: POST, body: '{}'}
checks:
  status:
    target: status
"""


def errors_of(tmp_path: Path, checks_body: str) -> list[str]:
    path = tmp_path / "upkeep.yaml"
    path.write_text(HEAD + checks_body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [str(issue) for issue in caught.value.issues]


def test_extracted_names_are_metrics_conditions_read(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(
        HEAD
        + """    params:
      extract_json:
        health: $.overall_health_percent
        api_latency_ms: "$.services[?(@.name=='api')].latency_ms"
      extract_regex:
        orders_per_minute: 'orders_per_minute (\\d+(?:\\.\\d+)?)'
    warn: health < 95 or api_latency_ms > 1.5s
    crit: health < 90 or orders_per_minute < 1
""",
        encoding="utf-8",
    )
    loaded = load_config(path, environ={})
    check = loaded.checks["status"]
    assert check.warn is not None and check.crit is not None
    declared = {spec.name: spec for spec in check.probe.metrics_for(check.params) or ()}
    assert declared["api_latency_ms"].unit == "ms"
    assert {"health", "orders_per_minute", "status_code"} <= set(declared)


def test_unknown_names_are_refused_with_the_extracted_ones_listed(tmp_path: Path) -> None:
    (line,) = errors_of(
        tmp_path,
        """    params:
      extract_json: {health: $.overall_health_percent}
    crit: helth < 90
""",
    )
    assert "upkeep.yaml:8:" in line
    assert "checks.status.crit: unknown metric 'helth' for probe http.request" in line
    assert line.endswith(
        "it returns: status_code, response_time_ms, body_bytes, cert_days_left, health"
    )


def test_bad_expressions_name_their_key(tmp_path: Path) -> None:
    lines = errors_of(
        tmp_path,
        """    params:
      extract_json:
        health: "$.services[?(@.name=='api'"
      extract_regex:
        orders: 'orders \\d+'
        broken: 'orders (\\d+'
    crit: health < 90 or orders < 1 or broken < 1
""",
    )
    assert len(lines) == 3, lines
    assert "upkeep.yaml:8" in lines[0]
    assert "checks.status.params.extract_json.health" in lines[0]
    assert "not a valid JSONPath" in lines[0]
    assert "checks.status.params.extract_regex.orders" in lines[1]
    assert "has 0 capturing groups; it needs exactly one" in lines[1]
    assert "checks.status.params.extract_regex.broken" in lines[2]
    assert "not a valid regex" in lines[2]


def test_names_must_be_metric_names_and_not_taken(tmp_path: Path) -> None:
    lines = errors_of(
        tmp_path,
        """    params:
      extract_json: {status_code: $.code, 'two words': $.x}
""",
    )
    text = "\n".join(lines)
    assert "checks.status.params.extract_json.two words: expected a metric name of" in text
    assert "'status_code' is a metric the probe returns itself" in text
    (line,) = errors_of(
        tmp_path,
        """    params:
      extract_json: {dup: $.a}
      extract_regex: {dup: 'dup (\\d+)'}
""",
    )
    assert "checks.status.params: extract_json and extract_regex both name 'dup'" in line


def test_the_metric_and_unit_name_patterns_are_said_in_words(tmp_path: Path) -> None:
    from upkeep.config.loader import PATTERN_WORDS
    from upkeep.probes.http import METRIC_NAME_PATTERN
    from upkeep.probes.systemd import UNIT_PATTERN

    # The loader words the probes' patterns by their text: they must stay the same.
    assert {METRIC_NAME_PATTERN, UNIT_PATTERN} <= PATTERN_WORDS.keys()
    path = tmp_path / "upkeep.yaml"
    path.write_text(
        """targets:
  box: {kind: host}
checks:
  unit: {target: box, probe: systemd, params: {unit: ../etc/passwd}}
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    (line,) = [str(issue) for issue in caught.value.issues]
    assert "checks.unit.params.unit: expected a systemd unit name of letters" in line
