"""Backups through the API over a real repository: list, take (a job), verify (a job),
drill (a job), with the jobs' outcomes and the source's checks run afterwards."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from tests.unit.web.api_world import JSON, client, client_as, world
from upkeep.core.access import Role
from upkeep.web.app import DaemonState

CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
targets:
  api: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: prod}}
  cache: {kind: tcp, host: 127.0.0.1, port: 1, labels: {env: test}}
  app-backups: {kind: backup, source: app}
checks:
  api-up: {target: api, severity: P1}
  cache-up: {target: cache, severity: P3, enabled: false}
  app-backup-fresh: {target: app-backups, every: 1h, crit: age_s > 1d or not last_attempt_ok}
runbooks:
  deploy:
    steps:
      - approval: Ship it?
backups:
  repository: repo
  sources:
    app:
      sqlite: data/app.db
      validate: ["SELECT count(*) > 0 FROM orders"]
"""


def _database(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        connection.executemany("INSERT INTO orders (item) VALUES (?)", [("tea",), ("cake",)])


async def _finished(state: DaemonState, job_id: int) -> dict[str, Any]:
    api = client(state)
    for _ in range(500):
        job: dict[str, Any] = (await api.get(f"/api/jobs/{job_id}")).json()
        if job["status"] != "running":
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job {job_id} still runs")


async def test_a_backup_is_taken_listed_verified_and_drilled(tmp_path: Path) -> None:
    _database(tmp_path / "data" / "app.db")
    async with world(tmp_path, CONFIG) as seeded:
        api = client(seeded.state)
        assert (await api.get("/api/backups")).json()["backups"] == []
        taken = await api.post("/api/backups/app", headers=JSON)
        assert taken.status_code == 202, taken.text
        assert taken.json()["started_by"] == "api:ops" and taken.json()["kind"] == "backup"
        job = await _finished(seeded.state, taken.json()["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["ok"] and job["result"]["problems"] == []
        # The source's check ran through the pipeline: its result is stored.
        assert seeded.state.store.history("app-backup-fresh")
        listed = (await api.get("/api/backups", params={"source": "app"})).json()["backups"]
        assert [backup["id"] for backup in listed] == [job["result"]["id"]]
        assert listed[0]["intact"]

        verified = await api.post(f"/api/backups/{listed[0]['id']}/verify", json={"restore": True})
        assert verified.status_code == 202
        verdict = await _finished(seeded.state, verified.json()["id"])
        assert verdict["status"] == "succeeded" and verdict["result"]["restored"]

        drilled = await api.post("/api/drills/app", json={"rto": "10m"})
        assert drilled.status_code == 202, drilled.text
        report = await _finished(seeded.state, drilled.json()["id"])
        assert report["status"] == "succeeded" and report["result"]["passed"]
        assert report["result"]["rto_met"] is True


async def test_backup_requests_are_refused_with_the_reason(tmp_path: Path) -> None:
    _database(tmp_path / "data" / "app.db")
    async with world(tmp_path, CONFIG) as seeded:
        api = client(seeded.state)
        assert (await api.get("/api/backups", params={"source": "nope"})).status_code == 404
        assert (await api.post("/api/backups/nope", headers=JSON)).status_code == 404
        assert (await api.post("/api/drills/nope", headers=JSON)).status_code == 404
        unknown = await api.post("/api/backups/20260301T020000Z-a1b2c3/verify", headers=JSON)
        assert unknown.status_code == 404
        assert (await api.post("/api/backups/not-an-id/verify", headers=JSON)).status_code == 422
        bad_rto = await api.post("/api/drills/app", json={"rto": "soon"})
        assert bad_rto.status_code == 422 and bad_rto.json()["detail"][0]["loc"] == ["body", "rto"]
        first = await api.post("/api/backups/app", headers=JSON)
        second = await api.post("/api/backups/app", headers=JSON)
        assert first.status_code == 202 and second.status_code == 409
        await _finished(seeded.state, first.json()["id"])
        assert (await api.get("/api/jobs/999")).status_code == 404
        viewer = client_as(seeded.state, Role.VIEWER)
        assert (await viewer.get("/api/backups")).status_code == 200
        assert (await viewer.post("/api/backups/app", headers=JSON)).status_code == 403
        assert (await viewer.post("/api/drills/app", headers=JSON)).status_code == 403


async def test_a_stopping_daemon_waits_for_the_jobs_it_started(tmp_path: Path) -> None:
    _database(tmp_path / "data" / "app.db")
    async with world(tmp_path, CONFIG) as seeded:
        taken = await client(seeded.state).post("/api/backups/app", headers=JSON)
        assert taken.status_code == 202
        assert seeded.state.jobs.busy
        assert await seeded.state.jobs.drain(30) == []
        assert not seeded.state.jobs.busy
        assert seeded.state.jobs.get(taken.json()["id"]) is not None
