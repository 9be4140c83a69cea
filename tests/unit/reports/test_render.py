"""Reports rendered from a seeded history: HTML (self-contained, SVG charts, escaped),
Markdown, PDF; the section registry (a section with nothing to show is left out, a new
one is added without touching the others); secrets masked everywhere."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support.history import PERIOD_END, PERIOD_START, SECRET, seed_history
from upkeep.alerting.stats import period_stats
from upkeep.config.loader import LoadedConfig, load_config
from upkeep.reports.model import (
    Chart,
    Report,
    ReportContext,
    SectionData,
    SectionKind,
    Table,
    targets_by_severity,
)
from upkeep.reports.render import (
    collect_report,
    markdown_text,
    render,
    render_html,
    render_markdown,
)
from upkeep.reports.sections import SECTIONS
from upkeep.store.store import Store

NOW = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[LoadedConfig, Store]]:
    history = seed_history(tmp_path)
    loaded = load_config(history.config, environ=history.env)
    store = loaded.config.store.open(loaded.base_dir)
    try:
        yield loaded, store
    finally:
        store.close()


def _report(seeded: tuple[LoadedConfig, Store], sections: object = None) -> Report:
    loaded, store = seeded
    return collect_report(
        store,
        loaded,
        "weekly",
        NOW,
        since=PERIOD_START,
        until=PERIOD_END,
        sections=sections,  # type: ignore[arg-type]
    )


def test_every_section_of_the_seeded_history_is_shown(
    seeded: tuple[LoadedConfig, Store],
) -> None:
    report = _report(seeded)
    assert [section.kind.name for section in report.sections] == [
        "overview",
        "incidents",
        "checks",
        "runbooks",
        "backups",
        "logs",
        "certificates",
    ]
    sections = report.figures()["sections"]
    assert sections["incidents"]["fired"] == 2
    assert sections["incidents"]["response_met"] == 1
    assert sections["incidents"]["response_missed"] == 1
    # Repair time runs from opening (the failure), as upkeep stats counts it.
    assert sections["incidents"]["mttr_s"] == (60 * 60 + 90 * 60) / 2
    assert sections["runbooks"]["runbooks"][0]["approved"] == 1
    (drill,) = sections["backups"]["drills"]
    assert drill["rto_met"] is False and drill["rpo_met"] is True
    (logs,) = sections["logs"]["targets"]
    # 120 lines in the period (the late one is not), every 12th a 503.
    assert logs["requests"] == 120 and logs["server_errors"] == 10
    assert sections["certificates"]["expiring"] == 1
    slowest = sections["checks"]["slowest"]
    assert slowest[0]["check"] == "web" and slowest[0]["p95_trend_percent"] == 100.0


def test_figures_are_the_stats_figures(seeded: tuple[LoadedConfig, Store]) -> None:
    loaded, store = seeded
    overview = _report(seeded).figures()["sections"]["overview"]
    expected = period_stats(
        store.engine, PERIOD_START, PERIOD_END, None, targets_by_severity(loaded)
    )
    assert overview["stats"]["checks"] == [f.to_json() for f in expected if f.scope == "check"]
    assert overview["stats"]["targets"] == [f.to_json() for f in expected if f.scope == "target"]
    groups = {group["name"]: group for group in overview["groups"]}
    # One check per label value: the group's figures are its check's.
    by_check = {f.name: f for f in expected if f.scope == "check"}
    assert groups["env=prod"]["uptime_percent"] == by_check["web"].uptime_percent
    assert groups["env=prod"]["target_percent"] == 99.9
    assert groups["env=staging"]["target_percent"] == 99.5


def test_html_is_self_contained_escaped_and_has_svg_charts(
    seeded: tuple[LoadedConfig, Store],
) -> None:
    html = render_html(_report(seeded))
    assert html.startswith("<!DOCTYPE html>")
    assert html.count("<svg") >= 2
    for external in ("<script", "<link", 'src="http', "url(http"):
        assert external not in html
    for name in ("overview", "incidents", "checks", "runbooks", "backups", "logs"):
        assert f'<section id="{name}">' in html
    # A run's message is text: its markup is shown, not obeyed; its secret is masked.
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold" not in html
    assert SECRET not in html and "hooks.example/***" in html


def test_markdown_has_tables_and_no_raw_markup(seeded: tuple[LoadedConfig, Store]) -> None:
    text = render_markdown(_report(seeded))
    assert text.startswith("# upkeep weekly report, 2026-11-23 to 2026-11-29\n")
    assert "| group | uptime | target |" in text
    assert "| env=prod | 99.404% | 99.9% | MISSED |" in text
    assert "&lt;b&gt;bold" in text and SECRET not in text
    assert "_Chart: Uptime per group (in the HTML and PDF reports)_" in text
    assert markdown_text("a|b*c_[x](y)<i>\n") == "a\\|b\\*c\\_\\[x\\](y)&lt;i&gt; "


def test_pdf_has_pages(seeded: tuple[LoadedConfig, Store]) -> None:
    from weasyprint import HTML

    report = _report(seeded)
    pdf = render(report, "pdf")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert SECRET.encode() not in pdf
    assert len(HTML(string=render_html(report)).render().pages) >= 2


def test_a_section_with_nothing_to_show_is_left_out(seeded: tuple[LoadedConfig, Store]) -> None:
    silent = SectionKind("silent", "Silent", lambda context: None)
    report = _report(seeded, [SECTIONS[0], silent])
    assert [section.kind.name for section in report.sections] == ["overview"]
    assert "silent" not in report.figures()["sections"]
    assert 'id="silent"' not in render_html(report)
    assert "Silent" not in render_markdown(report)


def test_config_without_logs_or_backups_leaves_those_sections_out(tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text("targets:\n  box: {kind: host}\n")
    loaded = load_config(tmp_path / "upkeep.yaml", environ={})
    store = loaded.config.store.open(loaded.base_dir)
    try:
        report = collect_report(store, loaded, "daily", NOW)
    finally:
        store.close()
    assert [section.kind.name for section in report.sections] == ["overview", "incidents"]
    assert "no checks with results in this period" in render_html(report)


def _forecast(context: ReportContext) -> SectionData:
    return SectionData(
        headline=[("disk full in", "12 days")],
        tables=[Table("Forecast", (("what", "left"), ("when", "right")), [("disk", "12 days")])],
        charts=[Chart("trend", "<svg id='forecast-chart'></svg>")],
        notes=[f"leaked {SECRET}"],
        figures={"disk_days_left": 12, "note": f"token {SECRET}", "period": context.kind},
    )


def test_a_new_section_is_registered_without_touching_the_others(
    seeded: tuple[LoadedConfig, Store],
) -> None:
    forecast = SectionKind("forecast", "Forecast", _forecast)
    plain = _report(seeded).figures()["sections"]
    extended = _report(seeded, (*SECTIONS, forecast))
    figures = extended.figures()["sections"]
    assert {name: value for name, value in figures.items() if name != "forecast"} == plain
    assert figures["forecast"] == {"disk_days_left": 12, "note": "token ***", "period": "weekly"}
    html = render_html(extended)
    assert '<section id="forecast">' in html and "forecast-chart" in html
    assert "| disk | 12 days |" in render_markdown(extended)
    # Whatever a section says passes the redactor: notes, figures, cells.
    assert SECRET not in html and "leaked ***" in html
    assert SECRET not in render_markdown(extended)


def test_section_names_are_unique() -> None:
    names = [section.name for section in SECTIONS]
    assert len(names) == len(set(names))
