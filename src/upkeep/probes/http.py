"""HTTP(S) targets: one request, its status, timing, size and the certificate's expiry,
and numbers read from the answer (``probes.extract``: JSONPath and regex)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.core.results import MetricValue
from upkeep.io.http import HttpError
from upkeep.io.threads import run_blocking
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
)
from upkeep.probes.extract import Extracted, check_jsonpath, check_regex, extract

METRIC_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""A metric name an extraction declares: a name conditions can spell."""
MetricName = Annotated[str, Field(pattern=METRIC_NAME_PATTERN)]
"""A metric's name as conditions read it: a letter or ``_``, then letters, digits, ``_``."""


class HttpTarget(TargetBase):
    """An HTTP or HTTPS endpoint."""

    path_fields: ClassVar[tuple[str, ...]] = ("ca_file",)
    required_files: ClassVar[tuple[str, ...]] = ("ca_file",)

    kind: Literal["http"] = "http"
    url: Annotated[
        str,
        SecretMarker(part="password"),
        Field(
            pattern=r"^https?://", description="http:// or https:// URL; a password in it is secret"
        ),
    ]
    method: Literal["GET", "HEAD", "POST", "PUT", "OPTIONS"] = "GET"
    headers: Annotated[dict[str, str], SecretMarker()] = Field(
        default={}, description="request headers; values are secret (tokens)"
    )
    body: str | None = Field(default=None, description="request body")
    verify_tls: bool = Field(default=True, description="verify the certificate chain and host name")
    ca_file: str | None = Field(
        default=None,
        description="CA bundle to verify against (PEM); relative to the config file's directory",
    )
    follow_redirects: bool = True


class RequestParams(StrictModel):
    """Params of the request probe: numbers to read from the answer, as metrics."""

    extract_json: dict[MetricName, Annotated[str, AfterValidator(check_jsonpath)]] = Field(
        default={},
        description="metric name → JSONPath into a JSON body (filters work: "
        "`$.services[?(@.name=='api')].latency_ms`); it must find exactly one value, a "
        "number, true/false (1/0) or a text reading as a number",
    )
    extract_regex: dict[MetricName, Annotated[str, AfterValidator(check_regex)]] = Field(
        default={},
        description="metric name → regex with one capturing group around a number; the "
        "first match in the body (its first MiB) counts",
    )


class RequestProbe(Probe[HttpTarget, RequestParams]):
    """Send the target's request once and measure the answer."""

    target_kind: ClassVar[str] = "http"
    name: ClassVar[str] = "request"
    summary: ClassVar[str] = (
        "One request: status code, response time, body size, TLS expiry; and numbers read "
        "from the body by JSONPath (`extract_json`) or regex (`extract_regex`), each a "
        "metric of the name given. A value not found (no match, several JSONPath matches, "
        "not a number) is left out with the reason in the message, so a condition reading "
        "it is unknown."
    )
    Params: ClassVar[type[StrictModel]] = RequestParams
    params_metrics: ClassVar[str | None] = (
        "each name in `extract_json` and `extract_regex`: the number read from the body"
    )
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("status_code", "number", "HTTP status of the final response"),
        MetricSpec("response_time_ms", "number", "time from sending to the last body byte"),
        MetricSpec("body_bytes", "number", "size of the (decoded) response body"),
        MetricSpec("cert_days_left", "number", "days until the server certificate expires (https)"),
    )

    @classmethod
    def metrics_for(cls, params: StrictModel | None) -> tuple[MetricSpec, ...] | None:
        """Given a check's params, return the fixed metrics and one per extracted name;
        None when the params are wrong (the names they declare are not known)."""
        if not isinstance(params, RequestParams):
            return None
        extracted = (
            *(
                MetricSpec(name, "number", f"read from the JSON body at {path}")
                for name, path in params.extract_json.items()
            ),
            *(
                MetricSpec(name, "number", f"read from the body by /{pattern}/")
                for name, pattern in params.extract_regex.items()
            ),
        )
        return (*cls.metrics, *extracted)

    def validate(self, target: HttpTarget, params: RequestParams) -> list[str]:
        """Given params, return each extracted name that is taken twice or by a fixed metric."""
        del target
        problems = [
            f"extract_json and extract_regex both name {name!r}; a metric has one source"
            for name in sorted(set(params.extract_json) & set(params.extract_regex))
        ]
        fixed = self.metric_names()
        problems += [
            f"{name!r} is a metric the probe returns itself; give the extracted value another name"
            for name in sorted((set(params.extract_json) | set(params.extract_regex)) & fixed)
        ]
        return problems

    async def run(
        self, target: HttpTarget, params: RequestParams, context: ProbeContext
    ) -> ProbeOutcome:
        """Given an HTTP target, request it and read the metrics the params name from the
        body; raise TargetUnreachable if no answer came."""
        reads_body = bool(params.extract_json or params.extract_regex)
        try:
            response = await context.http.request(
                target.method,
                target.url,
                timeout_s=context.timeout_s,
                headers=target.headers or None,
                body=target.body,
                verify_tls=target.verify_tls,
                ca_file=target.ca_file,
                follow_redirects=target.follow_redirects,
                keep_body=reads_body,
            )
        except HttpError as error:
            raise TargetUnreachable(str(error)) from error
        metrics: dict[str, MetricValue] = {
            "status_code": response.status_code,
            "response_time_ms": round(response.elapsed_ms, 3),
            "body_bytes": response.body_bytes,
        }
        if response.peer_cert_not_after is not None:
            remaining = response.peer_cert_not_after - datetime.now(UTC)
            metrics["cert_days_left"] = round(remaining.total_seconds() / 86400, 2)
        message = f"HTTP {response.status_code}"
        if reads_body:
            # Parsing up to the seam's body cap, or a regex near its time limit, would hold
            # up every other check on the loop: it runs on a thread under the deadline.
            found = await _extract_in_thread(
                response.body, response.body_bytes, params, context.timeout_s
            )
            metrics.update(found.metrics)
            if found.problems:
                message += "; not read: " + "; ".join(found.problems)
        return ProbeOutcome(metrics, message=context.redactor.redact(message))


async def _extract_in_thread(
    body: bytes, body_bytes: int, params: RequestParams, timeout_s: float
) -> Extracted:
    """Given a body and params, return ``extract``'s findings, computed on a thread; raise
    TimeoutError (the check's deadline) if that takes longer than ``timeout_s``."""
    return await run_blocking(
        extract, body, body_bytes, params.extract_json, params.extract_regex, timeout_s=timeout_s
    )
