"""Metrics read from HTTP answers (``extract_json``, ``extract_regex``) against a real
aiohttp server on 127.0.0.1, and how checks judge them."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import run_probe
from upkeep.config.conditions import parse_condition
from upkeep.config.loader import CompiledCheck
from upkeep.core.status import Status
from upkeep.engine.results import judge
from upkeep.io.http import MAX_BODY_BYTES
from upkeep.probes.extract import MAX_REGEX_TEXT_CHARS
from upkeep.probes.http import HttpTarget, RequestParams, RequestProbe

STATUS = {
    "overall_health_percent": 96.5,
    "degraded": False,
    "services": [
        {"name": "api", "latency_ms": 42, "up": True},
        {"name": "db", "latency_ms": "7.5", "up": True},
        {"name": "queue", "latency_ms": None, "up": "yes"},
    ],
}
METRICS_TEXT = "# HELP orders\norders_per_minute 37.5\nerrors_total 2\norders_per_minute 99\n"


async def system_status(request: web.Request) -> web.Response:
    """Answer a JSON-RPC-like POST as guide 004's status function does; echo its body."""
    sent = await request.json()
    return web.json_response({**STATUS, "asked": sent.get("function")})


async def huge(request: web.Request) -> web.StreamResponse:
    """Stream a JSON document longer than the HTTP seam keeps."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"pad": "')
    chunk = b"x" * (1024 * 1024)
    for _ in range(MAX_BODY_BYTES // len(chunk) + 1):
        await response.write(chunk)
    await response.write(b'", "value": 1}')
    return response


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/functions/v1/system_status", system_status)
    for path, text in (
        ("/metrics", METRICS_TEXT),
        ("/not-json", "<html>oops</html>"),
        ("/long-text", "a" * (MAX_REGEX_TEXT_CHARS + 10) + " n 5"),
    ):
        app.router.add_get(path, _text(text))
    app.router.add_get("/huge", huge)
    return app


def _text(text: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        del request
        return web.Response(text=text)

    return handler


@contextlib.asynccontextmanager
async def serve() -> AsyncIterator[str]:
    runner = web.AppRunner(make_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async with serve() as url:
        yield url


def status_target(base: str) -> dict[str, Any]:
    return {
        "url": f"{base}/functions/v1/system_status",
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"function": "system_status"}),
    }


async def test_json_paths_with_filters_read_numbers_from_a_post_answer(base: str) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        status_target(base),
        {
            "extract_json": {
                "health": "$.overall_health_percent",
                "api_latency_ms": "$.services[?(@.name=='api')].latency_ms",
                "db_latency_ms": "$.services[?(@.name=='db')].latency_ms",
                "degraded": "$.degraded",
                "api_up": "$.services[?(@.name=='api')].up",
            }
        },
    )
    assert outcome.metrics["status_code"] == 200
    assert outcome.metrics["health"] == 96.5
    assert outcome.metrics["api_latency_ms"] == 42
    assert outcome.metrics["db_latency_ms"] == 7.5  # a text reading as a number
    assert outcome.metrics["degraded"] == 0  # false is 0
    assert outcome.metrics["api_up"] == 1
    assert outcome.message == "HTTP 200"


async def test_missing_ambiguous_and_non_numeric_values_are_left_out_with_reasons(
    base: str,
) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        status_target(base),
        {
            "extract_json": {
                "gone": "$.no_such_key",
                "every_latency_ms": "$.services[*].latency_ms",
                "queue_latency_ms": "$.services[?(@.name=='queue')].latency_ms",
                "queue_up": "$.services[?(@.name=='queue')].up",
                "services": "$.services",
            }
        },
    )
    for name in ("gone", "every_latency_ms", "queue_latency_ms", "queue_up", "services"):
        assert name not in outcome.metrics
    assert "gone: no match for $.no_such_key" in outcome.message
    assert "every_latency_ms: $.services[*].latency_ms matched 3 values, not one" in outcome.message
    assert "queue_latency_ms: $.services[?(@.name=='queue')].latency_ms is None" in outcome.message
    assert "queue_up: $.services[?(@.name=='queue')].up is 'yes', not a number" in outcome.message
    assert "services: $.services is [{" in outcome.message


async def test_a_condition_on_a_missing_metric_is_unknown_and_says_why(base: str) -> None:
    params = RequestParams.model_validate({"extract_json": {"health": "$.nothing_here"}})
    target = HttpTarget.model_validate(status_target(base))
    outcome = await run_probe(RequestProbe, HttpTarget, status_target(base), params.model_dump())
    check = CompiledCheck(
        name="status",
        target_name="status",
        target=target,
        probe=RequestProbe,
        params=params,
        warn=parse_condition("health < 95"),
        crit=parse_condition("health < 90"),
        every=timedelta(minutes=1),
        timeout=timedelta(seconds=5),
        severity="critical",
        labels={},
        enabled=True,
    )
    verdict = judge(check, outcome)
    assert verdict.status is Status.UNKNOWN
    assert "metric 'health' was not returned by the probe" in verdict.message
    assert "health: no match for $.nothing_here" in verdict.message


async def test_regex_reads_the_first_match_of_a_text_answer(base: str) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        {"url": f"{base}/metrics"},
        {
            "extract_regex": {
                "orders_per_minute": r"orders_per_minute (\d+(?:\.\d+)?)",
                "errors": r"errors_total (\d+)",
                "absent": r"refunds_total (\d+)",
                "word": r"# (HELP)",
            }
        },
    )
    assert outcome.metrics["orders_per_minute"] == 37.5
    assert outcome.metrics["errors"] == 2
    assert "absent" not in outcome.metrics and "word" not in outcome.metrics
    assert "absent: no match for /refunds_total (\\d+)/" in outcome.message
    assert "word: /# (HELP)/ captured 'HELP', not a number" in outcome.message


async def test_a_body_that_is_not_json_leaves_json_metrics_out(base: str) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        {"url": f"{base}/not-json"},
        {"extract_json": {"health": "$.health"}, "extract_regex": {"h": r"(oops)"}},
    )
    assert "health" not in outcome.metrics
    assert "health: the body is not JSON" in outcome.message
    assert "h: /(oops)/ captured 'oops', not a number" in outcome.message


async def test_regexes_search_only_the_first_mebibyte(base: str) -> None:
    outcome = await run_probe(
        RequestProbe, HttpTarget, {"url": f"{base}/long-text"}, {"extract_regex": {"n": r" n (\d)"}}
    )
    assert "n" not in outcome.metrics
    assert "n: no match" in outcome.message


async def test_a_body_longer_than_the_seam_keeps_is_not_parsed(base: str) -> None:
    outcome = await run_probe(
        RequestProbe,
        HttpTarget,
        {"url": f"{base}/huge"},
        {"extract_json": {"value": "$.value"}},
        timeout_s=30,
    )
    body_bytes = outcome.metrics["body_bytes"]
    assert isinstance(body_bytes, int) and body_bytes > MAX_BODY_BYTES
    assert "value" not in outcome.metrics
    assert f"is larger than the {MAX_BODY_BYTES:,} bytes read" in outcome.message


async def test_without_extraction_the_body_is_not_kept(base: str) -> None:
    outcome = await run_probe(RequestProbe, HttpTarget, {"url": f"{base}/metrics"})
    assert set(outcome.metrics) == {"status_code", "response_time_ms", "body_bytes"}
    assert outcome.metrics["body_bytes"] == len(METRICS_TEXT)
