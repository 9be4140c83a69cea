"""report.send: make a report and deliver it to a channel, a file or a webhook.

The report itself comes from ``TaskContext.reports`` (``tasks.base.ReportMaker``): reports
sit above tasks in the layering (they read the whole config and the store's history), so
the daemon and ``upkeep run`` hand a maker down when they build the runbook executor.

* ``channel``: a channel of ``channels:``, through the notify layer (Apprise). The body is
  the report's HTML (an e-mail's HTML part; Apprise converts it for services that take
  text); a Markdown or PDF report is attached too where the service takes attachments.
* ``file``: written atomically (``upkeep.io.safefs``: a temporary file in the same
  directory, fsynced, renamed over the name; a link there is replaced, never followed).
* ``webhook``: one HTTP POST of the report's bytes through the HTTP seam, with its media
  type; any 2xx answer is success.

The dry run renders nothing and sends nothing: it names the period and the destination.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidatorFunctionWrapHandler, model_validator

from upkeep.core.models import Reference, StrictModel, exactly_one_of, validate_with_key_rule
from upkeep.core.redaction import SecretMarker
from upkeep.core.text import format_bytes
from upkeep.io.http import HttpError
from upkeep.tasks.base import (
    Change,
    RenderedReport,
    ReportMaker,
    Task,
    TaskContext,
    TaskFailed,
    TaskOutcome,
    TaskPlan,
)
from upkeep.tasks.http.request import display_url

DESTINATIONS = ("channel", "file", "webhook")
_ONE_DESTINATION = exactly_one_of(
    DESTINATIONS, "report.send needs exactly one of channel, file, webhook"
)


class ReportSendParams(StrictModel):
    """Params of ``report.send``: which report, in which format, and where it goes."""

    kind: Literal["daily", "weekly", "monthly", "quarterly"] = Field(
        description="the last complete day, ISO week, month or quarter (config's timezone)"
    )
    output_format: Literal["html", "md", "pdf"] = Field(
        default="html",
        alias="format",
        description="html, md or pdf; a channel always gets the HTML as the message body, "
        "with an md or pdf report attached",
    )
    channel: Annotated[str, Reference(("channels",), "channel")] | None = Field(
        default=None, description="a channel of `channels:` to send it to (e-mail: HTML body)"
    )
    file: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description="a file to write it to, atomically (relative: to the config's directory)",
    )
    webhook: Annotated[str, SecretMarker(part="password"), Field(pattern=r"^https?://")] | None = (
        Field(default=None, description="an http(s) URL to POST it to; a password in it is secret")
    )
    headers: Annotated[dict[str, str], SecretMarker()] = Field(
        default={}, description="headers of the webhook POST; values are secret"
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_destination(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return validate_with_key_rule(cls, data, handler, _ONE_DESTINATION)


def _maker(context: TaskContext) -> ReportMaker:
    if context.reports is None:
        raise TaskFailed("report.send cannot make reports here: no report maker was provided")
    return context.reports


def _file_path(params: ReportSendParams, context: TaskContext) -> Path:
    path = Path(params.file or "")
    if not path.is_absolute() and context.config_path is not None:
        path = context.config_path.parent.absolute() / path
    return path


class ReportSend(Task[None, ReportSendParams]):
    """Make a report and send it to a channel, write it to a file or POST it to a URL."""

    name: ClassVar[str] = "report.send"
    summary: ClassVar[str] = "Make a daily/weekly/monthly/quarterly report; send, write or POST it."
    Params: ClassVar[type[StrictModel]] = ReportSendParams

    def validate(self, target: None, params: ReportSendParams) -> list[str]:
        """Given the params, return problems: headers without a webhook to send them."""
        del target
        if params.headers and params.webhook is None:
            return ["headers are sent only with webhook"]
        return []

    def _destination(self, params: ReportSendParams, context: TaskContext) -> str:
        if params.channel is not None:
            return f"channel {params.channel}"
        if params.file is not None:
            return f"file {_file_path(params, context)}"
        return f"POST {context.redactor.redact(display_url(params.webhook or ''))}"

    async def plan(self, target: None, params: ReportSendParams, context: TaskContext) -> TaskPlan:
        """Given the params, return what would be sent where; render and send nothing."""
        maker = _maker(context)
        period = maker.period_text(params.kind, datetime.now(UTC))
        destination = self._destination(params, context)
        what = f"{period} ({params.output_format})"
        if params.file is not None:
            return TaskPlan(
                changes=[Change("write", str(_file_path(params, context)), what)],
                note=f"would write the {what} to {destination}",
            )
        return TaskPlan(
            changes=[Change("send", destination, what)],
            predictable=False,
            note=f"would send the {what} to {destination}; what the receiver does with it "
            "cannot be known in advance",
        )

    async def run(
        self, target: None, params: ReportSendParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the params, make the report and deliver it; return figures ``bytes``.

        Raise TaskFailed if no report maker was provided, the channel is unknown or does
        not take the message, the file cannot be written, or the webhook does not answer
        2xx within the step's timeout.
        """
        from upkeep.io.threads import run_blocking

        maker = _maker(context)
        report = await run_blocking(
            maker.render,
            params.kind,
            params.output_format,
            datetime.now(UTC),
            timeout_s=context.timeout_s,
        )
        destination = self._destination(params, context)
        if params.channel is not None:
            await self._send_to_channel(maker, params.channel, report, context)
        elif params.file is not None:
            await run_blocking(
                _write_file,
                _file_path(params, context),
                report.content,
                timeout_s=context.timeout_s,
            )
        else:
            await self._post(params, report, context, destination)
        return TaskOutcome(
            changes=[Change("send", destination, report.title)],
            message=f"{report.title} ({format_bytes(len(report.content))}) to {destination}",
            figures={"bytes": len(report.content)},
        )

    async def _send_to_channel(
        self, maker: ReportMaker, channel: str, report: RenderedReport, context: TaskContext
    ) -> None:
        from upkeep.io.threads import run_blocking
        from upkeep.notify.channels import send

        url = maker.channel_url(channel)
        if url is None:
            raise TaskFailed(f"no channel named {channel!r}")
        key = f"report:{report.filename}:{channel}"
        with tempfile.TemporaryDirectory(prefix="upkeep-report-") as scratch:
            attachments: list[Path] = []
            if not report.media_type.startswith("text/html"):
                attached = Path(scratch) / report.filename
                attached.write_bytes(report.content)
                attachments.append(attached)
            result = await run_blocking(
                lambda: send(
                    url,
                    report.title,
                    report.html,
                    "info",
                    key,
                    timeout_s=context.timeout_s,
                    redactor=context.redactor,
                    body_format="html",
                    attachments=attachments,
                ),
                timeout_s=context.timeout_s,
            )
        if not result.ok:
            raise TaskFailed(f"channel {channel} did not take the report: {result.error}")

    async def _post(
        self,
        params: ReportSendParams,
        report: RenderedReport,
        context: TaskContext,
        destination: str,
    ) -> None:
        url = params.webhook or ""
        context.redactor.add_url(url)
        context.redactor.extend(params.headers.values())
        headers = {
            "Content-Type": report.media_type,
            "Content-Disposition": f'attachment; filename="{report.filename}"',
            **params.headers,
        }
        try:
            response = await context.http.request(
                "POST",
                url,
                timeout_s=context.timeout_s,
                headers=headers,
                body=report.content,
                follow_redirects=False,
            )
        except HttpError as error:
            raise TaskFailed(context.redactor.redact(f"{destination}: {error}")) from error
        if not 200 <= response.status_code < 300:
            raise TaskFailed(f"{destination} answered HTTP {response.status_code}")


def _write_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` atomically through safefs; raise TaskFailed if the
    directory is missing or the file cannot be written."""
    from upkeep.io.safefs import Directory

    try:
        with Directory.open(path.parent) as directory:
            directory.write_atomic(path.name, content, mode=0o640)
    except OSError as error:
        raise TaskFailed(f"cannot write {path}: {error.strerror or error}") from error
