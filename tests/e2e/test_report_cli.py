"""``upkeep report`` as a user runs it, over a seeded store: every format, the figures
document against ``upkeep stats --json`` for the same period, secrets masked, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Upkeep
from tests.support.history import PERIOD_END, PERIOD_START, SECRET, SeededHistory, seed_history

SPAN = ("--since", PERIOD_START.isoformat(), "--until", PERIOD_END.isoformat())


@pytest.fixture
def history(tmp_path: Path) -> SeededHistory:
    return seed_history(tmp_path)


def test_report_figures_equal_upkeep_stats(upkeep: Upkeep, history: SeededHistory) -> None:
    reported = upkeep("report", "weekly", *SPAN, "--json", env=history.env)
    assert reported.returncode == 0, reported.stderr
    document = json.loads(reported.stdout)
    stats = upkeep("stats", *SPAN, "--json", env=history.env)
    assert stats.returncode == 0, stats.stderr
    expected = json.loads(stats.stdout)
    assert expected["since"] == document["period"]["start"]
    assert expected["until"] == document["period"]["end"]
    overview = document["sections"]["overview"]
    assert overview["stats"] == {"checks": expected["checks"], "targets": expected["targets"]}
    # The incidents section's totals are the per-check figures summed.
    incidents = document["sections"]["incidents"]
    assert incidents["response_met"] == sum(c["response_met"] for c in expected["checks"])
    assert incidents["acked"] == sum(c["acked"] for c in expected["checks"])
    listed = json.loads(
        upkeep("incidents", "--since", PERIOD_START.isoformat(), "--json", env=history.env).stdout
    )
    assert sorted(i["id"] for i in incidents["incidents"]) == sorted(i["id"] for i in listed)
    assert SECRET not in reported.stdout


@pytest.mark.parametrize("output_format", ["html", "md", "pdf"])
def test_every_format_to_a_file_and_stdout(
    upkeep: Upkeep, history: SeededHistory, tmp_path: Path, output_format: str
) -> None:
    target = tmp_path / "out" / f"weekly.{output_format}"
    target.parent.mkdir()
    written = upkeep(
        "report", "weekly", *SPAN, "--format", output_format, "--out", str(target), env=history.env
    )
    assert written.returncode == 0, written.stderr
    content = target.read_bytes()
    assert SECRET.encode() not in content
    if output_format == "pdf":
        assert content.startswith(b"%PDF-")
    elif output_format == "html":
        assert b"<svg" in content and b"upkeep weekly report, 2026-11-23 to 2026-11-29" in content
    else:
        assert content.startswith(b"# upkeep weekly report")
    if output_format != "pdf":
        printed = upkeep("report", "weekly", *SPAN, "--format", output_format, env=history.env)
        assert printed.returncode == 0 and printed.stdout.encode() == content


def test_default_period_is_the_last_complete_one(upkeep: Upkeep, history: SeededHistory) -> None:
    document = json.loads(upkeep("report", "daily", "--json", env=history.env).stdout)
    start, end = document["period"]["start"], document["period"]["end"]
    assert start.endswith("T00:00:00+00:00") and end.endswith("T00:00:00+00:00")
    assert document["previous"]["end"] == start


def test_bad_input_is_refused(upkeep: Upkeep, history: SeededHistory, tmp_path: Path) -> None:
    assert upkeep("report", "yearly", env=history.env).returncode == 2
    assert upkeep("report", "weekly", "--format", "docx", env=history.env).returncode == 2
    assert upkeep("report", "weekly", "--since", "soon", env=history.env).returncode == 2
    until_only = upkeep("report", "weekly", "--until", "now", env=history.env)
    assert until_only.returncode == 2 and "--until needs --since" in until_only.stderr
    backwards = upkeep(
        "report", "weekly", "--since", "1d", "--until", "2020-01-01", env=history.env
    )
    assert backwards.returncode == 2
    nowhere = upkeep(
        "report", "weekly", *SPAN, "--out", str(tmp_path / "missing" / "r.html"), env=history.env
    )
    assert nowhere.returncode == 1 and "cannot write" in nowhere.stderr


def test_a_runbook_sends_the_weekly_report_to_a_file(
    upkeep: Upkeep, history: SeededHistory, tmp_path: Path
) -> None:
    text = history.config.read_text().replace(
        "runbooks:\n",
        "runbooks:\n"
        "  weekly-report:\n"
        '    schedule: "0 10 * * 1"\n'
        "    steps:\n"
        "      - name: send\n"
        "        task: report.send\n"
        "        with: {kind: weekly, format: html, file: sent/weekly.html}\n",
    )
    history.config.write_text(text)
    (tmp_path / "sent").mkdir()
    planned = upkeep("run", "weekly-report", "--dry-run", env=history.env)
    assert planned.returncode == 0, planned.stderr
    assert "would write the upkeep weekly report" in planned.stdout
    assert not (tmp_path / "sent" / "weekly.html").exists()
    ran = upkeep("run", "weekly-report", "--yes", env=history.env)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "sent" / "weekly.html").read_bytes().startswith(b"<!DOCTYPE html>")
