"""Fixtures shared by the HTTP tests: a daemon app over a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import load_text
from upkeep.engine.metrics import DaemonMetrics
from upkeep.web.app import DaemonState, create_app

FULL_CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
runbooks:
  deploy:
    steps:
      - approval: Ship it?
"""


@pytest.fixture
def daemon_state(tmp_path: Path) -> Iterator[DaemonState]:
    """A daemon's state over a real SQLite store, with one token (``ops``)."""
    loaded = load_text(tmp_path, FULL_CONFIG, {"API_TOKEN": "t0ken-for-the-api-7f3a"})
    store = loaded.config.store.open(loaded.base_dir)
    yield DaemonState(instance_id="host:1:abc", loaded=loaded, store=store, metrics=DaemonMetrics())
    store.close()


@pytest.fixture
def daemon_app(daemon_state: DaemonState) -> Any:
    """The daemon's whole HTTP application."""
    return create_app(daemon_state)
