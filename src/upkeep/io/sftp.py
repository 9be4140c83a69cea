"""The one seam for SFTP: off-site copies of archives and backups.

paramiko rather than asyncssh: every caller already runs its file work in a worker thread
(hashing, compressing), paramiko's blocking API fits there, and it is the most widely
deployed SSH library for Python. Host keys are always checked against a known_hosts file
(an unknown host is refused, never trusted on first use), agent and default keys are not
tried (a run must not depend on whoever's agent is loaded), and every wait has a named
timeout.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    import paramiko


CONNECT_TIMEOUT_S = 10.0
"""Named default: TCP connect, SSH banner and authentication each get this long."""
OPERATION_TIMEOUT_S = 60.0
"""Named default: any one SFTP request (a write, a read, a rename) gets this long."""
CHUNK_BYTES = 1 << 20
"""Upload and read-back in bounded chunks: memory stays flat whatever the file's size."""
DEFAULT_PORT = 22


class SftpError(Exception):
    """An SFTP location could not be reached, authenticated, or written."""


@dataclass(frozen=True)
class SftpLocation:
    """Where copies go: ``sftp://user[:password]@host[:port]/absolute/directory``."""

    host: str
    port: int
    username: str
    password: str | None = field(repr=False)
    directory: str

    @classmethod
    def parse(cls, url: str) -> SftpLocation:
        """Given an ``sftp://`` URL, return its parts; raise ValueError if one is missing."""
        parts = urlsplit(url)
        if parts.scheme != "sftp":
            raise ValueError("an SFTP location starts with sftp://")
        if not parts.hostname:
            raise ValueError("an SFTP location needs a host: sftp://user@host/directory")
        if not parts.username:
            raise ValueError("an SFTP location needs a user: sftp://user@host/directory")
        directory = unquote(parts.path)
        if not directory.startswith("/") or directory == "/":
            raise ValueError("an SFTP location needs an absolute directory other than /")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as error:
            raise ValueError(f"bad port in the SFTP location: {error}") from None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, unquote(parts.username), password, directory)

    def display(self) -> str:
        """Return the location without its password, for messages and plans."""
        port = "" if self.port == DEFAULT_PORT else f":{self.port}"
        return f"sftp://{self.username}@{self.host}{port}{self.directory}"


@dataclass(frozen=True)
class SftpCredentials:
    """How to log in and how to know the server: a key file and/or a password, and the
    known_hosts file its host key must be in."""

    identity_file: str | None
    password: str | None = field(repr=False)
    known_hosts: str
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    operation_timeout_s: float = OPERATION_TIMEOUT_S


