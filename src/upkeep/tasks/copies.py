"""A second store for files that must survive the machine: a local directory (another
disk, a mount) or an SFTP server.

Every copy is written under a temporary name, made durable, renamed, and then read back
and compared by sha256; ``proven`` reads it back again at the moment a caller is about to
delete its original, so a copy lost or damaged since it was made is caught.

Both ends may be directories others write. The original is read only through a
descriptor the caller opened and checked (``CopySource``), so what is copied is what was
listed; a local copy is created under an unguessable name with ``O_EXCL``, given the
original's mode and owner, and renamed into place without replacing anything; a remote one
is created exclusively under an unguessable name and given the original's mode. A link
planted at a copy's name is a conflict, never followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, BinaryIO, Protocol, Self

from pydantic import Field

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.io.safefs import TEMP_PREFIX, Directory, Identity, open_regular
from upkeep.io.sftp import (
    CONNECT_TIMEOUT_S,
    OPERATION_TIMEOUT_S,
    SftpCredentials,
    SftpError,
    SftpLocation,
    SftpSession,
)
from upkeep.tasks.base import TaskFailed

CHUNK_BYTES = 1 << 20
"""Read and hash this much at a time."""


class SftpOptions(StrictModel):
    """How to log in to an ``sftp://`` second store."""

    identity_file: str | None = Field(default=None, description="private key file")
    password: Annotated[str | None, SecretMarker()] = Field(
        default=None, description="password (or the key's passphrase)"
    )
    known_hosts: str = Field(
        default="~/.ssh/known_hosts",
        description="the server's host key must be here; unknown hosts are refused",
    )
    connect_timeout: Duration | None = Field(
        default=None, description=f"connect and log in (default {CONNECT_TIMEOUT_S:g} s)"
    )
    operation_timeout: Duration | None = Field(
        default=None, description=f"each SFTP request (default {OPERATION_TIMEOUT_S:g} s)"
    )


def sha256_of_descriptor(fd: int) -> str:
    """Return the hex sha256 of an open file's whole content (read with pread: the
    descriptor's offset is left alone)."""
    digest = hashlib.sha256()
    position = 0
    while chunk := os.pread(fd, CHUNK_BYTES, position):
        digest.update(chunk)
        position += len(chunk)
    return digest.hexdigest()


class _PositionalReader(io.RawIOBase):
    """A reader over a descriptor that keeps its own position (pread), so several readers
    of one descriptor never move each other."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = os.pread(self._fd, len(buffer), self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


@dataclass
class CopySource:
    """An original to copy, held open: it is read only through this descriptor, so a name
    swapped for a link after it was checked changes nothing."""

    name: str
    """The name the copy gets at the destination."""
    fd: int
    info: os.stat_result
    sha256: str

    @classmethod
    def open(
        cls, directory: Directory, name: str, *, expect: Identity | None = None, as_name: str = ""
    ) -> Self:
        """Given an open directory and a name in it (and the inode a listing saw), open
        that regular file and hash it. Raise UnsafeFileError if it is a link, not a regular
        file or another inode; FileNotFoundError if it is gone."""
        return cls._hashed(directory.open_file(name, expect=expect), as_name or name)

    @classmethod
    def from_path(cls, path: Path, *, as_name: str = "") -> Self:
        """Given a path (its directory trusted, the file itself never a link), open and
        hash that regular file."""
        return cls._hashed(open_regular(path), as_name or path.name)

    @classmethod
    def _hashed(cls, fd: int, name: str) -> Self:
        """Given a descriptor just opened (owned from here: closed on failure), hash it."""
        try:
            return cls(name, fd, os.fstat(fd), sha256_of_descriptor(fd))
        except BaseException:
            os.close(fd)
            raise

    @property
    def identity(self) -> Identity:
        """Return the original's inode."""
        return Identity.of(self.info)

    def reader(self) -> BinaryIO:
        """Return a reader of the whole content from its start (the caller closes it)."""
        return io.BufferedReader(_PositionalReader(self.fd), CHUNK_BYTES)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def location_problems(destination: str, options: SftpOptions | None) -> list[str]:
    """Return what is wrong with a second store's address (empty if nothing)."""
    if destination.startswith("sftp://"):
        try:
            SftpLocation.parse(destination)
        except ValueError as error:
            return [str(error)]
        if options is None or (options.identity_file is None and options.password is None):
            location = SftpLocation.parse(destination)
            if location.password is None:
                return ["an sftp:// destination needs sftp.identity_file or a password"]
        return []
    if "://" in destination:
        return [
            f"unsupported destination {destination.split('://', maxsplit=1)[0]}://; use a path or sftp://"
        ]
    if not Path(destination).is_absolute():
        return ["a local destination must be an absolute directory"]
    return []


