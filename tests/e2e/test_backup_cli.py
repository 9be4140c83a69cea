"""``upkeep backup …`` and ``upkeep drill`` as an operator runs them, and a missed drill
objective alerting through the routes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Upkeep
from tests.support.receivers import webhook


def _database(path: Path, rows: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, total INT)")
    connection.execute("DELETE FROM orders")
    connection.executemany("INSERT INTO orders (total) VALUES (?)", [(n,) for n in range(rows)])
    connection.commit()
    connection.close()


def _rows(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("SELECT count(*) FROM orders").fetchone()[0])
    finally:
        connection.close()


CONFIG = """\
targets:
  app-backups: {{kind: backup, source: app}}
checks:
  app-backup-fresh:
    target: app-backups
    every: 1h
    crit: age_s > 1d or not last_attempt_ok
  app-drill:
    target: app-backups
    probe: drill
    every: 1d
    crit: not passed
    severity: P2
channels:
  ops: "{hook}"
routes:
  - notify: [ops]
backups:
  repository: repo
  key: "${{BACKUP_KEY}}"
  retention: {{keep_last: 3}}
  sources:
    app:
      sqlite: data/app.db
      rto: 10m
      rpo: 1d
      validate: ["SELECT count(*) > 0 FROM orders"]
    etc: {{paths: [data/etc]}}
runbooks:
  dr-drill:
    steps:
      - task: backup.drill
        with: {{source: app, rpo: 1ms}}
