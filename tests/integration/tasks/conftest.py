"""Shared fixtures for task tests: a TaskContext built on the real HTTP seam and redactor."""

from __future__ import annotations

from datetime import timedelta

import pytest

from upkeep.core.redaction import Redactor
from upkeep.core.results import CheckResult
from upkeep.io.http import HttpClient
from upkeep.tasks.base import TaskContext


async def no_checks(name: str) -> CheckResult:
    """A run_check for tests that configure no checks: being called is a test failure."""
    raise AssertionError(f"the task ran check {name!r}, but this test configured none")


@pytest.fixture
def task_context(http_client: HttpClient) -> TaskContext:
    """A context with a 10 s step timeout, a real HttpClient (closed by its fixture)."""
    return TaskContext(
        timeout=timedelta(seconds=10), http=http_client, redactor=Redactor(), run_check=no_checks
    )
