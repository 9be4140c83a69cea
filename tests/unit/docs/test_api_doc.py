"""``docs/api.md``: generated from the daemon's OpenAPI schema, fresh, and complete.

Every route the application serves has its section, every request body field its type
and meaning, and the answers the guard gives before a route runs are listed with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from upkeep.docs import api_schema, main, render_api
from upkeep.web.app import DaemonState, create_app
from upkeep.web.guard import CHANGE_REFUSALS, PING_PREFIX, READ_REFUSALS, SAFE_METHODS

COMMITTED = Path(__file__).parents[3] / "docs" / "api.md"


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def _served(routes: Sequence[object]) -> list[APIRoute]:
    """Given an application's routes, return its API routes, those of included routers too
    (FastAPI keeps an included router as one entry holding the original)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            # Swagger UI's page and files are no API operation (left out of the schema).
            if route.include_in_schema:
                found.append(route)
        elif isinstance(original := getattr(route, "original_router", None), APIRouter):
            found += _served(original.routes)
    return found


def test_committed_api_reference_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render_api(), (
        "run `make docs` and commit docs/api.md"
    )


def test_every_served_route_has_a_section() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    routes = [
        (method, route.path)
        for route in _served(create_app(cast(DaemonState, object())).routes)
        for method in sorted(route.methods or ())
    ]
    assert len(routes) >= 12
    for method, path in routes:
        assert f"\n## {method} {path}\n" in text, f"{method} {path}"


def test_a_silence_takes_for_and_matchers_not_duration() -> None:
    section = _section(COMMITTED.read_text(encoding="utf-8"), "POST /api/silences")
    assert re.search(
        r"^\| `for` \| string \(at most 40 chars\) \| yes \| .*duration", section, re.M
    )
    assert re.search(r"^\| `matchers` \| object of string .* \| yes \|", section, re.M)
    assert "`duration`" not in section
    ack = _section(COMMITTED.read_text(encoding="utf-8"), "POST /api/alerts/{alert_id}/ack")
    assert re.search(r"^\| `for` \| string \(at most 40 chars\) or null \| no \|", ack, re.M)


def test_every_api_route_lists_the_guards_refusals() -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    for path, methods in api_schema()["paths"].items():
        for method in methods:
            section = _section(text, f"{method.upper()} {path}")
            if path.startswith(PING_PREFIX):
                # A ping's id is its credential; the guard still caps its body.
                assert "Access: heartbeat id." in section
                assert re.search(r"^\| 413 \| ", section, re.M), f"{method} {path}"
                continue
            if not path.startswith("/api/"):
                assert "Access: none." in section
                continue
            refusals = READ_REFUSALS if method.upper() in SAFE_METHODS else CHANGE_REFUSALS
            for code in refusals:
                assert re.search(rf"^\| {code} \| ", section, re.M), f"{method} {path}: {code}"


def test_the_command_line_prints_the_api_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["api"]) == 0
    assert capsys.readouterr().out == render_api()
