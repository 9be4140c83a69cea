"""Attacks on backups through the real CLI and a real repository on disk (issue #11):
damaged or forged backups are never counted, restores write only under the source's
paths and never through a link, and links in a files backup survive a restore."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import zstandard

from tests.e2e.conftest import Upkeep

SECRET = "backup-key-from-the-secret-store"
CONFIG = """\
targets:
  etc-backups: {{kind: backup, source: etc}}
checks:
  etc-fresh:
    target: etc-backups
    every: 1h
    crit: age_s > 1d or not last_attempt_ok
backups:
  repository: repo
{extra}
  sources:
{sources}
"""


def _config(
    tmp_path: Path, *, key: bool = False, retention: str = "", more: tuple[str, ...] = ()
) -> dict[str, str]:
    """Write the config: source ``etc`` (data/etc) and each of ``more`` (data/NAME/etc)."""
    extra = []
    if key:
        extra.append('  key: "${BACKUP_KEY}"')
    if retention:
        extra.append(f"  retention: {retention}")
    sources = ["    etc: {paths: [data/etc]}"]
    sources += [f"    {name}: {{paths: [data/{name}/etc]}}" for name in more]
    (tmp_path / "upkeep.yaml").write_text(
        CONFIG.format(extra="\n".join(extra), sources="\n".join(sources))
    )
    return {"BACKUP_KEY": SECRET} if key else {}


def _tree(etc: Path) -> Path:
    (etc / "nginx").mkdir(parents=True, exist_ok=True)
    (etc / "nginx" / "nginx.conf").write_text("worker_processes 2;\n")
    (etc / "app.conf").write_text("port = 80\n")
    return etc


def _create(upkeep: Upkeep, env: dict[str, str], *names: str) -> dict[str, dict[str, Any]]:
    """Back up the named sources (all without names); return each one's result."""
    created = upkeep("backup", "create", *names, "--json", env=env)
    assert created.returncode == 0, created.stdout + created.stderr
    return {result["source"]: result for result in json.loads(created.stdout)["results"]}


