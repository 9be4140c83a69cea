"""report.send over a seeded history: to a file (atomically), to an e-mail channel on a
real SMTP server (aiosmtpd on loopback: HTML body, PDF attached), to a webhook receiver
on loopback; its dry run; and what it says when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.integration.tasks.conftest import no_checks
from tests.support.history import SECRET, seed_history
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from upkeep.config.loader import LoadedConfig, load_config
from upkeep.io.http import HttpClient
from upkeep.reports.service import ReportService
from upkeep.store.store import Store
from upkeep.tasks.base import TaskContext, TaskFailed
from upkeep.tasks.reports.send import ReportSend, ReportSendParams


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def seeded(tmp_path: Path, smtp: SmtpReceiver) -> Iterator[tuple[LoadedConfig, Store]]:
    history = seed_history(tmp_path)
    text = history.config.read_text().replace(
        'ops: "json://127.0.0.1:9/${REPORT_SECRET}"', f'ops: "{smtp.url()}"'
    )
    history.config.write_text(text)
    loaded = load_config(history.config, environ=history.env)
    store = loaded.config.store.open(loaded.base_dir)
    try:
        yield loaded, store
    finally:
        store.close()


def _context(
    loaded: LoadedConfig, store: Store, http: HttpClient, *, maker: bool = True
) -> TaskContext:
    return TaskContext(
        timeout=timedelta(seconds=60),
        http=http,
        redactor=loaded.redactor,
        run_check=no_checks,
        config_path=loaded.path,
        reports=ReportService(loaded, store) if maker else None,
    )


def _params(**values: object) -> ReportSendParams:
    return ReportSendParams.model_validate(values)


async def test_to_a_file_atomically(
    seeded: tuple[LoadedConfig, Store], http_client: HttpClient
) -> None:
    loaded, store = seeded
    context = _context(loaded, store, http_client)
    params = _params(kind="weekly", format="md", file="reports/weekly.md")
    (loaded.base_dir / "reports").mkdir()
    plan = await ReportSend().plan(None, params, context)
    assert plan.predictable and "weekly.md" in plan.summary() + plan.changes[0].subject
    assert not (loaded.base_dir / "reports" / "weekly.md").exists()
    outcome = await ReportSend().run(None, params, context)
    written = (loaded.base_dir / "reports" / "weekly.md").read_bytes()
    assert written.startswith(b"# upkeep weekly report")
    assert outcome.figures["bytes"] == len(written)
    assert [entry.name for entry in (loaded.base_dir / "reports").iterdir()] == ["weekly.md"]
    missing = _params(kind="weekly", file="nowhere/weekly.html")
    with pytest.raises(TaskFailed, match="cannot write"):
        await ReportSend().run(None, missing, context)


async def test_to_an_email_channel_as_html_with_the_pdf_attached(
    seeded: tuple[LoadedConfig, Store], http_client: HttpClient, smtp: SmtpReceiver
) -> None:
    loaded, store = seeded
    context = _context(loaded, store, http_client)
    params = _params(kind="weekly", format="pdf", channel="ops")
    plan = await ReportSend().plan(None, params, context)
    assert not plan.predictable and "channel ops" in plan.summary()
    assert smtp.messages == []
    outcome = await ReportSend().run(None, params, context)
    assert "channel ops" in outcome.message
    (message,) = smtp.messages
    assert isinstance(message, EmailMessage)
    assert str(message["Subject"]).startswith("upkeep weekly report, ")
    html = message.get_body(preferencelist=("html",))
    assert html is not None
    body = str(html.get_content())
    assert "<svg" in body and '<section id="overview">' in body
    (attachment,) = message.iter_attachments()
    assert str(attachment.get_filename()).endswith(".pdf")
    payload = attachment.get_payload(decode=True)
    assert isinstance(payload, bytes) and payload.startswith(b"%PDF-")
    assert SECRET not in body


async def test_to_a_webhook(seeded: tuple[LoadedConfig, Store], http_client: HttpClient) -> None:
    loaded, store = seeded
    context = _context(loaded, store, http_client)
    with WebhookReceiver() as receiver:
        url = f"http://127.0.0.1:{receiver.port}/reports"
        params = _params(kind="daily", format="html", webhook=url, headers={"X-Token": SECRET})
        await ReportSend().run(None, params, context)
        (delivery,) = receiver.deliveries
    assert delivery.method == "POST" and delivery.path == "/reports"
    assert delivery.headers["content-type"] == "text/html; charset=utf-8"
    assert delivery.headers["x-token"] == SECRET
    assert delivery.body.startswith(b"<!DOCTYPE html>")
    with WebhookReceiver(status=500) as failing:
        params = _params(kind="daily", webhook=f"http://127.0.0.1:{failing.port}/r")
        with pytest.raises(TaskFailed, match="answered HTTP 500"):
            await ReportSend().run(None, params, context)


async def test_without_a_maker_or_a_channel_it_says_why(
    seeded: tuple[LoadedConfig, Store], http_client: HttpClient
) -> None:
    loaded, store = seeded
    bare = _context(loaded, store, http_client, maker=False)
    with pytest.raises(TaskFailed, match="no report maker"):
        await ReportSend().plan(None, _params(kind="weekly", file="x.html"), bare)
    context = _context(loaded, store, http_client)
    with pytest.raises(TaskFailed, match="no channel named 'nope'"):
        await ReportSend().run(None, _params(kind="weekly", channel="nope"), context)


def test_exactly_one_destination() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of channel, file, webhook"):
        _params(kind="weekly")
    with pytest.raises(ValidationError, match="exactly one of channel, file, webhook"):
        _params(kind="weekly", file="a.html", channel="ops")
    assert ReportSend().validate(None, _params(kind="weekly", file="a", headers={"a": "b"})) == [
        "headers are sent only with webhook"
    ]
