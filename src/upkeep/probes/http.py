"""HTTP(S) targets: one request, its status, timing, size and the certificate's expiry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.io.http import HttpError
from upkeep.probes.base import (
    MetricSpec,
    Probe,
    ProbeContext,
    ProbeOutcome,
    TargetBase,
    TargetUnreachable,
)


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


class RequestProbe(Probe[HttpTarget, StrictModel]):
    """Send the target's request once and measure the answer."""

    target_kind: ClassVar[str] = "http"
    name: ClassVar[str] = "request"
    summary: ClassVar[str] = "One request: status code, response time, body size, TLS expiry."
    metrics: ClassVar[tuple[MetricSpec, ...]] = (
        MetricSpec("status_code", "number", "HTTP status of the final response"),
        MetricSpec("response_time_ms", "number", "time from sending to the last body byte"),
        MetricSpec("body_bytes", "number", "size of the (decoded) response body"),
        MetricSpec("cert_days_left", "number", "days until the server certificate expires (https)"),
    )

    async def run(
        self, target: HttpTarget, params: StrictModel, context: ProbeContext
    ) -> ProbeOutcome:
        """Given an HTTP target, request it; raise TargetUnreachable if no answer came."""
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
            )
        except HttpError as error:
            raise TargetUnreachable(str(error)) from error
        metrics: dict[str, float | int | bool | str] = {
            "status_code": response.status_code,
            "response_time_ms": round(response.elapsed_ms, 3),
            "body_bytes": response.body_bytes,
        }
        if response.peer_cert_not_after is not None:
            remaining = response.peer_cert_not_after - datetime.now(UTC)
            metrics["cert_days_left"] = round(remaining.total_seconds() / 86400, 2)
        return ProbeOutcome(metrics, message=f"HTTP {response.status_code}")
