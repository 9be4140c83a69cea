"""The backup repository: one directory per backup, and a backup is only what the files on
disk prove.

Layout (every directory 0700, every file 0600, made by upkeep)::

    <repository>/<source>/<id>/data.zst[.enc]   the dump, zstd-compressed (then encrypted)
    <repository>/<source>/<id>/manifest.json    written last: its presence makes a backup
    <repository>/<source>/<id>/verified.json    the last verification's result
    <repository>/<source>/last-attempt.json     the last backup attempt
    <repository>/<source>/last-drill.json       the last restore drill
    <repository>/<source>/removed.json          ids retention removed here whose copies in
                                                the second destination may remain
    <repository>/<source>/.upkeep-tmp-<id>.<random>/   a backup being written (never listed)

A backup is written into a temporary directory with an unguessable name: the data streams
through zstd (several threads) and, with a key, chunked AES-GCM; the file is fsynced, the
manifest (sizes, sha256 of the raw dump and of the stored file, source details, tool
versions, row counts, timings) written and fsynced, and only then is the directory renamed
to its id (never over anything) and the parent fsynced. A kill, a full disk or a crash at
any point leaves a temporary directory, which the next write removes; nothing incomplete
is ever listed.

Reading trusts nothing but the files: every listing (``inventory``) checks, without
following any link, that the backup directory is a directory, that ``manifest.json`` is a
regular file holding a manifest of this very source and id, that it is authenticated with
the key when there is one (HMAC-SHA256, ``crypto.seal``), and that the data file is a
regular file of exactly the manifest's ``stored_bytes``. A backup failing any of that is
listed as damaged with the reason, and ``backups()`` (what freshness, drills, copies and
retention count) leaves it out. A verification counts only if it is authenticated, names
this backup and its stored sha256, and the data file has not changed (inode, size, ctime)
since. Re-hashing everything stays ``backup verify``'s.

Without a key nothing can be authenticated: anyone who can write the repository can forge
a backup, so it must be upkeep's alone (``exposure`` says when it is not, and a restore of
an unauthenticated backup refuses then).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import zstandard
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
)

from upkeep.io.safefs import (
    STATE_DIR_MODE,
    TEMP_PREFIX,
    Directory,
    UnsafeFileError,
    rename_noreplace,
    require_private,
)
from upkeep.store import crypto

ZSTD_LEVEL = 3
"""zstd level: level 3 compresses a SQL dump about as well as gzip -6 at several times the
speed (``benchmarks/backup.py``)."""
ZSTD_THREADS = max(1, min(4, os.cpu_count() or 1))
CHUNK_BYTES = 1 << 20
MANIFEST = "manifest.json"
VERIFIED = "verified.json"
DATA_NAMES = {False: "data.zst", True: "data.zst.enc"}
"""The data file's name, by whether it is encrypted: a manifest cannot point elsewhere."""
MANIFEST_LIMIT = 64 << 20
"""A manifest larger than this is not one of ours (a files backup of 100 000 files
records about 15 MB)."""
RECORD_LIMIT = 1 << 20
STALE_TEMPORARY_S = 3600.0
"""A record's temporary file older than this was left by a crash and is removed."""
ID_SHAPE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
SOURCE_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class RepositoryError(Exception):
    """The repository could not be written or read; the message says what and where."""


MANIFEST_FORMAT = 1
"""The manifest format this upkeep writes and reads (``format`` in every manifest)."""


def _aware_time(value: Any) -> Any:
    """Read a manifest time as it is written: ISO 8601 with its offset; a time without one
    is refused (a manifest's times are UTC and say so)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("a manifest time must carry its UTC offset")
    return value


AwareTime = Annotated[datetime, BeforeValidator(_aware_time)]


class _ManifestPart(BaseModel):
    """A part of a manifest: exact types (no coercion), unknown keys refused, read-only."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ManifestData(_ManifestPart):
    """The data file a manifest describes."""

    file: str
    """``data.zst``, or ``data.zst.enc`` when encrypted (``DATA_NAMES``)."""
    compression: str
    encrypted: bool
    raw_bytes: int = Field(ge=0)
    """Size of the dump as the source produced it."""
    raw_sha256: str
    stored_bytes: int = Field(ge=0)
    """Size of the file as stored (compressed, then encrypted)."""
    stored_sha256: str