def _listed(upkeep: Upkeep, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = upkeep("backup", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return {row["id"]: row for row in json.loads(listed.stdout)["backups"]}


def _fresh(upkeep: Upkeep, env: dict[str, str]) -> tuple[int, dict[str, Any]]:
    checked = upkeep("check", "etc-fresh", "--json", env=env)
    (result,) = json.loads(checked.stdout)["results"]
    return checked.returncode, result


def _snapshot(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, a directory."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[name] = path.read_bytes()
        else:
            found[name] = "dir"
    return found


# --- 13: a backup is only what its files prove ---------------------------------------------


def _damage(backup: Path, how: str, tmp_path: Path) -> str:
    """Damage a backup directory; return what ``backup list`` must say about it."""
    data = backup / "data.zst"
    if how == "truncated":
        with open(data, "r+b") as handle:
            handle.truncate(10)
        return "data.zst is 10 bytes, the manifest says"
    if how == "deleted":
        data.unlink()
        return "data.zst is missing"
    if how == "linked":
        # A link to a file of exactly the right size: the size alone would pass.
        elsewhere = tmp_path / "elsewhere.zst"
        elsewhere.write_bytes(data.read_bytes())
        data.unlink()
        data.symlink_to(elsewhere)
        return "data.zst is a symbolic link"
    manifest = backup / "manifest.json"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(elsewhere)
    return "manifest.json is a symbolic link"


DAMAGES = ("deleted", "linked", "manifest-linked")


def test_a_damaged_backup_is_listed_damaged_alerts_and_is_never_kept_over_an_intact_one(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    _tree(tmp_path / "data" / "etc")
    for name in DAMAGES:
        _tree(tmp_path / "data" / name / "etc")
    env = _config(tmp_path, more=DAMAGES)
    first = _create(upkeep, env)  # one backup of every source
    second = _create(upkeep, env, "etc")["etc"]
    expected = {second["id"]: _damage(Path(second["path"]), "truncated", tmp_path)}
    for name in DAMAGES:
        expected[first[name]["id"]] = _damage(Path(first[name]["path"]), name, tmp_path)

    status, result = _fresh(upkeep, env)
    assert status == 2 and result["status"] == "critical", result
    assert f"newest backup {second['id']} is damaged" in result["message"]
    assert result["metrics"]["backups"] == 1 and result["metrics"]["damaged"] == 1
    assert result["metrics"]["newest_intact"] is False

    rows = _listed(upkeep, env)
    assert rows[first["etc"]["id"]]["intact"] is True
    for backup_id, said in expected.items():
        assert rows[backup_id]["intact"] is False and said in rows[backup_id]["problem"]

    drill = json.loads(upkeep("drill", "etc", "--json", env=env).stdout)
    assert drill["backup_id"] == first["etc"]["id"], drill
    assert any(second["id"] in note for note in drill["notes"])
    restore = upkeep("backup", "restore", second["id"], "--yes", env=env)
    assert restore.returncode == 1 and "is damaged" in restore.stderr

    # Retention keeping one backup keeps the intact one, never the damaged one in its place.
    _config(tmp_path, retention="{keep_last: 1}", more=DAMAGES)
    pruned = upkeep("backup", "prune", "etc", env=env)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"keep   etc {first['etc']['id']}" in pruned.stdout
    assert _listed(upkeep, env)[first["etc"]["id"]]["intact"] is True


def test_a_forged_encrypted_manifest_is_not_a_backup(upkeep: Upkeep, tmp_path: Path) -> None:
    _tree(tmp_path / "data" / "etc")
    env = _config(tmp_path, key=True)
    backup = _create(upkeep, env)["etc"]
    # Someone without the key edits the manifest (a later time, so it looks fresh; the
    # data's sha256 re-computed, as if they had replaced the data).
    path = Path(backup["path"]) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["started_at"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    data = (Path(backup["path"]) / "data.zst.enc").read_bytes()
    manifest["data"]["stored_sha256"] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(manifest))

    status, result = _fresh(upkeep, env)
    assert status == 2 and "fails authentication" in result["message"], result
    row = _listed(upkeep, env)[backup["id"]]
    assert row["intact"] is False and "manifest.json fails authentication" in row["problem"]
    verified = upkeep("backup", "verify", backup["id"], env=env)
    assert verified.returncode == 1 and "fails authentication" in verified.stdout
    restore = upkeep("backup", "restore", backup["id"], "--yes", env=env)
    assert restore.returncode == 1 and "is damaged" in restore.stderr


# --- 14: a restore writes only under the source's paths ------------------------------------


def _forge(backup: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
    """Rewrite an unencrypted files backup as someone who can write the repository: a new
    archive of ``members``, and a manifest whose sizes and sha256 match it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for header, content in members:
            archive.addfile(header, io.BytesIO(content) if header.isreg() else None)
    raw = buffer.getvalue()
    stored = zstandard.ZstdCompressor().compress(raw)
    (backup / "data.zst").write_bytes(stored)
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["data"].update(
        raw_bytes=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        stored_bytes=len(stored),
        stored_sha256=hashlib.sha256(stored).hexdigest(),
    )
    manifest["files"] = {
        header.name: {"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        for header, content in members
        if header.isreg()
    }
    (backup / "manifest.json").write_text(json.dumps(manifest))


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    header = tarfile.TarInfo(name)
    header.size, header.mode = len(content), 0o644
    return header, content


def _directory(name: str) -> tuple[tarfile.TarInfo, bytes]:
    header = tarfile.TarInfo(name)
    header.type, header.mode = tarfile.DIRTYPE, 0o755
    return header, b""


ATTACKS = ("outside", "dotdot", "absolute", "planted-link", "path-linked")


def test_a_restore_never_writes_outside_the_sources_paths(upkeep: Upkeep, tmp_path: Path) -> None:
    trees = {name: _tree(tmp_path / "data" / name / "etc") for name in ATTACKS}
    _tree(tmp_path / "data" / "etc")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched\n")
    env = _config(tmp_path, more=ATTACKS)
    created = _create(upkeep, env)
    payload = b"planted by whoever can write the repository\n"
    for how, etc in trees.items():
        backup, prefix = Path(created[how]["path"]), str(etc).lstrip("/")
        if how == "outside":
            _forge(backup, [_file(str(outside / "planted").lstrip("/"), payload)])
        elif how == "dotdot":
            _forge(backup, [_file(f"{prefix}/../../../outside/planted", payload)])
        elif how == "absolute":
            _forge(backup, [_file(str(outside / "planted"), payload)])
        elif how == "planted-link":
            # A member under a configured path, whose directory someone replaced by a link.
            _forge(
                backup, [_directory(f"{prefix}/nginx"), _file(f"{prefix}/nginx/planted", payload)]
            )
            (etc / "nginx" / "nginx.conf").unlink()
            (etc / "nginx").rmdir()
            (etc / "nginx").symlink_to(outside)
        else:
            # The configured path itself replaced by a link (/etc/nginx -> /): a genuine
            # backup, restored over it.
            etc.rename(etc.with_name("etc-moved"))
            etc.symlink_to(outside)
    before = _snapshot(outside)
    count = len(_listed(upkeep, env))

    for how in ATTACKS:
        restore = upkeep("backup", "restore", created[how]["id"], "--yes", env=env)
        assert restore.returncode == 1, (how, restore.stdout + restore.stderr)
        assert "refused" in restore.stderr, (how, restore.stderr)
        assert _snapshot(outside) == before, how
    assert not list(tmp_path.rglob("planted"))
    # Refused before anything was written: not even a safety backup was taken.
    assert len(_listed(upkeep, env)) == count

    # An unencrypted backup is only as trustworthy as the repository: once others can
    # write it, a genuine one is not restored either.
    repository = tmp_path / "repo"
    assert stat.S_IMODE(repository.stat().st_mode) == 0o700
    repository.chmod(0o777)
    listed = upkeep("backup", "list", env=env)
    assert "warning:" in listed.stdout and "writable by group or others" in listed.stdout
    restore = upkeep("backup", "restore", created["etc"]["id"], "--yes", env=env)
    assert restore.returncode == 1 and "could have forged it" in restore.stderr


# --- 15: links are backed up and restored as links -----------------------------------------


def test_links_and_modes_survive_backup_verify_drill_and_restore(
    upkeep: Upkeep, tmp_path: Path
) -> None:
    etc = _tree(tmp_path / "data" / "etc")
    available = etc / "nginx" / "sites-available"
    enabled = etc / "nginx" / "sites-enabled"
    available.mkdir()
    enabled.mkdir()
    (available / "app").write_text("server { listen 80; }\n")
    (enabled / "app").symlink_to(available / "app")  # absolute, as nginx sites are linked
    (enabled / "relative").symlink_to("../sites-available/app")
    (enabled / "dangling").symlink_to("/nonexistent/upkeep/site")
    secret = etc / "secret.key"
    secret.write_text("private\n")
    secret.chmod(0o600)
    os.chown(secret, 4321, 4321)
    program = etc / "helper"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o4755)
    env = _config(tmp_path)
    backup = _create(upkeep, env)["etc"]

    verified = upkeep("backup", "verify", backup["id"], "--restore", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    drill = upkeep("drill", "etc", env=env)
    assert drill.returncode == 0 and "PASSED" in drill.stdout, drill.stdout + drill.stderr

    # Things go wrong: a link is lost, another now points elsewhere, the key is rewritten.
    (enabled / "app").unlink()
    (enabled / "relative").unlink()
    (enabled / "relative").symlink_to("/etc/passwd")
    secret.write_text("changed\n")
    secret.chmod(0o644)
    os.chown(secret, 0, 0)

    restore = upkeep("backup", "restore", backup["id"], "--yes", "--json", env=env)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    report = json.loads(restore.stdout)
    assert report["safety_backup"] and "set-uid/set-gid bits not restored" in report["message"]
    assert os.readlink(enabled / "app") == str(available / "app")
    assert os.readlink(enabled / "relative") == "../sites-available/app"
    assert os.readlink(enabled / "dangling") == "/nonexistent/upkeep/site"
    assert secret.read_text() == "private\n"
    info = secret.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and (info.st_uid, info.st_gid) == (4321, 4321)
    assert stat.S_IMODE(program.stat().st_mode) == 0o755
    assert (etc / "app.conf").read_text() == "port = 80\n"
