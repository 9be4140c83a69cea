"""http.request: send one request (warm a cache, trigger a hook) and assert its answer.

The request goes through the HTTP seam with the step's timeout. An http target, when the
step names one, supplies the URL, method, headers, body and TLS settings; the step's own
params override them one by one (headers merge, the step's winning by name).

GET, HEAD and OPTIONS are safe methods: the dry run says what would be sent and claims no
change on our side (a server may still do work, such as filling a cache, which is the
point of warming it). Any other method may change state on the server, so its dry run is
marked unpredictable rather than pretending nothing would happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BeforeValidator, Field

from upkeep.core.models import StrictModel
from upkeep.core.redaction import MASK, SecretMarker
from upkeep.io.http import HttpError
from upkeep.probes.http import HttpTarget
from upkeep.tasks.base import Change, Task, TaskContext, TaskFailed, TaskOutcome, TaskPlan

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that by HTTP's definition (RFC 9110 §9.2.1) do not change the server's state."""

Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
StatusCode = Annotated[int, Field(ge=100, le=599)]


def _one_or_many(value: Any) -> Any:
    # `expect_status: 204` reads naturally in YAML; it means the list [204].
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


class RequestParams(StrictModel):
    """Params of ``http.request``; unset fields fall back to the http target's, if any."""

    url: (
        Annotated[
            str,
            SecretMarker(part="password"),
            Field(pattern=r"^https?://"),
        ]
        | None
    ) = Field(
        default=None,
        description="http:// or https:// URL (default: the target's); a password in it is secret",
    )
    method: Method | None = Field(default=None, description="default: the target's, else GET")
    headers: Annotated[dict[str, str], SecretMarker()] = Field(
        default={}, description="request headers, merged over the target's; values are secret"
    )
    body: str | None = Field(default=None, description="request body (default: the target's)")
    expect_status: Annotated[
        list[StatusCode], BeforeValidator(_one_or_many), Field(min_length=1)
    ] = Field(default=[200], description="accepted status codes (one or a list)")
    expect_body_contains: str | None = Field(
        default=None, description="text the response body must contain"
    )
    verify_tls: bool | None = Field(
        default=None, description="verify the certificate (default: the target's, else true)"
    )
    ca_file: str | None = Field(default=None, description="CA bundle to verify against (PEM)")
    follow_redirects: bool | None = Field(
        default=None, description="follow redirects (default: the target's, else true)"
    )


@dataclass(frozen=True)
class ResolvedRequest:
    """The request to send after the step's params were laid over the target's."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    verify_tls: bool
    ca_file: str | None
    follow_redirects: bool


def display_url(url: str) -> str:
    """Given a URL, return it with any password replaced by ``***`` (the user name stays)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def resolve(target: HttpTarget | None, params: RequestParams) -> ResolvedRequest:
    """Given an http target (or None) and params, return the request to send.

    Raise TaskFailed if neither gives a URL.
    """
    url = params.url if params.url is not None else target.url if target else None
    if url is None:
        raise TaskFailed("http.request needs `url`, or an http target")
    headers: dict[str, str] = {}
    overridden = {name.lower() for name in params.headers}
    if target is not None:
        # Header names are case-insensitive: the step's `authorization` replaces the
        # target's `Authorization` rather than sending both.
        headers.update(
            {
                name: value
                for name, value in target.headers.items()
                if name.lower() not in overridden
            }
        )
    headers.update(params.headers)
    if target is None:
        return ResolvedRequest(
            method=params.method or "GET",
            url=url,
            headers=headers,
            body=params.body,
            verify_tls=True if params.verify_tls is None else params.verify_tls,
            ca_file=params.ca_file,
            follow_redirects=True if params.follow_redirects is None else params.follow_redirects,
        )
    return ResolvedRequest(
        method=params.method or target.method,
        url=url,
        headers=headers,
        body=params.body if params.body is not None else target.body,
        verify_tls=target.verify_tls if params.verify_tls is None else params.verify_tls,
        ca_file=params.ca_file if params.ca_file is not None else target.ca_file,
        follow_redirects=(
            target.follow_redirects if params.follow_redirects is None else params.follow_redirects
        ),
    )