class SourceDetails(BaseModel):
    """What a manifest says about its source: its ``kind`` (a restore goes only to a source
    of the same kind), then whatever that kind records (host, database, paths, dump
    format...), which the source itself reads back (``detail``)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    kind: str

    def detail(self, name: str) -> Any:
        """Given the name of a kind's own detail, return it, or None if it was not recorded."""
        return (self.model_extra or {}).get(name)


class FileFacts(_ManifestPart):
    """A regular file in a files backup's archive."""

    size: int = Field(ge=0)
    sha256: str


class SkippedPath(_ManifestPart):
    """What a files backup left out, and why (another mount, a link, a FIFO...)."""

    path: str
    reason: str


class Manifest(_ManifestPart):
    """A backup's manifest (``manifest.json``), format 1: written last, so its presence
    makes a backup; what every check of the backup is measured against.

    The fields after ``source_details`` are the source's own (``finish`` of its dump):
    a database's ``row_counts`` and ``tool_versions``, a files backup's ``files`` and
    ``skipped``, upkeep's own ``files`` and ``store_row_counts``.
    """

    format: Literal[1]
    id: str
    source: str
    started_at: AwareTime
    finished_at: AwareTime
    duration_s: float
    dump_s: float
    source_details: SourceDetails
    label: str | None = None
    """Why this backup was taken, when not by the schedule (``before restoring …``)."""
    row_counts: dict[str, int] | None = None
    tool_versions: dict[str, str] | None = None
    files: dict[str, FileFacts] | None = None
    skipped: list[SkippedPath] | None = None
    store_row_counts: dict[str, int] | None = None
    data: ManifestData

    @field_serializer("started_at", "finished_at")
    def _iso(self, value: datetime) -> str:
        # As format 1 has always written them (``+00:00``, where pydantic writes ``Z``).
        return value.isoformat()

    @classmethod
    def read(cls, document: dict[str, Any]) -> Manifest | None:
        """Given a manifest as JSON data (its ``authentication`` field aside), return it,
        or None if it is not a manifest of this format."""
        body = crypto.unsealed_unchecked(document)
        try:
            return cls.model_validate(body)
        except ValidationError:
            return None

    def document(self) -> dict[str, Any]:
        """Return the manifest as JSON data, as it is written: only the fields it was made
        with, in the order of format 1."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass(frozen=True)
class Backup:
    """A backup directory as the files on disk show it: intact (``problem`` is None) or
    damaged, with why."""

    source: str
    id: str
    path: Path
    manifest: Manifest | None
    """The manifest (authenticated when the repository has a key); None if there is none
    or it is not one. A damaged backup's manifest is not to be believed."""
    problem: str | None = None
    """Why this is not a usable backup, or None if it is intact."""
    verified: dict[str, Any] | None = None
    """The last verification, if it is valid for the data file as it is now."""
    authenticated: bool = False
    """Whether the manifest was authenticated with the key."""

    @property
    def intact(self) -> bool:
        """Return whether every cheap check passed."""
        return self.problem is None

    @property
    def intact_manifest(self) -> Manifest:
        """Return the manifest of an intact backup: what its files were checked against.
        Raise RepositoryError if the backup is damaged (its manifest is not believed)."""
        if self.problem is not None or self.manifest is None:
            raise RepositoryError(f"backup {self.id} is damaged: {self.problem}")
        return self.manifest

    @property
    def taken_at(self) -> datetime:
        """Return when the dump started (UTC): the manifest's time if intact, else the
        time in the id (a damaged backup's own claims are not believed), refined by its
        manifest's time only where that falls within the id's second, so two backups of one
        second keep their order whichever of them is damaged."""
        if self.intact:
            return self.intact_manifest.started_at
        second = id_time(self.id)
        claimed = self.manifest.started_at if self.manifest is not None else None
        if claimed is not None and second <= claimed < second + timedelta(seconds=1):
            return claimed
        return second

    @property
    def data_name(self) -> str:
        """Return the data file's name."""
        return DATA_NAMES[self.manifest is not None and self.manifest.data.encrypted]

    @property
    def data_path(self) -> Path:
        """Return the stored data file."""
        return self.path / self.data_name

    def verification(self) -> dict[str, Any] | None:
        """Return the last verification's record if it is valid for the data as it is
        now, else None."""
        return self.verified