"""
SECRET = "the-backup-key-s3cret"


def test_backup_create_list_verify_drill_prune_restore(upkeep: Upkeep, tmp_path: Path) -> None:
    database = tmp_path / "data" / "app.db"
    _database(database, 120)
    (tmp_path / "data" / "etc").mkdir()
    (tmp_path / "data" / "etc" / "app.conf").write_text("port = 80\n")
    env = {"BACKUP_KEY": SECRET}
    with webhook() as receiver:
        (tmp_path / "upkeep.yaml").write_text(CONFIG.format(hook=receiver.url()))
        assert upkeep("validate", env=env).returncode == 0

        created = upkeep("backup", "create", env=env)
        assert created.returncode == 0, created.stdout + created.stderr
        assert "ok     app: backup" in created.stdout and "ok     etc: backup" in created.stdout
        listed = json.loads(upkeep("backup", "list", "app", "--json", env=env).stdout)
        (first,) = listed["backups"]
        assert first["encrypted"] is True and first["verified"] == "never"

        verified = upkeep("backup", "verify", first["id"], "--restore", env=env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "restored into a scratch copy and compared" in verified.stdout
        wrong_key = upkeep("backup", "verify", first["id"], env={"BACKUP_KEY": "another-key"})
        assert wrong_key.returncode == 1 and "fails authentication" in wrong_key.stdout

        drill = upkeep("drill", "app", env=env)
        assert drill.returncode == 0, drill.stdout + drill.stderr
        assert "drill of app: PASSED" in drill.stdout and "(within 10m)" in drill.stdout
        assert "ok   SELECT count(*) > 0 FROM orders -> 1" in drill.stdout

        _database(database, 5)  # someone deletes most orders
        planned = upkeep("backup", "prune", "app", "--dry-run", env=env)
        assert planned.returncode == 0 and "keep   app" in planned.stdout

        refused = upkeep("backup", "restore", first["id"], env=env)
        assert refused.returncode == 2 and "--yes" in refused.stderr
        restored = upkeep("backup", "restore", first["id"], "--yes", "--json", env=env)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        report = json.loads(restored.stdout)
        assert report["to"] == "app" and report["safety_backup"]
        assert _rows(database) == 120
        safety = [
            b
            for b in json.loads(upkeep("backup", "list", "app", "--json", env=env).stdout)[
                "backups"
            ]
            if b["id"] == report["safety_backup"]
        ]
        assert safety and safety[0]["label"] == f"before restoring {first['id']}"

        # The runbook's drill misses its RPO of 1 ms: the step fails, the drill check runs
        # at once and its alert goes out through the route.
        run = upkeep("run", "dr-drill", "--yes", env=env)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "RPO" in run.stdout and "over 1ms" in run.stdout
        bodies = [json.dumps(delivery.json()) for delivery in receiver.deliveries]
        assert any("FIRING app-drill" in body and "RPO" in body for body in bodies), bodies

        for output in (created, verified, drill, restored, run):
            assert SECRET not in output.stdout + output.stderr
        assert SECRET.encode() not in b"".join(
            path.read_bytes() for path in (tmp_path / "repo").rglob("*") if path.is_file()
        )


def test_verify_restore_shows_what_it_compared(upkeep: Upkeep, tmp_path: Path) -> None:
    _database(tmp_path / "data" / "app.db", 120)
    (tmp_path / "data" / "etc").mkdir()
    (tmp_path / "data" / "etc" / "app.conf").write_text("port = 80\n")
    (tmp_path / "upkeep.yaml").write_text(
        "backups:\n  repository: repo\n  sources:\n"
        "    app: {sqlite: data/app.db}\n    etc: {paths: [data/etc]}\n"
    )
    assert upkeep("backup", "create").returncode == 0
    listed = json.loads(upkeep("backup", "list", "--json").stdout)["backups"]
    ids = {backup["source"]: backup["id"] for backup in listed}

    verified = upkeep("backup", "verify", ids["app"], "--restore")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # Per table: the manifest's rows and the restored rows.
    assert "manifest rows" in verified.stdout and "restored rows" in verified.stdout
    (orders,) = [line for line in verified.stdout.splitlines() if line.split()[:1] == ["orders"]]
    assert orders.split() == ["orders", "120", "120", "ok"], verified.stdout
    as_json = json.loads(upkeep("backup", "verify", ids["app"], "--restore", "--json").stdout)
    assert as_json["compared"] == [
        {
            "kind": "table",
            "name": "orders",
            "unit": "rows",
            "manifest": 120,
            "restored": 120,
            "ok": True,
        }
    ]
    files = upkeep("backup", "verify", ids["etc"], "--restore")
    assert "1 file(s) compared by sha256 with the manifest: 1 match" in files.stdout
    hashed = upkeep("backup", "verify", ids["etc"])
    assert "compared by sha256" not in hashed.stdout  # no restore, nothing compared


def test_upkeep_backs_up_its_own_config_and_store(upkeep: Upkeep, tmp_path: Path) -> None:
    (tmp_path / "upkeep.yaml").write_text(
        "targets:\n  box: {kind: host}\nchecks:\n  up: {target: box, probe: uptime}\n"
        "backups:\n  repository: repo\n  sources:\n    self: {upkeep: true}\n"
    )
    assert upkeep("check").returncode == 0  # the store now holds a result
    created = upkeep("backup", "create", "self", "--json")
    assert created.returncode == 0, created.stdout + created.stderr
    (result,) = json.loads(created.stdout)["results"]
    manifest = json.loads((Path(result["path"]) / "manifest.json").read_text())
    assert set(manifest["files"]) == {"upkeep.yaml", "store.sqlite"}
    assert manifest["store_row_counts"]["check_results"] >= 1
    verified = upkeep("backup", "verify", result["id"], "--restore")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_failed_backup_from_the_cli_alerts_through_the_routes(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    env = {"BACKUP_KEY": SECRET}
    with webhook() as receiver:
        (tmp_path / "upkeep.yaml").write_text(CONFIG.format(hook=receiver.url()))
        failed = upkeep("backup", "create", "app", env=env)  # data/app.db does not exist
        assert failed.returncode == 1 and "FAILED app: backup of app failed" in failed.stdout
        assert "no SQLite database" in failed.stdout
        titles = [delivery.json()["title"] for delivery in receiver.deliveries]
        assert any("FIRING app-backup-fresh" in title for title in titles), titles
        body = next(
            d.json()["message"] for d in receiver.deliveries if "fresh" in d.json()["title"]
        )
        assert "no complete backup of app" in body and "no SQLite database" in body


def _fail_writes(database: Path, *tables: str) -> None:
    """Make the store refuse new rows in ``tables`` as a full disk would (the connection
    and every read still work)."""
    connection = sqlite3.connect(database)
    for table in tables:
        connection.execute(
            f"CREATE TRIGGER full_{table} BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END"
        )
    connection.commit()
    connection.close()


def test_a_store_that_fails_after_a_backup_is_reported_and_never_fails_the_backup(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    """The store opens but takes no results and no catalog rows: the backup stands (exit
    0, the backup listed), stderr says what was not stored and why, and the source's
    checks alert from the spill; a failed backup on that store still alerts at once."""
    env = {"BACKUP_KEY": SECRET}
    _database(tmp_path / "data" / "app.db", 10)
    with webhook() as receiver:
        (tmp_path / "upkeep.yaml").write_text(
            CONFIG.format(hook=receiver.url())
            + f"alerting:\n  store_failure: {{spill_dir: {tmp_path / 'spill'}}}\n"
        )
        assert upkeep("backup", "create", "app", env=env).returncode == 0  # the store is made
        _fail_writes(tmp_path / ".upkeep" / "upkeep.db", "check_results", "backups")

        created = upkeep("backup", "create", "app", "--json", env=env)
        assert created.returncode == 0, created.stdout + created.stderr
        (result,) = json.loads(created.stdout)["results"]
        assert result["ok"] is True
        assert "database or disk is full" in result["catalog_error"]
        assert f"the store did not record backup {result['id']}" in created.stderr
        assert "results were not stored: database or disk is full" in created.stderr
        assert "alerting continues from the spill file" in created.stderr
        assert "internal error" not in created.stderr
        listed = json.loads(upkeep("backup", "list", "app", "--json", env=env).stdout)
        assert result["id"] in [backup["id"] for backup in listed["backups"]]

        (tmp_path / "data" / "app.db").unlink()
        failed = upkeep("backup", "create", "app", env=env)
        assert failed.returncode == 1 and "FAILED app: backup of app failed" in failed.stdout
        assert "internal error" not in failed.stderr
        titles = [delivery.json()["title"] for delivery in receiver.deliveries]
        assert any("FIRING app-backup-fresh" in title for title in titles), titles
        assert any("FIRING upkeep:store" in title for title in titles), titles


def test_a_failed_backup_alerts_from_the_spill_when_the_store_cannot_be_opened(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    """A store that cannot be opened at all (read-only): the backup commands go on without
    the catalog, and the source's checks alert from the spill as ``upkeep check`` does."""
    from tests.support.mounts import bind_view

    env = {"BACKUP_KEY": SECRET}
    (tmp_path / "store").mkdir()
    with webhook() as receiver, bind_view(tmp_path / "store", tmp_path / "view") as view:
        (tmp_path / "upkeep.yaml").write_text(
            f'store: "sqlite:///{view.path}/upkeep.db"\n'
            + CONFIG.format(hook=receiver.url())
            + f"alerting:\n  store_failure: {{spill_dir: {tmp_path / 'spill'}}}\n"
        )
        view.read_only()
        failed = upkeep("backup", "create", "app", env=env)  # data/app.db does not exist
        assert failed.returncode == 1 and "FAILED app: backup of app failed" in failed.stdout
        assert "cannot open store" in failed.stderr
        assert "results were not stored" in failed.stderr
        assert "internal error" not in failed.stderr
        titles = [delivery.json()["title"] for delivery in receiver.deliveries]
        assert any("FIRING app-backup-fresh" in title for title in titles), titles