class HttpRequest(Task[HttpTarget | None, RequestParams]):
    """Send one HTTP request and fail unless the status (and body text) are as expected."""

    name: ClassVar[str] = "http.request"
    summary: ClassVar[str] = "Send one HTTP request (warm a cache, call a hook); assert the answer."
    Params: ClassVar[type[StrictModel]] = RequestParams
    target_kinds: ClassVar[tuple[str, ...]] = ("http",)

    def validate(self, target: HttpTarget | None, params: RequestParams) -> list[str]:
        """Given the target (or None) and params, return problems: no URL anywhere, or a
        body assertion on a HEAD request (whose answer has no body)."""
        problems: list[str] = []
        if params.url is None and target is None:
            problems.append("http.request needs `url`, or an http target")
        method = params.method or (target.method if target else "GET")
        if method == "HEAD" and params.expect_body_contains is not None:
            problems.append("expect_body_contains cannot hold for HEAD: its answer has no body")
        return problems

    def _prepare(
        self, target: HttpTarget | None, params: RequestParams, context: TaskContext
    ) -> tuple[ResolvedRequest, str]:
        """Given the step, return the request and how to name it in messages (no secrets).

        Raise TaskFailed if the step has problems.
        """
        problems = self.validate(target, params)
        if problems:
            raise TaskFailed("; ".join(problems))
        request = resolve(target, params)
        # Secret-marked values reach the redactor when the config is loaded; adding them
        # here too keeps messages clean when a task is built some other way (API, tests).
        context.redactor.add_url(request.url)
        context.redactor.extend(request.headers.values())
        shown = context.redactor.redact(f"{request.method} {display_url(request.url)}")
        return request, shown

    async def plan(
        self, target: HttpTarget | None, params: RequestParams, context: TaskContext
    ) -> TaskPlan:
        """Given the step, return what would be sent, sending nothing.

        A safe method (GET, HEAD, OPTIONS) gives a predictable plan with no changes; any
        other method an unpredictable one listing the request. Raise TaskFailed if the step
        has no URL.
        """
        request, shown = self._prepare(target, params, context)
        expected = ", ".join(str(code) for code in params.expect_status)
        if request.method in SAFE_METHODS:
            return TaskPlan(
                predictable=True,
                note=(
                    f"would send {shown} and expect HTTP {expected}; {request.method} is a "
                    "safe method and changes nothing on our side (the server may still do "
                    "work, such as filling a cache)"
                ),
            )
        return TaskPlan(
            changes=[Change("request", shown, f"expect HTTP {expected}")],
            predictable=False,
            note=(
                f"would send {shown}; {request.method} may change state on the server, "
                "and what it changes cannot be known in advance"
            ),
        )

    async def run(
        self, target: HttpTarget | None, params: RequestParams, context: TaskContext
    ) -> TaskOutcome:
        """Given the step, send the request within the step's timeout and return figures
        ``status_code``, ``response_time_ms`` and ``body_bytes``.

        Raise TaskFailed if no answer came, the status is not in ``expect_status``, or the
        body does not contain ``expect_body_contains`` (only the first 16 MiB are searched).
        """
        request, shown = self._prepare(target, params, context)
        try:
            response = await context.http.request(
                request.method,
                request.url,
                timeout_s=context.timeout_s,
                headers=request.headers or None,
                body=request.body,
                verify_tls=request.verify_tls,
                ca_file=request.ca_file,
                follow_redirects=request.follow_redirects,
                keep_body=params.expect_body_contains is not None,
            )
        except HttpError as error:
            raise TaskFailed(context.redactor.redact(f"{shown}: {error}")) from error
        code = response.status_code
        if code not in params.expect_status:
            expected = ", ".join(str(item) for item in params.expect_status)
            raise TaskFailed(f"{shown} answered HTTP {code}; expected {expected}")
        needle = params.expect_body_contains
        if needle is not None and needle not in response.body.decode("utf-8", "replace"):
            raise TaskFailed(
                context.redactor.redact(
                    f"{shown} answered HTTP {code}, but its body ({response.body_bytes} bytes) "
                    f'does not contain the expected text "{needle}"'
                )
            )
        changes = (
            [] if request.method in SAFE_METHODS else [Change("request", shown, f"HTTP {code}")]
        )
        return TaskOutcome(
            changes=changes,
            message=f"{shown} answered HTTP {code} in {response.elapsed_ms:.0f} ms",
            figures={
                "status_code": code,
                "response_time_ms": round(response.elapsed_ms, 3),
                "body_bytes": response.body_bytes,
            },
        )
