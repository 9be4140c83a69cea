"""``upkeep incidents publish``: the public update, redacted, on the incident it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.helpers import load_text
from tests.unit.web.status.seed import seed_incident
from upkeep.cli.incidents import publish_update
from upkeep.cli.main import app
from upkeep.store.updates import published_updates

SECRET = "s3cret-value-for-the-test"
CONFIG = """\
targets:
  box: {kind: http, url: "http://127.0.0.1:9/", headers: {X-Key: "${KEY}"}}
checks:
  web: {target: box}
"""


def test_publish_stores_a_redacted_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KEY", SECRET)
    loaded = load_text(tmp_path, CONFIG, {"KEY": SECRET})
    store = loaded.config.store.open(loaded.base_dir)
    now = datetime.now(UTC)
    try:
        incident = seed_incident(store, "web", now - timedelta(hours=2), now - timedelta(hours=1))
        ongoing = seed_incident(store, "web", now - timedelta(minutes=5), None)
    finally:
        store.close()
    config = tmp_path / "upkeep.yaml"
    assert publish_update(config, incident, f"Rotated key {SECRET}; all good", author="bob") == 0
    assert f"published on incident {incident} by bob" in capsys.readouterr().out
    assert publish_update(config, 999, "nothing", author="bob") == 2
    assert "no incident 999" in capsys.readouterr().err
    assert publish_update(config, incident, "   ", author="bob") == 2
    assert publish_update(config, incident, "x" * 4001, author="bob") == 2
    store = loaded.config.store.open(loaded.base_dir)
    try:
        updates = published_updates(store.engine, [incident, ongoing])
    finally:
        store.close()
    assert [(u.author, u.text) for u in updates[incident]] == [("bob", "Rotated key ***; all good")]
    assert ongoing not in updates


def test_publish_is_a_subcommand() -> None:
    import typer.main

    group = typer.main.get_command(app)
    incidents = group.commands["incidents"]  # type: ignore[attr-defined]
    assert "publish" in incidents.commands