class SftpSession:
    """One authenticated SFTP connection; use as a context manager."""

    def __init__(self, location: SftpLocation, credentials: SftpCredentials) -> None:
        self.location = location
        self._credentials = credentials
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    def __enter__(self) -> SftpSession:
        self.open()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Connect and authenticate; raise SftpError saying why if that fails."""
        import paramiko  # here, not at the top: every config load would pay ~0.1 s for it

        credentials, location = self._credentials, self.location
        known_hosts = Path(credentials.known_hosts).expanduser()
        client = paramiko.SSHClient()
        try:
            client.load_host_keys(str(known_hosts))
        except OSError as error:
            raise SftpError(f"cannot read known_hosts {known_hosts}: {error.strerror}") from None
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        password = location.password or credentials.password
        try:
            client.connect(
                location.host,
                port=location.port,
                username=location.username,
                password=password,
                key_filename=credentials.identity_file,
                timeout=credentials.connect_timeout_s,
                banner_timeout=credentials.connect_timeout_s,
                auth_timeout=credentials.connect_timeout_s,
                channel_timeout=credentials.connect_timeout_s,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = _open_sftp(client, credentials)
        except paramiko.BadHostKeyException:
            client.close()
            raise SftpError(
                f"{location.display()}: the host key does not match {known_hosts}"
            ) from None
        except paramiko.SSHException as error:
            client.close()
            # paramiko's RejectPolicy says "Server '[host]:port' not found in known_hosts".
            raise SftpError(f"{location.display()}: {error}") from None
        except OSError as error:
            client.close()
            raise SftpError(
                f"{location.display()}: {error.strerror or type(error).__name__}"
            ) from None
        self._client, self._sftp = client, sftp

    def close(self) -> None:
        """Close the connection (safe to call twice, and on a connection the server or the
        network already dropped: closing then raises nothing, so it never hides the error
        that told the caller the copy failed)."""
        sftp, client = self._sftp, self._client
        self._sftp = self._client = None
        if sftp is not None:
            import paramiko  # loaded already: the session exists

            # paramiko raises EOFError (or OSError, SSHException) when it sends the close
            # of a channel whose connection is gone; there is nothing left to close then.
            with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
                sftp.close()
        if client is not None:
            client.close()

    @property
    def sftp(self) -> paramiko.SFTPClient:
        """Return the open SFTP client; raise SftpError if the session is not open."""
        if self._sftp is None:
            raise SftpError("the SFTP session is not open")
        return self._sftp

    def path(self, name: str) -> str:
        """Return the remote path of ``name`` in the location's directory."""
        if "/" in name or name in {"", ".", ".."}:
            raise SftpError(f"not a plain file name: {name!r}")
        return posixpath.join(self.location.directory, name)

    def make_directory(self) -> None:
        """Create the location's directory and its parents where missing."""
        current = "/"
        for part in self.location.directory.strip("/").split("/"):
            current = posixpath.join(current, part)
            with _translated(current):
                try:
                    attributes = self.sftp.stat(current)
                except FileNotFoundError:
                    self.sftp.mkdir(current, 0o750)
                    continue
            if attributes.st_mode is not None and not stat.S_ISDIR(attributes.st_mode):
                raise SftpError(f"{current} on {self.location.host} is not a directory")

    def sha256(self, name: str) -> str | None:
        """Return the hex sha256 of a remote file read back in full, or None if it is absent."""
        remote = self.path(name)
        digest = hashlib.sha256()
        with _translated(remote):
            try:
                handle = self.sftp.open(remote, "rb")
            except FileNotFoundError:
                return None
            with handle:
                handle.prefetch()
                while chunk := handle.read(CHUNK_BYTES):
                    digest.update(chunk)
        return digest.hexdigest()

    def upload(self, source: BinaryIO, name: str, temporary_name: str, *, mode: int = 0o600) -> int:
        """Write ``source`` to ``temporary_name`` (created exclusively: a file or link
        already there is an error, never written through), give it ``mode``, make it
        durable, rename it to ``name``; return the bytes written. A crash leaves only the
        temporary name, never a short file under the final one."""
        temporary, final = self.path(temporary_name), self.path(name)
        written = 0
        with _translated(temporary):
            with self.sftp.open(temporary, "wxb") as handle:
                handle.chmod(mode)
                handle.set_pipelined(True)
                while chunk := source.read(CHUNK_BYTES):
                    handle.write(chunk)
                    written += len(chunk)
                handle.flush()
                self._fsync(handle)
            self.sftp.posix_rename(temporary, final)
        return written

    def remove(self, name: str) -> None:
        """Delete a remote file if it is there."""
        remote = self.path(name)
        with _translated(remote), contextlib.suppress(FileNotFoundError):
            self.sftp.remove(remote)

    def _fsync(self, handle: paramiko.SFTPFile) -> None:
        import paramiko

        # paramiko has no public call for OpenSSH's fsync@openssh.com extension; without it
        # a server crash right after the rename could leave an empty file behind a good name.
        with contextlib.suppress(OSError, paramiko.SSHException):
            request = self.sftp._request  # type: ignore[attr-defined]
            request(paramiko.sftp.CMD_EXTENDED, "fsync@openssh.com", handle.handle)


def _open_sftp(client: paramiko.SSHClient, credentials: SftpCredentials) -> paramiko.SFTPClient:
    """Open the SFTP subsystem within the connect timeout. paramiko's own ``open_sftp``
    waits for the server's answer without a limit, so a watchdog closes the channel if the
    answer does not come; every later request has the operation timeout."""
    import paramiko

    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("not connected")
    channel = transport.open_session(timeout=credentials.connect_timeout_s)
    channel.settimeout(credentials.operation_timeout_s)
    watchdog = threading.Timer(credentials.connect_timeout_s, channel.close)
    watchdog.daemon = True
    watchdog.start()
    try:
        channel.invoke_subsystem("sftp")
        return paramiko.SFTPClient(channel)
    except EOFError:
        raise paramiko.SSHException(
            f"no SFTP answer within {credentials.connect_timeout_s:g}s"
        ) from None
    finally:
        watchdog.cancel()


@contextlib.contextmanager
def _translated(remote: str) -> Iterator[None]:
    """Turn paramiko's errors into SftpError naming the remote path (a missing file passes
    through as FileNotFoundError for the caller to handle)."""
    import paramiko

    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, paramiko.SSHException, EOFError) as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise SftpError(f"{remote}: {reason}") from None
