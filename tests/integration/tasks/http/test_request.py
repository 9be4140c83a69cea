"""http.request against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from upkeep.probes.http import HttpTarget
from upkeep.tasks.base import TaskContext, TaskFailed, TaskOutcome, TaskPlan
from upkeep.tasks.http.request import HttpRequest, RequestParams

TOKEN = "Bearer s3cr3t-token-0123456789"
PASSWORD = "hunter2-hunter2"


@dataclass
class Seen:
    """What the server received: method, path and headers (names lower-cased) per request."""

    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def make_app(seen: Seen) -> web.Application:
    async def record(request: web.Request) -> None:
        seen.requests.append(
            (request.method, request.path, {k.lower(): v for k, v in request.headers.items()})
        )

    async def hello(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="hello world")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=int(request.match_info["code"]), text="as asked")

    async def warm(request: web.Request) -> web.Response:
        await record(request)
        body = await request.text()
        return web.Response(text=f"warmed {request.method} {body}")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(0.6)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/hello", hello)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/warm", warm)
    app.router.add_get("/slow", slow)
    return app


@dataclass
class Server:
    base: str
    seen: Seen


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    seen = Seen()
    runner = web.AppRunner(make_app(seen))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield Server(f"http://127.0.0.1:{runner.addresses[0][1]}", seen)
    finally:
        await runner.cleanup()


def step(**values: object) -> RequestParams:
    return RequestParams.model_validate(values)


async def run(
    context: TaskContext, target: HttpTarget | None = None, **values: object
) -> TaskOutcome:
    return await HttpRequest().run(target, step(**values), context)


async def plan(
    context: TaskContext, target: HttpTarget | None = None, **values: object
) -> TaskPlan:
    return await HttpRequest().plan(target, step(**values), context)


async def test_get_records_status_time_and_size(server: Server, task_context: TaskContext) -> None:
    outcome = await run(task_context, url=f"{server.base}/hello")
    assert outcome.figures["status_code"] == 200
    assert outcome.figures["body_bytes"] == len("hello world")
    assert isinstance(outcome.figures["response_time_ms"], float)
    assert outcome.figures["response_time_ms"] > 0
    assert outcome.changes == []
    assert outcome.message.startswith(f"GET {server.base}/hello answered HTTP 200 in ")
    assert [(method, path) for method, path, _ in server.seen.requests] == [("GET", "/hello")]


async def test_an_unexpected_status_fails(server: Server, task_context: TaskContext) -> None:
    with pytest.raises(TaskFailed, match=r"answered HTTP 500; expected 200$"):
        await run(task_context, url=f"{server.base}/status/500")


async def test_expect_status_takes_one_code_or_several(
    server: Server, task_context: TaskContext
) -> None:
    outcome = await run(task_context, url=f"{server.base}/status/503", expect_status=503)
    assert outcome.figures["status_code"] == 503
    outcome = await run(task_context, url=f"{server.base}/status/204", expect_status=[200, 204])
    assert outcome.figures["status_code"] == 204
    with pytest.raises(TaskFailed, match="expected 200, 204"):
        await run(task_context, url=f"{server.base}/status/404", expect_status=[200, 204])


async def test_body_must_contain_the_expected_text(
    server: Server, task_context: TaskContext
) -> None:
    outcome = await run(task_context, url=f"{server.base}/hello", expect_body_contains="world")
    assert outcome.figures["status_code"] == 200
    with pytest.raises(
        TaskFailed, match=r'body \(11 bytes\) does not contain the expected text "planet"'
    ):
        await run(task_context, url=f"{server.base}/hello", expect_body_contains="planet")


async def test_get_plan_is_predictable_and_sends_nothing(
    server: Server, task_context: TaskContext
) -> None:
    result = await plan(task_context, url=f"{server.base}/warm")
    assert result.predictable
    assert result.changes == []
    assert result.note.startswith(f"would send GET {server.base}/warm and expect HTTP 200")
    assert "changes nothing on our side" in result.summary()
    assert server.seen.requests == []


async def test_post_plan_is_unpredictable_and_sends_nothing(
    server: Server, task_context: TaskContext
) -> None:
    result = await plan(task_context, url=f"{server.base}/warm", method="POST", body="all")
    assert not result.predictable
    assert [(change.action, change.subject) for change in result.changes] == [
        ("request", f"POST {server.base}/warm")
    ]
    assert result.summary().startswith("effect cannot be predicted: would send POST")
    assert server.seen.requests == []


async def test_post_is_sent_with_its_body_and_listed_as_a_change(
    server: Server, task_context: TaskContext
) -> None:
    outcome = await run(
        task_context,
        url=f"{server.base}/warm",
        method="POST",
        body="all",
        expect_body_contains="warmed POST all",
    )
    assert [(change.action, change.detail) for change in outcome.changes] == [
        ("request", "HTTP 200")
    ]
    assert [(method, path) for method, path, _ in server.seen.requests] == [("POST", "/warm")]


async def test_secret_header_is_sent_but_never_shown(
    server: Server, task_context: TaskContext
) -> None:
    headers = {"Authorization": TOKEN}
    outcome = await run(task_context, url=f"{server.base}/hello", headers=headers)
    plan_result = await plan(task_context, url=f"{server.base}/hello", headers=headers)
    with pytest.raises(TaskFailed) as failure:
        await run(task_context, url=f"{server.base}/status/401", headers=headers)
    assert server.seen.requests[0][2]["authorization"] == TOKEN
    shown = [
        outcome.message,
        str(outcome.as_dict()),
        str(plan_result.as_dict()),
        str(failure.value),
    ]
    for text in shown:
        assert "s3cr3t" not in text


async def test_url_password_never_appears_in_messages(
    server: Server, task_context: TaskContext
) -> None:
    url = server.base.replace("http://", f"http://admin:{PASSWORD}@") + "/status/500"
    with pytest.raises(TaskFailed) as failure:
        await run(task_context, url=url)
    message = str(failure.value)
    assert PASSWORD not in message
    assert "http://admin:***@127.0.0.1:" in message
    result = await plan(task_context, url=url, method="PUT")
    assert PASSWORD not in str(result.as_dict())


async def test_an_http_target_supplies_the_defaults(
    server: Server, task_context: TaskContext
) -> None:
    target = HttpTarget(
        url=f"{server.base}/warm",
        method="POST",
        headers={"X-Token": "from-target", "X-Team": "ops"},
        body="from target",
    )
    result = await plan(task_context, target)
    assert not result.predictable
    outcome = await run(task_context, target, expect_body_contains="warmed POST from target")
    assert outcome.figures["status_code"] == 200
    outcome = await run(
        task_context, target, method="PUT", body="mine", headers={"x-token": "from-step"}
    )
    assert outcome.changes[0].subject == f"PUT {server.base}/warm"
    method, _, headers = server.seen.requests[-1]
    assert method == "PUT"
    assert headers["x-token"] == "from-step"
    assert headers["x-team"] == "ops"


async def test_no_answer_fails_with_the_reason(task_context: TaskContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://admin:{PASSWORD}@127.0.0.1:{port}/"
    with pytest.raises(TaskFailed, match="Connect") as failure:
        await run(task_context, url=url)
    assert PASSWORD not in str(failure.value)


async def test_the_step_timeout_bounds_the_request(
    server: Server, task_context: TaskContext
) -> None:
    quick = dataclasses.replace(task_context, timeout=timedelta(milliseconds=200))
    with pytest.raises(TaskFailed, match=r"no answer within 0\.2s"):
        await run(quick, url=f"{server.base}/slow")


async def test_without_url_or_target_it_refuses(task_context: TaskContext) -> None:
    with pytest.raises(TaskFailed, match="needs `url`"):
        await plan(task_context)
    with pytest.raises(TaskFailed, match="needs `url`"):
        await run(task_context)
