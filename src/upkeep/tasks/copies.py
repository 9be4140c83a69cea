"""A second store for files that must survive the machine: a local directory (another
disk, a mount) or an SFTP server.

Every copy is written under a temporary name, made durable, renamed, and then read back
and compared by sha256; ``proven`` reads it back again at the moment a caller is about to
delete its original, so a copy lost or damaged since it was made is caught.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Annotated, Protocol

from pydantic import Field

from upkeep.config.durations import Duration
from upkeep.io.sftp import (
    CONNECT_TIMEOUT_S,
    OPERATION_TIMEOUT_S,
    SftpCredentials,
    SftpError,
    SftpLocation,
    SftpSession,
)
from upkeep.probes.base import StrictModel
from upkeep.redaction import SecretMarker
from upkeep.tasks.base import TaskFailed
from upkeep.tasks.logs.rotation import CHUNK_BYTES, TEMP_PREFIX, fsync_dir


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


def sha256_of(path: Path) -> str:
    """Return the hex sha256 of a file, read in bounded chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


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

    def put(self, source: Path, expected_sha256: str) -> bool:
        """Make sure an intact copy of ``source`` is there; return True if one was written.
        Raise CopyConflict if a different file has that name, TaskFailed if the copy, read
        back, does not match ``expected_sha256``."""
        ...

    def proven(self, name: str, expected_sha256: str) -> bool:
        """Return whether the copy there now reads back with ``expected_sha256``."""
        ...

    def close(self) -> None:
        """Release the connection, if any."""
        ...


class LocalDirectoryStore:
    """Copies in a directory on this machine."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.description = str(directory)

    def has(self, name: str) -> bool:
        """Return whether ``name`` is in the directory."""
        return (self.directory / name).exists()

    def put(self, source: Path, expected_sha256: str) -> bool:
        """Copy (temporary name, fsync, rename) unless an intact copy is there."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / source.name
        if final.exists():
            if os.path.samefile(final, source):
                # A link or mount that leads back to the original proves nothing.
                raise TaskFailed(f"{final} is {source} itself, not a second copy")
            if sha256_of(final) == expected_sha256:
                return False
            raise CopyConflict(f"a different {source.name} is already in {self.directory}")
        temporary = self.directory / f"{TEMP_PREFIX}{source.name}"
        with open(source, "rb") as reader, open(temporary, "wb") as writer:
            shutil.copyfileobj(reader, writer, CHUNK_BYTES)
            writer.flush()
            os.fsync(writer.fileno())
        if sha256_of(temporary) != expected_sha256:
            temporary.unlink(missing_ok=True)
            raise TaskFailed(
                f"the copy of {source.name} in {self.directory} does not match; kept locally"
            )
        temporary.replace(final)
        fsync_dir(self.directory)
        return True

    def proven(self, name: str, expected_sha256: str) -> bool:
        """Return whether the copy reads back with the expected checksum."""
        copy = self.directory / name
        return copy.is_file() and sha256_of(copy) == expected_sha256

    def close(self) -> None:
        """Nothing to release."""


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

    def put(self, source: Path, expected_sha256: str) -> bool:
        """Upload (temporary name, fsync, rename), then read it back and compare."""
        session = self._open(create=True)
        if self.has(source.name):
            if self.proven(source.name, expected_sha256):
                return False
            raise CopyConflict(f"a different {source.name} is already on {self.description}")
        try:
            with open(source, "rb") as reader:
                session.upload(reader, source.name, f"{TEMP_PREFIX}{source.name}")
            if session.sha256(source.name) != expected_sha256:
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
