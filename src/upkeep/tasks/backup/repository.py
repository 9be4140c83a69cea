"""The backup repository: one directory per backup, complete or absent.

Layout::

    <repository>/<source>/<id>/data.zst[.enc]   the dump, zstd-compressed (then encrypted)
    <repository>/<source>/<id>/manifest.json    written last: its presence makes a backup
    <repository>/<source>/<id>/verified.json    the last verification's result
    <repository>/<source>/.upkeep-tmp-<id>/     a backup being written (never listed)

A backup is written into a temporary directory: the data streams through zstd (several
threads) and, with a key, chunked AES-GCM; the file is fsynced, the manifest (sizes,
sha256 of the raw dump and of the stored file, source details, tool versions, row counts,
timings) written and fsynced, and only then is the directory renamed to its id and the
parent fsynced. A kill, a full disk or a crash at any point leaves a temporary directory,
which the next write removes; nothing incomplete is ever listed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import zstandard

from upkeep.tasks.backup import crypto
from upkeep.tasks.logs.rotation import fsync_dir

ZSTD_LEVEL = 3
"""zstd level: level 3 compresses a SQL dump about as well as gzip -6 at several times the
speed (``benchmarks/backup.py``)."""
ZSTD_THREADS = max(1, min(4, os.cpu_count() or 1))
CHUNK_BYTES = 1 << 20
TEMP_PREFIX = ".upkeep-tmp-"
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
ID_SHAPE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
SOURCE_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class RepositoryError(Exception):
    """The repository could not be written or read; the message says what and where."""


@dataclass(frozen=True)
class Backup:
    """A complete backup as its manifest describes it."""

    source: str
    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def taken_at(self) -> datetime:
        """Return when the dump started (UTC)."""
        return datetime.fromisoformat(self.manifest["started_at"])

    @property
    def data_path(self) -> Path:
        """Return the stored data file."""
        return self.path / str(self.manifest["data"]["file"])

    def verification(self) -> dict[str, Any] | None:
        """Return the last verification's record, or None if never verified."""
        try:
            document: dict[str, Any] = json.loads((self.path / VERIFIED).read_text())
        except (OSError, ValueError):
            return None
        return document


def new_id(moment: datetime) -> str:
    """Return a sortable, unique backup id for ``moment``."""
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


