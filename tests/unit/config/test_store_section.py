"""The ``store:`` section: a URL as before, or ``{url, schema}``; the schema a plain name,
the URL's password secret, and every error at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import load_text
from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.store.store import DEFAULT_SCHEMA


def _errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [str(issue) for issue in caught.value.issues]


def test_a_url_alone_is_the_store_in_the_default_schema(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, 'store: "postgresql://upkeep@db.internal/ops"\n')
    assert loaded.config.store.url == "postgresql://upkeep@db.internal/ops"
    assert loaded.config.store.schema_name == DEFAULT_SCHEMA == "upkeep"


def test_no_store_key_is_sqlite_beside_the_config(tmp_path: Path) -> None:
    store = load_text(tmp_path, "timezone: UTC\n").config.store
    assert (store.url, store.schema_name) == ("sqlite:///.upkeep/upkeep.db", "upkeep")


def test_a_mapping_names_the_schema_and_the_password_stays_secret(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        "store:\n  url: postgresql://upkeep:${DB_PASSWORD}@db.internal/ops\n  schema: tenant_b\n",
        environ={"DB_PASSWORD": "s3cret-pw"},
    )
    assert loaded.config.store.schema_name == "tenant_b"
    assert loaded.config.store.url == "postgresql://upkeep:s3cret-pw@db.internal/ops"
    assert "s3cret-pw" not in loaded.redactor.redact(f"cannot open {loaded.config.store.url}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "store:\n  url: postgresql://u@h/db\n  schema: Ops\n",
            "upkeep.yaml:3:11: store.schema: 'Ops' is not a plain schema name",
        ),
        (
            "store: {url: postgresql://u@h/db, schema: pg_temp}\n",
            "store.schema: 'pg_temp' starts with pg_",
        ),
        (
            "store: {url: postgresql://u@h/db, schema: 'a;drop'}\n",
            "store.schema: 'a;drop' is not a plain schema name",
        ),
        (
            'timezone: UTC\nstore: "postgresql://u@h/db?options=-csearch_path%3Dmine"\n',
            "upkeep.yaml:2:8: store: the URL sets search_path in options; give the schema "
            "as store.schema instead",
        ),
        ("store: [postgresql://u@h/db]\n", "store: expected a database URL or a mapping"),
        ("store: {url: postgresql://u@h/db, schem: x}\n", "store.schem: unknown key"),
    ],
)
def test_a_store_that_cannot_be_used_is_refused_at_its_line(
    tmp_path: Path, text: str, expected: str
) -> None:
    errors = _errors(tmp_path, text)
    assert any(expected in error for error in errors), errors