def new_id(moment: datetime) -> str:
    """Return a sortable, unique backup id for ``moment``."""
    return f"{moment.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def id_time(backup_id: str) -> datetime:
    """Return the time a backup id was made for."""
    return datetime.strptime(backup_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def context_of(kind: str, source: str, backup_id: str | None = None) -> str:
    """Return the place a sealed document belongs to (part of what its MAC covers)."""
    return f"{kind} of {source}/{backup_id}" if backup_id else f"{kind} of {source}"


def _data_identity(info: os.stat_result) -> dict[str, int]:
    """Return what says a data file is unchanged: its inode, size and ctime (which no one
    but the kernel sets)."""
    return {"inode": info.st_ino, "size": info.st_size, "ctime_ns": info.st_ctime_ns}


class Repository:
    """A local backup repository rooted at a directory, with the key that authenticates
    its manifests and records (None: nothing is authenticated)."""

    def __init__(self, root: Path, key: str | None = None) -> None:
        self.root = root
        self.key = key

    # --- opening ---------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the repository (0700) if it is missing."""
        root = self._open_root(create=True)
        if root is not None:
            root.close()

    def _check_source(self, source: str) -> None:
        if not SOURCE_SHAPE.match(source):
            raise RepositoryError(f"not a usable source name: {source!r}")

    def _open_root(self, *, create: bool) -> Directory | None:
        """Open the repository (trusted as configured), creating it 0700 with ``create``;
        return None if it does not exist."""
        try:
            return Directory.open(self.root, create=create, mode=STATE_DIR_MODE)
        except FileNotFoundError:
            return None
        except OSError as error:
            raise RepositoryError(f"cannot open the repository {self.root}: {error}") from None

    @contextlib.contextmanager
    def _source_dir(self, source: str, *, create: bool) -> Iterator[Directory | None]:
        """Yield the source's directory (never through a link), or None if missing."""
        self._check_source(source)
        root = self._open_root(create=create)
        if root is None:
            yield None
            return
        with root:
            try:
                directory = root.child(source, create=create)
            except FileNotFoundError:
                yield None
                return
            except OSError as error:
                raise RepositoryError(f"{self.root / source}: {error.strerror}") from None
            with directory:
                yield directory

    # --- listing ---------------------------------------------------------------------------

    def inventory(self, source: str | None = None) -> list[Backup]:
        """Return every backup directory (of one source, or all), oldest first, each intact
        or damaged with its reason. Temporary directories and names that are not backup ids
        are left out."""
        root = self._open_root(create=False)
        if root is None:
            return []
        found: list[Backup] = []
        with root:
            if source is not None:
                self._check_source(source)
                names = [source]
            else:
                names = [
                    entry.name
                    for entry in root.entries()
                    if entry.is_dir and SOURCE_SHAPE.match(entry.name)
                ]
            for name in names:
                try:
                    directory = root.child(name)
                except (FileNotFoundError, UnsafeFileError, NotADirectoryError):
                    continue
                with directory:
                    for entry in directory.entries():
                        if ID_SHAPE.match(entry.name):
                            found.append(self._examine(directory, name, entry.name, entry.info))
        return sorted(found, key=lambda backup: (backup.taken_at, backup.id))

    def backups(self, source: str | None = None) -> list[Backup]:
        """Return the intact backups (of one source, or all), oldest first: what can be
        counted on. Damaged ones are in ``inventory``."""
        return [backup for backup in self.inventory(source) if backup.intact]

    def get(self, backup_id: str) -> Backup:
        """Return the backup with that id, intact or damaged; raise RepositoryError if no
        directory has that id."""
        for backup in self.inventory():
            if backup.id == backup_id:
                return backup
        raise RepositoryError(f"no backup {backup_id} in {self.root}")

    def _examine(
        self, source_dir: Directory, source: str, backup_id: str, info: os.stat_result
    ) -> Backup:
        """Return what one backup directory is, from its files alone."""
        path = self.root / source / backup_id

        def damaged(problem: str, manifest: Manifest | None = None) -> Backup:
            return Backup(source, backup_id, path, manifest, problem)

        if not stat.S_ISDIR(info.st_mode):
            kind = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
            return damaged(f"{backup_id} is {kind}")
        try:
            directory = source_dir.child(backup_id)
        except (OSError, ValueError) as error:
            return damaged(f"{backup_id} cannot be opened: {getattr(error, 'strerror', error)}")
        with directory:
            try:
                text = directory.read_bytes(MANIFEST, limit=MANIFEST_LIMIT)
            except UnsafeFileError as error:
                return damaged(f"{MANIFEST} is {error.strerror}, not followed")
            except ValueError:
                return damaged(f"{MANIFEST} is larger than any manifest")
            except OSError as error:
                return damaged(f"{MANIFEST} cannot be read: {error.strerror}")
            if text is None:
                return damaged(f"no {MANIFEST} (an interrupted removal, or tampering)")
            document = _json_object(text)
            manifest = Manifest.read(document) if document is not None else None
            if document is None or manifest is None:
                return damaged(f"{MANIFEST} is not a manifest")
            authenticated = False
            if self.key is not None:
                try:
                    # The MAC covers the document as written, not as the model reads it.
                    crypto.unseal(
                        document, self.key, context=context_of("manifest", source, backup_id)
                    )
                except crypto.AuthenticationError as error:
                    return damaged(
                        f"{MANIFEST} fails authentication ({error}): forged, edited, moved "
                        "from another backup, or written with another key"
                    )
                authenticated = True
            if manifest.id != backup_id or manifest.source != source:
                return damaged(
                    f"{MANIFEST} describes {manifest.source}/{manifest.id}, "
                    f"not {source}/{backup_id}",
                    manifest,
                )
            data = manifest.data
            name = DATA_NAMES[data.encrypted]
            if data.file != name:
                return damaged(f"{MANIFEST} names {data.file!r} as data, not {name}")
            found = directory.lstat(name)
            stored = data.stored_bytes
            if found is None:
                return damaged(f"{name} is missing", manifest)
            if stat.S_ISLNK(found.st_mode):
                return damaged(f"{name} is a symbolic link, not followed", manifest)
            if not stat.S_ISREG(found.st_mode):
                return damaged(f"{name} is not a regular file", manifest)
            if found.st_size != stored:
                return damaged(
                    f"{name} is {found.st_size} bytes, the manifest says {stored}", manifest
                )
            verified = self._verification(directory, source, backup_id, manifest, found)
            return Backup(
                source, backup_id, path, manifest, None, verified, authenticated=authenticated
            )

    def _verification(
        self,
        directory: Directory,
        source: str,
        backup_id: str,
        manifest: Manifest,
        data_info: os.stat_result,
    ) -> dict[str, Any] | None:
        """Return the last verification if it is valid now: authenticated (with a key),
        about this backup and its stored sha256, the data file unchanged since."""
        record = self._read(directory, VERIFIED, context_of("verification", source, backup_id))
        if record is None:
            return None
        if (
            record.get("backup_id") != backup_id
            or record.get("stored_sha256") != manifest.data.stored_sha256
            or record.get("data_file") != _data_identity(data_info)
        ):
            return None
        return record

    def exposure(self, backup: Backup | None = None) -> list[str]:
        """Return who besides upkeep could have written the repository (and ``backup``'s
        files): every directory or file on the way that another user owns or that group or
        others may write. Empty when only upkeep (or root) can."""
        me = os.geteuid()
        problems: list[str] = []
        places: list[tuple[Path, os.stat_result | None]] = []
        try:
            places.append((self.root, os.stat(self.root)))
        except OSError:
            return problems
        if backup is not None:
            for path in (
                backup.path.parent,
                backup.path,
                backup.path / MANIFEST,
                backup.data_path,
            ):
                try:
                    places.append((path, os.lstat(path)))
                except OSError:
                    continue
        for path, info in places:
            assert info is not None  # noqa: S101 - only found ones are listed
            if info.st_uid not in (0, me):
                problems.append(f"{path} belongs to uid {info.st_uid}")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                problems.append(f"{path} is writable by group or others")
        return problems

    # --- records ---------------------------------------------------------------------------

    def _read(self, directory: Directory, name: str, context: str) -> dict[str, Any] | None:
        """Return a record of ``directory`` (authenticated with the key when there is one),
        or None if it is missing, a link, not JSON, or fails authentication."""
        try:
            text = directory.read_bytes(name, limit=RECORD_LIMIT)
            document = json.loads(text) if text is not None else None
        except (OSError, ValueError):
            return None
        if not isinstance(document, dict):
            return None
        if self.key is None:
            return crypto.unsealed_unchecked(document)
        try:
            return crypto.unseal(document, self.key, context=context)
        except crypto.AuthenticationError:
            return None

    def _write(
        self, directory: Directory, name: str, context: str, document: dict[str, Any]
    ) -> None:
        """Write a record atomically (0600, a temporary renamed over, never through a
        link), sealed with the key when there is one."""
        sealed = crypto.seal(document, self.key, context=context) if self.key else document
        directory.write_atomic(name, json.dumps(sealed, indent=2).encode())

    def read_record(self, source: str, name: str) -> dict[str, Any] | None:
        """Return a source's record (``last-attempt.json``...), or None if missing or not
        authentic."""
        try:
            with self._source_dir(source, create=False) as directory:
                if directory is None:
                    return None
                return self._read(directory, name, context_of(name, source))
        except RepositoryError:
            return None

    def write_record(self, source: str, name: str, document: dict[str, Any]) -> None:
        """Write a source's record (creating the repository 0700 if needed)."""
        with self._source_dir(source, create=True) as directory:
            assert directory is not None  # noqa: S101 - created
            self._write(directory, name, context_of(name, source), document)

    def record_verification(
        self, backup: Backup, result: dict[str, Any], data_info: os.stat_result
    ) -> None:
        """Store a verification's result beside the backup, bound to it: its id, its stored
        sha256 and the data file as it was hashed (``data_info``)."""
        record = {
            **result,
            "backup_id": backup.id,
            "stored_sha256": backup.intact_manifest.data.stored_sha256,
            "data_file": _data_identity(data_info),
        }
        with self._source_dir(backup.source, create=False) as directory:
            if directory is None:
                raise RepositoryError(f"{self.root / backup.source} is gone")
            with directory.child(backup.id) as inside:
                self._write(
                    inside, VERIFIED, context_of("verification", backup.source, backup.id), record
                )

    # --- data ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def open_data(self, backup: Backup) -> Iterator[tuple[int, os.stat_result]]:
        """Yield the data file's descriptor and its ``fstat``: opened without following a
        link anywhere below the repository. Raise RepositoryError if it is not there as the
        manifest says (a link, another file, another size)."""
        with self._source_dir(backup.source, create=False) as directory:
            if directory is None:
                raise RepositoryError(f"{self.root / backup.source} is gone")
            try:
                fd = directory.open_file(f"{backup.id}/{backup.data_name}")
            except OSError as error:
                raise RepositoryError(
                    f"{backup.data_path}: {error.strerror or error}; not followed"
                ) from None
        try:
            info = os.fstat(fd)
            stored = backup.intact_manifest.data.stored_bytes
            if info.st_size != stored:
                raise RepositoryError(
                    f"{backup.data_name} is {info.st_size} bytes, the manifest says {stored}"
                )
            yield fd, info
        finally:
            os.close(fd)

    # --- writing ---------------------------------------------------------------------------

    def clean_temporaries(self, source: str) -> list[Path]:
        """Remove what interrupted writes of ``source`` left (never a write still under
        way: each holds a lock on its directory); return what was removed."""
        with self._source_dir(source, create=False) as directory:
            if directory is None:
                return []
            fcntl.flock(directory.fd, fcntl.LOCK_EX)
            return self._clean(directory)

    def _clean(self, directory: Directory) -> list[Path]:
        """Remove the temporaries of ``directory`` no write holds; the caller holds the
        source directory's lock, so no write is between making its temporary and locking
        it."""
        removed = []
        for entry in directory.entries():
            if not entry.name.startswith(TEMP_PREFIX):
                continue
            if entry.is_dir:
                try:
                    inside = directory.child(entry.name)
                except OSError:
                    continue
                with inside:
                    try:
                        fcntl.flock(inside.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # another process is writing this one
                    with contextlib.suppress(OSError):
                        directory.remove_tree(entry.name)
                        removed.append(directory.path / entry.name)
            elif (
                entry.is_file
                and time.time() - entry.info.st_mtime > STALE_TEMPORARY_S
                and directory.unlink(entry.name, expect=entry.identity)
            ):
                # A record's temporary from a crash; a fresh one may be another process's
                # write under way.
                removed.append(directory.path / entry.name)
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
        propagates. ``progress`` is called with raw bytes as they pass. With ``secret`` the
        data is encrypted and the manifest sealed (with the repository's key, which callers
        pass as the secret).
        """
        started_at = started_at or datetime.now(UTC)
        with self._source_dir(source, create=True) as directory:
            assert directory is not None  # noqa: S101 - created
            # The source directory's lock covers the clean-up and the making and locking
            # of our temporary, so another write's clean-up never takes it in between.
            fcntl.flock(directory.fd, fcntl.LOCK_EX)
            self._clean(directory)
            backup_id = new_id(started_at)
            temporary = f"{TEMP_PREFIX}{backup_id}.{secrets.token_hex(16)}"
            os.mkdir(temporary, STATE_DIR_MODE, dir_fd=directory.fd)
            try:
                with directory.child(temporary) as inside:
                    # Held until the rename: a concurrent write's clean-up leaves it alone.
                    fcntl.flock(inside.fd, fcntl.LOCK_EX)
                    fcntl.flock(directory.fd, fcntl.LOCK_UN)
                    manifest = self._fill(
                        inside,
                        source,
                        backup_id,
                        data,
                        details,
                        secret,
                        progress,
                        started_at,
                        finish,
                    )
                    rename_noreplace(directory.fd, temporary, directory.fd, backup_id)
                directory.fsync()
            except BaseException:
                with contextlib.suppress(OSError):
                    directory.remove_tree(temporary)
                raise
        return Backup(
            source,
            backup_id,
            self.root / source / backup_id,
            manifest,
            authenticated=bool(secret),
        )

    def _fill(
        self,
        inside: Directory,
        source: str,
        backup_id: str,
        data: Iterable[bytes],
        details: dict[str, Any],
        secret: str | None,
        progress: Callable[[int], None] | None,
        started_at: datetime,
        finish: Callable[[], dict[str, Any]] | None,
    ) -> Manifest:
        """Write the data file and the manifest into the temporary directory; return the
        manifest. Raise RepositoryError if the source's details do not make a valid one
        (a bug: nothing is written that this upkeep could not read back)."""
        data_name = DATA_NAMES[bool(secret)]
        began = time.monotonic()
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
        fd = os.open(
            data_name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=inside.fd,
        )
        with os.fdopen(fd, "wb") as handle:
            for piece in stored:
                handle.write(piece)
                stored_hash.update(piece)
                stored_bytes += len(piece)
            handle.flush()
            os.fsync(handle.fileno())
        dumped_s = time.monotonic() - began
        extra = finish() if finish is not None else {}
        fields = {
            "format": MANIFEST_FORMAT,
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
        try:
            manifest = Manifest.model_validate(fields)
        except ValidationError as error:
            raise RepositoryError(
                f"the manifest of {source}/{backup_id} is not valid: {error}"
            ) from error
        document = manifest.document()
        written = (
            crypto.seal(document, secret, context=context_of("manifest", source, backup_id))
            if secret
            else document
        )
        inside.write_atomic(MANIFEST, json.dumps(written, indent=2).encode())
        inside.fsync()
        return manifest

    def remove(self, backup: Backup) -> None:
        """Delete a backup: its manifest first, so a crash halfway leaves no backup that
        looks complete, then the rest (never following a link)."""
        with self._source_dir(backup.source, create=False) as directory:
            if directory is None:
                return
            info = directory.lstat(backup.id)
            if info is not None and stat.S_ISDIR(info.st_mode):
                with directory.child(backup.id) as inside:
                    inside.unlink(MANIFEST)
                    inside.fsync()
            directory.remove_tree(backup.id)
            directory.fsync()


def _json_object(text: bytes) -> dict[str, Any] | None:
    """Return the JSON object in ``text``, or None if it is not one."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def stored_sha256(repository: Repository, backup: Backup) -> tuple[str, os.stat_result]:
    """Return the sha256 of the stored data file, read in full, and the file's ``fstat``
    as it was read. Raise RepositoryError if it is not there as the manifest says."""
    digest = hashlib.sha256()
    with repository.open_data(backup) as (fd, info), os.fdopen(os.dup(fd), "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest(), info


def read_raw(repository: Repository, backup: Backup, secret: str | None) -> Iterator[bytes]:
    """Yield the backup's raw dump: decrypted (with ``secret``) and decompressed. Raise
    RepositoryError if it is encrypted and no secret is given or the data file is not as
    the manifest says, crypto.DecryptionError or zstandard.ZstdError if the data is
    damaged."""
    encrypted = backup.intact_manifest.data.encrypted
    if encrypted and not secret:
        raise RepositoryError(f"backup {backup.id} is encrypted and no key is configured")
    with repository.open_data(backup) as (fd, _info), os.fdopen(os.dup(fd), "rb") as handle:
        stored: Iterator[bytes] = _pieces(handle)
        if encrypted:
            assert secret is not None  # noqa: S101 - checked above
            stored = crypto.decrypt(stored, secret)
        yield from _decompressed(stored)


def _pieces(handle: Any) -> Iterator[bytes]:
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


@contextlib.contextmanager
def scratch_directory(base: Path, label: str) -> Iterator[Path]:
    """Yield a fresh directory (0700, unguessable name) under ``base`` (made 0700 if
    missing) for a dump or restore; remove it afterwards, never following a link.

    Dumps, drills and restores work by path inside it, so ``base`` must be upkeep's alone:
    where others can write it, one of them could rename the fresh directory away and leave
    a link in its place. Raise UnsafeFileError (an OSError) if it belongs to another user
    or group or others may write it."""
    with Directory.open(base, create=True, mode=STATE_DIR_MODE) as parent:
        require_private(parent)
        name = f"{TEMP_PREFIX}{label}.{secrets.token_hex(16)}"
        os.mkdir(name, STATE_DIR_MODE, dir_fd=parent.fd)
        try:
            yield parent.path / name
        finally:
            with contextlib.suppress(OSError):
                parent.remove_tree(name)


LAST_ATTEMPT = "last-attempt.json"


LAST_DRILL = "last-drill.json"


REMOVED = "removed.json"
"""A source's record of the backup ids retention removed from this repository while their
copies in the second destination (``copy_to``) may remain: with the ids the repository
holds, the only copies there that retention may judge. A copy of any other id (another
host backing up a source of the same name into the same place) is never touched."""


def read_attempt(root: Path, name: str, key: str | None = None) -> dict[str, Any] | None:
    """Return the last backup attempt's record of a source, or None if there is none or it
    fails authentication with ``key``."""
    return Repository(root, key).read_record(name, LAST_ATTEMPT)


def read_drill(root: Path, name: str, key: str | None = None) -> dict[str, Any] | None:
    """Return the last drill's report of a source, or None if there is none or it fails
    authentication with ``key``."""
    return Repository(root, key).read_record(name, LAST_DRILL)