def test_a_restore_that_cannot_load_says_so_end_to_end(
    upkeep: Upkeep, tmp_path: Path, redis_url: str
) -> None:
    # A Redis restore printed "restored ID into cache", took a safety backup of a server it
    # never touches and exited as a restore; upkeep's own backup did the same.
    (tmp_path / "upkeep.yaml").write_text(
        f"targets:\n  cache: {{kind: redis, url: '{redis_url}'}}\n"
        "backups:\n  repository: repo\n  sources:\n"
        "    cache: {target: cache}\n    self: {upkeep: true}\n"
    )
    ids = {}
    for name in ("cache", "self"):
        created = upkeep("backup", "create", name, "--json")
        assert created.returncode == 0, created.stdout + created.stderr
        ids[name] = json.loads(created.stdout)["results"][0]["id"]

    # No terminal and no --yes: nothing is overwritten, so nothing needs confirming.
    text = upkeep("backup", "restore", ids["cache"])
    assert text.returncode == 0, text.stdout + text.stderr
    (written,) = tmp_path.glob("redis-restored-*")
    said = " ".join(text.stdout.split())  # the terminal is 200 columns wide
    assert f"written to {written}; not loaded: to load it, stop Redis" in said
    assert "replace the file at CONFIG GET dir/dbfilename (read it first) with" in said
    assert f"with {written}/dump.rdb, start it (with appendonly yes" in said
    assert "restored" not in said.replace("redis-restored-", "")
    assert "safety backup" not in said

    as_json = json.loads(upkeep("backup", "restore", ids["self"], "--json").stdout)
    (extracted,) = tmp_path.glob("upkeep-restored-*")
    assert as_json["loaded"] is False and as_json["written_to"] == str(extracted)
    assert as_json["safety_backup"] is None
    assert (extracted / "upkeep.yaml").is_file()
    assert (extracted.stat().st_mode & 0o777) == 0o700  # the config holds secrets

    listed = json.loads(upkeep("backup", "list", "--json").stdout)["backups"]
    assert sorted(backup["id"] for backup in listed) == sorted(ids.values())


def test_prune_leaves_another_hosts_copies_alone_and_says_so(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    (tmp_path / "data" / "etc").mkdir(parents=True)
    (tmp_path / "data" / "etc" / "app.conf").write_text("port = 80\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    foreign = "20200101T000000Z-abcdef"  # older than anything here: it went first
    for file_name in ("data.zst", "manifest.json"):
        (shared / f"etc--{foreign}--{file_name}").write_text("another host's backup")
    (tmp_path / "upkeep.yaml").write_text(
        f"backups:\n  repository: repo\n  copy_to: {shared}\n  retention: {{keep_last: 1}}\n"
        "  sources:\n    etc: {paths: [data/etc]}\n"
    )
    for _ in range(2):
        created = upkeep("backup", "create", "etc")
        assert created.returncode == 0, created.stdout + created.stderr
    pruned = upkeep("backup", "prune", "etc")
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"left alone in {shared}: etc {foreign} (not this repository's backups)" in " ".join(
        pruned.stdout.split()
    )
    document = json.loads(upkeep("backup", "prune", "etc", "--json").stdout)
    assert document["sources"][0]["copy"]["foreign"] == [foreign]
    assert (shared / f"etc--{foreign}--manifest.json").exists()
