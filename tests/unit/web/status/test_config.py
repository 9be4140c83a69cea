"""The ``status_page:`` section: its defaults, and every component naming no check."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.config.errors import ConfigError
from upkeep.web.status.figures import component_members

CHECKS = """\
timezone: Europe/Berlin
targets:
  box: {kind: http, url: "http://127.0.0.1:9/", labels: {team: web}}
checks:
  web-home: {target: box, labels: {tier: front}}
  web-api: {target: box}
  old: {target: box, enabled: false, labels: {tier: front}}
"""


def test_defaults(tmp_path: Path) -> None:
    page = load_text(tmp_path, CHECKS).config.status_page
    assert page.enabled is False and page.history_days == 90
    assert page.unknown_policy == "excluded" and page.publish_incidents is True
    assert page.timezone is None and page.base_url is None and page.components == []


def test_components_select_by_name_pattern_and_labels(tmp_path: Path) -> None:
    text = (
        CHECKS
        + """\
status_page:
  components:
    - {name: named, checks: [old]}
    - {name: pattern, checks: ["web-*"]}
    - {name: labelled, labels: {tier: front}}
    - {name: target-label, labels: {team: web}, checks: [web-home]}
"""
    )
    members = component_members(load_text(tmp_path, text))
    assert members == {
        "named": ["old"],  # named exactly: taken even while disabled
        "pattern": ["web-api", "web-home"],  # a pattern takes enabled checks only
        "labelled": ["web-home"],
        "target-label": ["web-api", "web-home"],
    }


def test_unknown_checks_are_errors_with_their_place(tmp_path: Path) -> None:
    text = (
        CHECKS
        + """\
status_page:
  enabled: true
  unknown_policy: sometimes
  history_days: 0
  base_url: "ftp://status.example.com"
  components:
    - name: site
      checks: [web-home, nope, "db-*", "o*"]
    - {name: api, labels: {tier: back}}
    - {name: empty}
    - {name: site, checks: [web-api]}
    - {name: "bad name", checks: [web-api]}
"""
    )
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text)
    found = {
        (issue.line, ".".join(map(str, issue.path))): issue.message for issue in caught.value.issues
    }
    messages = "\n".join(f"{line} {path}: {message}" for (line, path), message in found.items())
    assert "no check named 'nope'" in found[(15, "status_page.components.0.checks.1")], messages
    assert (
        "the pattern 'db-*' matches no enabled check"
        in found[(15, "status_page.components.0.checks.2")]
    )
    # 'o*' matches only a disabled check.
    assert "'o*' matches no enabled check" in found[(15, "status_page.components.0.checks.3")]
    assert (
        "no enabled check carries all of tier=back"
        in found[(16, "status_page.components.1.labels")]
    )
    assert "needs checks" in found[(17, "status_page.components.2")]
    assert "another component is named 'site'" in found[(18, "status_page.components.3.name")]
    assert any(path.startswith("status_page.components.4") for _, path in found), messages
    for key in ("unknown_policy", "history_days", "base_url"):
        assert (key, True) in {(path.rsplit(".", 1)[-1], True) for _, path in found}, messages
    assert all(issue.file.endswith("upkeep.yaml") for issue in caught.value.issues)