class Repository:
    """A local backup repository rooted at a directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _source_dir(self, source: str) -> Path:
        if not SOURCE_SHAPE.match(source):
            raise RepositoryError(f"not a usable source name: {source!r}")
        return self.root / source

    def backups(self, source: str | None = None) -> list[Backup]:
        """Return complete backups (of one source, or all), oldest first; directories
        without a readable manifest are not backups and are left out."""
        if not self.root.is_dir():
            return []
        sources = (
            [source]
            if source
            else sorted(
                entry.name
                for entry in os.scandir(self.root)
                if entry.is_dir(follow_symlinks=False) and SOURCE_SHAPE.match(entry.name)
            )
        )
        found: list[Backup] = []
        for name in sources:
            directory = self._source_dir(name)
            if not directory.is_dir():
                continue
            for entry in sorted(os.scandir(directory), key=lambda item: item.name):
                if not ID_SHAPE.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    manifest = json.loads((Path(entry.path) / MANIFEST).read_text())
                    datetime.fromisoformat(manifest["started_at"])
                    int(manifest["data"]["raw_bytes"]), int(manifest["data"]["stored_bytes"])
                    str(manifest["data"]["file"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # no manifest, or not one of ours: not a backup
                found.append(Backup(name, entry.name, Path(entry.path), manifest))
        return sorted(found, key=lambda backup: (backup.taken_at, backup.id))

    def get(self, backup_id: str) -> Backup:
        """Return the backup with that id; raise RepositoryError if there is none."""
        for backup in self.backups():
            if backup.id == backup_id:
                return backup
        raise RepositoryError(f"no backup {backup_id} in {self.root}")

    def clean_temporaries(self, source: str) -> list[Path]:
        """Remove what interrupted writes of ``source`` left; return what was removed."""
        directory = self._source_dir(source)
        removed = []
        if directory.is_dir():
            for entry in os.scandir(directory):
                if entry.name.startswith(TEMP_PREFIX):
                    shutil.rmtree(entry.path, ignore_errors=True)
                    removed.append(Path(entry.path))
        return removed

    def write(
        self,
        source: str,
        data: Iterable[bytes],
        *,
        details: dict[str, Any],
        secret: str | None,
        progress: Callable[[int], None] | None = None,
        started_at: datetime | None = None,
        finish: Callable[[], dict[str, Any]] | None = None,
    ) -> Backup:
        """Stream ``data`` into a new backup of ``source`` and return it, complete.

        ``details`` go into the manifest; ``finish`` is called once the data is written and
        returns more manifest fields (row counts, tool versions, the source's own checks);
        an exception from it, from ``data`` or from the disk removes the partial backup and
        propagates. ``progress`` is called with raw bytes as they pass.
        """
        started_at = started_at or datetime.now(UTC)
        directory = self._source_dir(source)
        directory.mkdir(parents=True, exist_ok=True)
        self.clean_temporaries(source)
        backup_id = new_id(started_at)
        temporary = directory / f"{TEMP_PREFIX}{backup_id}"
        temporary.mkdir()
        data_name = "data.zst" + (".enc" if secret else "")
        began = time.monotonic()
        try:
            raw_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
            raw_bytes = 0

            def counted() -> Iterator[bytes]:
                nonlocal raw_bytes
                for piece in data:
                    raw_hash.update(piece)
                    raw_bytes += len(piece)
                    if progress is not None:
                        progress(len(piece))
                    yield piece

            stored = _compressed(counted())
            if secret:
                stored = crypto.encrypt(stored, secret)
            stored_bytes = 0
            with open(temporary / data_name, "wb") as handle:
                for piece in stored:
                    handle.write(piece)
                    stored_hash.update(piece)
                    stored_bytes += len(piece)
                handle.flush()
                os.fsync(handle.fileno())
            dumped_s = time.monotonic() - began
            extra = finish() if finish is not None else {}
            manifest = {
                "format": 1,
                "id": backup_id,
                "source": source,
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(UTC).isoformat(),
                "duration_s": round(time.monotonic() - began, 3),
                "dump_s": round(dumped_s, 3),
                **details,
                **extra,
                "data": {
                    "file": data_name,
                    "compression": f"zstd-{ZSTD_LEVEL}",
                    "encrypted": bool(secret),
                    "raw_bytes": raw_bytes,
                    "raw_sha256": raw_hash.hexdigest(),
                    "stored_bytes": stored_bytes,
                    "stored_sha256": stored_hash.hexdigest(),
                },
            }
            _write_durably(temporary / MANIFEST, json.dumps(manifest, indent=2).encode())
            fsync_dir(temporary)
            final = directory / backup_id
            temporary.rename(final)
            fsync_dir(directory)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        return Backup(source, backup_id, final, manifest)

    def remove(self, backup: Backup) -> None:
        """Delete a backup: its manifest first, so a crash halfway leaves no backup that
        looks complete, then the rest."""
        (backup.path / MANIFEST).unlink(missing_ok=True)
        fsync_dir(backup.path)
        shutil.rmtree(backup.path)
        fsync_dir(backup.path.parent)


def record_verification(backup: Backup, result: dict[str, Any]) -> None:
    """Store the last verification's result beside the backup (atomically)."""
    temporary = backup.path / f"{TEMP_PREFIX}{VERIFIED}"
    _write_durably(temporary, json.dumps(result, indent=2).encode())
    temporary.replace(backup.path / VERIFIED)
    fsync_dir(backup.path)


def stored_sha256(backup: Backup) -> str:
    """Return the sha256 of the stored data file, read in full."""
    digest = hashlib.sha256()
    with open(backup.data_path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def read_raw(backup: Backup, secret: str | None) -> Iterator[bytes]:
    """Yield the backup's raw dump: decrypted (with ``secret``) and decompressed. Raise
    RepositoryError if it is encrypted and no secret is given, crypto.DecryptionError or
    zstandard.ZstdError if the data is damaged."""
    if backup.manifest["data"].get("encrypted") and not secret:
        raise RepositoryError(f"backup {backup.id} is encrypted and no key is configured")
    with open(backup.data_path, "rb") as handle:
        stored: Iterator[bytes] = _pieces(handle)
        if backup.manifest["data"].get("encrypted"):
            assert secret is not None  # noqa: S101 - checked above
            stored = crypto.decrypt(stored, secret)
        yield from _decompressed(stored)


def _pieces(handle: IO[bytes]) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk


def _compressed(data: Iterable[bytes]) -> Iterator[bytes]:
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS).compressobj()
    for piece in data:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


def _decompressed(stored: Iterable[bytes]) -> Iterator[bytes]:
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for piece in stored:
        if piece:
            yield decompressor.decompress(piece)
    if not decompressor.eof:
        raise zstandard.ZstdError("the compressed data ends early")


def _write_durably(path: Path, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def scratch_directory(base: Path, label: str) -> Iterator[Path]:
    """Yield a fresh directory under ``base`` for a restore; remove it afterwards."""
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"{TEMP_PREFIX}{label}-{secrets.token_hex(4)}"
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