class CopyConflict(TaskFailed):
    """A different file of the same name is already in the second store. It is never
    overwritten: it may be the only copy of another log's archive."""


class CopyStore(Protocol):
    """Where verified copies go."""

    description: str

    def has(self, name: str) -> bool:
        """Return whether a file of that name is there (not whether it is intact); never
        creates or changes anything (dry runs use it)."""
        ...

    def put(self, source: CopySource) -> bool:
        """Make sure an intact copy of ``source`` is there under ``source.name``; return
        True if one was written. Raise CopyConflict if something else has that name (a
        different file, a link), TaskFailed if the copy, read back, does not match."""
        ...

    def proven(self, name: str, expected_sha256: str) -> bool:
        """Return whether the copy there now reads back with ``expected_sha256``."""
        ...

    def names(self) -> list[str]:
        """Return the names of the regular files there (never a temporary one), sorted;
        empty if the destination does not exist yet. Never creates or changes anything."""
        ...

    def remove(self, name: str) -> bool:
        """Delete the regular file ``name`` there; return whether one was deleted (a link
        or anything but a regular file is left alone). Raise TaskFailed if it cannot be."""
        ...

    def close(self) -> None:
        """Release the connection, if any."""
        ...


class LocalDirectoryStore:
    """Copies in a directory on this machine (its path is the operator's; nothing in it is
    followed through a link)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = str(directory)
        self._opened: Directory | None = None

    def _open(self, *, create: bool) -> Directory | None:
        if self._opened is None:
            try:
                self._opened = Directory.open(self.directory, create=create, mode=0o750)
            except FileNotFoundError:
                return None
            except OSError as error:
                raise TaskFailed(f"second store {self.directory}: {error.strerror}") from None
        return self._opened

    def has(self, name: str) -> bool:
        """Return whether ``name`` is in the directory."""
        directory = self._open(create=False)
        return directory is not None and directory.exists(name)

    def put(self, source: CopySource) -> bool:
        """Copy (unguessable temporary name, the original's mode and owner, fsync, rename
        without replacing) unless an intact copy is there."""
        directory = self._open(create=True)
        assert directory is not None  # noqa: S101 - created when missing
        existing = directory.lstat(source.name)
        if existing is not None:
            if Identity.of(existing) == source.identity:
                # A link or mount that leads back to the original proves nothing.
                raise TaskFailed(
                    f"{directory.path / source.name} is the original itself, not a second copy"
                )
            if not stat.S_ISREG(existing.st_mode):
                raise CopyConflict(
                    f"{source.name} in {self.directory} is not a regular file (a link?); "
                    "it is never overwritten"
                )
            if self.proven(source.name, source.sha256):
                return False
            raise CopyConflict(f"a different {source.name} is already in {self.directory}")
        temporary = directory.create_temporary(source.name)
        try:
            temporary.take_ownership_of(source.info)
            with source.reader() as reader:
                while chunk := reader.read(CHUNK_BYTES):
                    temporary.write(chunk)
            temporary.finish()
            written = directory.open_file(
                temporary.name, expect=Identity.of(os.fstat(temporary.fd))
            )
            try:
                matches = sha256_of_descriptor(written) == source.sha256
            finally:
                os.close(written)
            if not matches:
                raise TaskFailed(
                    f"the copy of {source.name} in {self.directory} does not match; kept locally"
                )
            try:
                temporary.commit(source.name)
            except FileExistsError:
                raise CopyConflict(
                    f"{source.name} appeared in {self.directory} while it was being copied"
                ) from None
        except BaseException:
            temporary.abort()
            raise
        return True

    def proven(self, name: str, expected_sha256: str) -> bool:
        """Return whether the copy (a regular file, not a link) reads back with the
        expected checksum."""
        directory = self._open(create=False)
        if directory is None:
            return False
        try:
            descriptor = directory.open_file(name)
        except OSError:
            return False
        try:
            return sha256_of_descriptor(descriptor) == expected_sha256
        finally:
            os.close(descriptor)

    def names(self) -> list[str]:
        """Return the regular files in the directory (links and temporaries left out)."""
        directory = self._open(create=False)
        if directory is None:
            return []
        return sorted(
            entry.name
            for entry in directory.entries()
            if entry.is_file and not entry.name.startswith(TEMP_PREFIX)
        )

    def remove(self, name: str) -> bool:
        """Unlink ``name`` if it is a regular file (only the inode looked at)."""
        directory = self._open(create=False)
        if directory is None:
            return False
        found = directory.lstat(name)
        if found is None or not stat.S_ISREG(found.st_mode):
            return False
        try:
            return directory.unlink(name, expect=Identity.of(found))
        except OSError as error:
            raise TaskFailed(f"removing {name} from {self.directory}: {error.strerror}") from None

    def close(self) -> None:
        """Close the directory."""
        if self._opened is not None:
            self._opened.close()
            self._opened = None


class SftpStore:
    """Copies in a directory on an SFTP server, over one connection for the whole run."""

    def __init__(self, location: SftpLocation, credentials: SftpCredentials) -> None:
        self.description = location.display()
        self._session = SftpSession(location, credentials)
        self._names: set[str] | None = None
        self._directory_ready = False

    def _open(self, *, create: bool) -> SftpSession:
        """Connect once; with ``create``, make the remote directory where missing."""
        import paramiko

        try:
            if self._names is None:
                self._session.open()
                try:
                    self._names = set(self._session.sftp.listdir(self._session.location.directory))
                    self._directory_ready = True
                except FileNotFoundError:
                    self._names = set()
            if create and not self._directory_ready:
                self._session.make_directory()
                self._directory_ready = True
        except (SftpError, OSError, paramiko.SSHException) as error:
            self._session.close()
            self._names = None
            raise TaskFailed(f"second store {self.description}: {error}") from None
        return self._session

    def has(self, name: str) -> bool:
        """Return whether ``name`` is listed in the remote directory."""
        self._open(create=False)
        return self._names is not None and name in self._names

    def put(self, source: CopySource) -> bool:
        """Upload (exclusive unguessable temporary name, the original's mode, fsync,
        rename), then read it back and compare."""
        session = self._open(create=True)
        if self.has(source.name):
            if self.proven(source.name, source.sha256):
                return False
            raise CopyConflict(f"a different {source.name} is already on {self.description}")
        temporary = f"{TEMP_PREFIX}{source.name}.{secrets.token_hex(16)}"
        try:
            with source.reader() as reader:
                session.upload(
                    reader, source.name, temporary, mode=stat.S_IMODE(source.info.st_mode) & 0o777
                )
            if session.sha256(source.name) != source.sha256:
                session.remove(source.name)
                raise TaskFailed(
                    f"the copy of {source.name} on {self.description} does not match; kept locally"
                )
        except SftpError as error:
            raise TaskFailed(f"copying {source.name} to {self.description}: {error}") from None
        if self._names is not None:
            self._names.add(source.name)
        return True

    def proven(self, name: str, expected_sha256: str) -> bool:
        """Return whether the remote copy reads back with the expected checksum."""
        session = self._open(create=False)
        try:
            return session.sha256(name) == expected_sha256
        except SftpError as error:
            raise TaskFailed(f"reading {name} back from {self.description}: {error}") from None

    def names(self) -> list[str]:
        """Return the regular files in the remote directory (links and temporaries left
        out), listed now."""
        import paramiko

        session = self._open(create=False)
        if not self._directory_ready:
            return []
        try:
            listing = session.sftp.listdir_attr(session.location.directory)
        except (OSError, paramiko.SSHException) as error:
            raise TaskFailed(f"listing {self.description}: {error}") from None
        return sorted(
            item.filename
            for item in listing
            if item.st_mode is not None
            and stat.S_ISREG(item.st_mode)
            and not item.filename.startswith(TEMP_PREFIX)
        )

    def remove(self, name: str) -> bool:
        """Delete the remote regular file ``name`` (a link there is left alone)."""
        import paramiko

        session = self._open(create=False)
        try:
            found = session.sftp.lstat(session.path(name))
        except FileNotFoundError:
            return False
        except (SftpError, OSError, paramiko.SSHException) as error:
            raise TaskFailed(f"removing {name} from {self.description}: {error}") from None
        if found.st_mode is None or not stat.S_ISREG(found.st_mode):
            return False
        try:
            session.remove(name)
        except SftpError as error:
            raise TaskFailed(f"removing {name} from {self.description}: {error}") from None
        if self._names is not None:
            self._names.discard(name)
        return True

    def close(self) -> None:
        """Close the SFTP connection."""
        self._session.close()


def open_store(destination: str, options: SftpOptions | None) -> contextlib.closing[CopyStore]:
    """Given a destination (an absolute path or ``sftp://user@host[:port]/dir``) and its
    SFTP options, return a store to use in a ``with`` block; connecting happens on first use."""
    if destination.startswith("sftp://"):
        location = SftpLocation.parse(destination)
        options = options or SftpOptions()
        credentials = SftpCredentials(
            identity_file=(
                str(Path(options.identity_file).expanduser()) if options.identity_file else None
            ),
            password=options.password,
            known_hosts=options.known_hosts,
            connect_timeout_s=(
                options.connect_timeout.total_seconds()
                if options.connect_timeout
                else CONNECT_TIMEOUT_S
            ),
            operation_timeout_s=(
                options.operation_timeout.total_seconds()
                if options.operation_timeout
                else OPERATION_TIMEOUT_S
            ),
        )
        return contextlib.closing(SftpStore(location, credentials))
    return contextlib.closing(LocalDirectoryStore(Path(destination)))
