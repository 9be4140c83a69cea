"""upkeep's own PostgreSQL store is backed up as its schema, not as the whole database it
shares with an application."""

from __future__ import annotations

import io
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from upkeep.core.results import CheckResult
from upkeep.core.status import Status
from upkeep.store.schema import metadata
from upkeep.store.store import Store, normalise_url
from upkeep.tasks.backup.sources import UpkeepSource


def test_the_store_backup_dumps_and_counts_the_stores_schema_only(
    pg_database: str, postgres_dsn: str, tmp_path: Path
) -> None:
    # pg_database holds an application's tables in public and audit; the store joins them.
    name = conninfo_to_dict(pg_database)["dbname"]
    url = f"{postgres_dsn.split('?', 1)[0].rsplit('/', 1)[0]}/{name}"
    store = Store.open(url, tmp_path, schema="ops_store")
    try:
        at = datetime.now(UTC)
        store.write_results([CheckResult("up", "box", "tcp.connect", Status.OK, {}, "", 1.0, at)])
    finally:
        store.close()
    config = tmp_path / "upkeep.yaml"
    config.write_text(f"store: {{url: {url}, schema: ops_store}}\n")
    work = tmp_path / "work"
    work.mkdir()

    source = UpkeepSource(config, normalise_url(url, tmp_path), "ops_store")
    with source.dump(work) as dump:
        archive = b"".join(dump.chunks)
        counts = dump.finish()["store_row_counts"]

    ours = {*metadata.tables, "alembic_version"}
    assert set(counts) == {f"ops_store.{table}" for table in ours}
    assert counts["ops_store.check_results"] == 1
    with tarfile.open(fileobj=io.BytesIO(archive)) as bundle:
        member = bundle.extractfile("store.pgdump")
        assert member is not None
        (tmp_path / "store.pgdump").write_bytes(member.read())
    listing = subprocess.run(
        ["pg_restore", "--list", str(tmp_path / "store.pgdump")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tables = {line.split()[-2] for line in listing.splitlines() if " TABLE DATA " in line}
    assert tables == ours
    assert "customers" not in listing and "audit" not in listing
