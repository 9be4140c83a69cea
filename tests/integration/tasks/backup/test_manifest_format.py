"""The manifest, format 1: repositories written before it became a model still read, what
is written now is the same format, and what is not a manifest is reported as before.

``tests/fixtures/backup-format-1`` holds two backups made by ``upkeep backup create``
before the manifest was a model: ``sealed`` (a SQLite source, encrypted, the manifest
authenticated with ``KEY``) and ``plain`` (a files source, no key).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from upkeep.store.repository import (
    MANIFEST,
    FileFacts,
    Manifest,
    Repository,
    read_raw,
    stored_sha256,
)

FIXTURES = Path(__file__).parents[3] / "fixtures" / "backup-format-1"
KEY = "format-1-fixture-key"
SEALED_ID = "20261205T074836Z-937b25"
PLAIN_ID = "20261205T074838Z-402213"
MADE_IN = "/tmp/fixgen"  # noqa: S108 - where the fixtures were made: only text in them now


def copied(tmp_path: Path, name: str) -> Path:
    """Copy a fixture repository under tmp_path, private as upkeep makes it; return it."""
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root)
    for place in [root, *root.rglob("*")]:
        os.chmod(place, 0o700 if place.is_dir() else 0o600)
    return root


def manifest_path(root: Path, source: str, backup_id: str) -> Path:
    return root / source / backup_id / MANIFEST


def test_a_sealed_encrypted_backup_written_before_reads_intact_and_decodes(
    tmp_path: Path,
) -> None:
    repository = Repository(copied(tmp_path, "sealed"), KEY)
    (backup,) = repository.inventory()
    assert backup.intact and backup.authenticated, backup.problem
    manifest = backup.intact_manifest
    assert (manifest.format, manifest.id, manifest.source) == (1, SEALED_ID, "app")
    assert manifest.started_at == datetime(2026, 12, 5, 7, 48, 36, 524934, tzinfo=UTC)
    assert backup.taken_at == manifest.started_at
    assert manifest.source_details.kind == "sqlite"
    assert manifest.source_details.detail("path") == f"{MADE_IN}/data/app.db"
    assert manifest.row_counts == {"orders": 5}
    assert manifest.tool_versions == {"sqlite": "3.40.1"}
    assert manifest.files is None and manifest.label is None
    assert manifest.data.encrypted and backup.data_name == "data.zst.enc"
    found, _info = stored_sha256(repository, backup)
    assert found == manifest.data.stored_sha256
    raw = b"".join(read_raw(repository, backup, KEY))
    assert len(raw) == manifest.data.raw_bytes
    assert hashlib.sha256(raw).hexdigest() == manifest.data.raw_sha256
    # The same backup with another key: what it was before, a forgery.
    (forged,) = Repository(repository.root, "another-key").inventory()
    assert forged.problem is not None and "manifest.json fails authentication" in forged.problem


def test_a_plain_files_backup_written_before_reads_intact(tmp_path: Path) -> None:
    repository = Repository(copied(tmp_path, "plain"))
    (backup,) = repository.inventory()
    assert backup.intact and not backup.authenticated, backup.problem
    manifest = backup.intact_manifest
    assert manifest.source_details.kind == "files"
    assert manifest.source_details.detail("paths") == [f"{MADE_IN}/data/etc"]
    assert manifest.files == {
        "tmp/fixgen/data/etc/app.conf": FileFacts(
            size=10, sha256="01ea9bc79534a121a5064df3ce29bd12954dd9356c182bbee81013a15185ee1c"
        )
    }
    assert manifest.skipped == [] and manifest.row_counts is None
    assert not manifest.data.encrypted and backup.data_name == "data.zst"
    raw = b"".join(read_raw(repository, backup, None))
    assert hashlib.sha256(raw).hexdigest() == manifest.data.raw_sha256


@pytest.mark.parametrize("name", ["sealed", "plain"])
def test_a_manifest_reads_back_as_the_document_it_was_written_as(name: str) -> None:
    (path,) = (FIXTURES / name).glob(f"*/*/{MANIFEST}")
    document = json.loads(path.read_text())
    manifest = Manifest.read(document)
    assert manifest is not None
    # Everything but the MAC, the same keys in the same order, the same values.
    body = {key: value for key, value in document.items() if key != "authentication"}
    assert json.dumps(manifest.document()) == json.dumps(body)


def test_what_is_written_now_is_format_1_as_before(tmp_path: Path) -> None:
    repository = Repository(tmp_path / "repo", KEY)
    written = repository.write(
        "app",
        [b"some rows"],
        details={"source_details": {"kind": "sqlite", "path": "/srv/app.db"}},
        secret=KEY,
        finish=lambda: {"row_counts": {"orders": 5}, "tool_versions": {"sqlite": "3.40.1"}},
    )
    document = json.loads(manifest_path(repository.root, "app", written.id).read_text())
    (fixture,) = (FIXTURES / "sealed").glob(f"*/*/{MANIFEST}")
    before = json.loads(fixture.read_text())
    assert list(document) == list(before)
    assert list(document["data"]) == list(before["data"])
    assert document["format"] == 1 and document["started_at"].endswith("+00:00")
    (listed,) = repository.inventory()
    assert listed.intact and listed.authenticated and listed.manifest == written.manifest


def rewrite(path: Path, change: Any) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda document: document.pop("data"), "manifest.json is not a manifest"),
        (
            lambda document: document["data"].update(stored_bytes="203"),
            "manifest.json is not a manifest",
        ),
        (
            lambda document: document.update(started_at="2026-12-05T07:48:38"),
            "manifest.json is not a manifest",
        ),
        (lambda document: document.update(format=2), "manifest.json is not a manifest"),
        (lambda document: document.update(id="20261205T074838Z-000000"), "manifest.json describes"),
        (
            lambda document: document["data"].update(file="../data.zst"),
            "manifest.json names '../data.zst' as data, not data.zst",
        ),
        (
            lambda document: document["data"].update(stored_bytes=204),
            "data.zst is 203 bytes, the manifest says 204",
        ),
    ],
)
def test_what_is_not_a_manifest_of_this_backup_is_damaged_as_before(
    tmp_path: Path, change: Any, said: str
) -> None:
    root = copied(tmp_path, "plain")
    rewrite(manifest_path(root, "etc", PLAIN_ID), change)
    (backup,) = Repository(root).inventory()
    assert not backup.intact and backup.problem is not None and said in backup.problem
    assert Repository(root).backups() == []


def test_a_manifest_that_is_not_json_or_not_an_object_is_not_a_manifest(tmp_path: Path) -> None:
    root = copied(tmp_path, "plain")
    path = manifest_path(root, "etc", PLAIN_ID)
    for text in ("{not json", "[1, 2]"):
        path.write_text(text)
        (backup,) = Repository(root).inventory()
        assert backup.problem == "manifest.json is not a manifest" and backup.manifest is None
