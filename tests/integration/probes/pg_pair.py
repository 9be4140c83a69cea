"""A throwaway PostgreSQL streaming pair, primary and standby, for the replication tests.

``streaming_pair()`` builds both servers from the PostgreSQL binaries installed on this
machine in a fresh temporary directory: ``initdb`` a primary, start it, copy it with
``pg_basebackup -R`` into a standby, start that, and wait until the primary lists the
standby as streaming. Both listen on free ports of 127.0.0.1 only, with their unix
sockets in the temporary directory, so nothing outside it is touched. On the way out
both are stopped (``-m immediate``: nothing in them is worth a clean shutdown) and the
directory is removed, whatever happened in between.

PostgreSQL refuses to run as root, so as root every binary runs as the ``postgres`` OS
user through ``runuser``, in a directory that user owns; as anyone else they run directly.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

TOOLS = ("initdb", "pg_ctl", "pg_basebackup")
SERVER_USER = "postgres"
# The whole build normally takes a few seconds; these bound each step when it does not.
STEP_TIMEOUT_S = 20.0
STREAMING_TIMEOUT_S = 15.0

PRIMARY_CONF = """
# Added for upkeep's replication tests: a small, local-only, disposable server.
listen_addresses = '127.0.0.1'
unix_socket_directories = '{sockets}'
shared_buffers = 16MB
max_connections = 20
wal_level = replica
max_wal_senders = 4
# Report replay progress every second so the primary sees a caught-up standby quickly.
wal_receiver_status_interval = 1s
fsync = off
"""

PG_HBA = """\
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
"""


@dataclass(frozen=True)
class StreamingPair:
    """libpq DSNs of a primary and of a standby streaming from it."""

    primary_dsn: str
    standby_dsn: str
    # True when streaming_pair() built the pair (so it is exactly one standby, ours).
    owned: bool


class PairError(RuntimeError):
    """A step of building the pair failed; the message carries the tool's output or log."""


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Given /usr/lib/postgresql/<version>/bin, return the version as a sortable tuple."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """Return the newest directory holding initdb, pg_ctl and pg_basebackup, or None.

    Debian-style ``/usr/lib/postgresql/*/bin`` comes first (those are not on PATH);
    failing that, the directory of a ``pg_ctl`` found on PATH.
    """
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in TOOLS):
            return bindir
    return None


def missing_prerequisite() -> str | None:
    """Return why a pair cannot be built here (as a skip or failure reason), or None."""
    if find_bindir() is None:
        return (
            "no PostgreSQL server binaries (initdb, pg_ctl, pg_basebackup) under "
            "/usr/lib/postgresql/*/bin or on PATH to build a streaming pair"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} OS user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root and there is no runuser to run PostgreSQL as another user"
    return None


def _free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on at the moment."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _tail(path: Path, lines: int = 20) -> str:
    """Given a log file, return its last lines (or a note that there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


class _Cluster:
    """Runs the PostgreSQL tools as the server user inside one temporary directory."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.prefix = ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []
        # PG* variables of the caller (PGHOST, PGPORT, ...) must not redirect the tools.
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        self.env.update(LC_ALL="C", HOME=str(base))
        self.started: list[Path] = []

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Given a tool and its arguments, run it; raise PairError if it fails or hangs."""
        command = [*self.prefix, str(self.bindir / tool), *args]
        try:
            done = subprocess.run(
                command,
                cwd=self.base,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=STEP_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise PairError(f"{tool} did not finish within {STEP_TIMEOUT_S:g}s") from error
        if done.returncode != 0:
            raise PairError(
                f"{tool} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}".rstrip()
            )
        return done

    def start(self, datadir: Path) -> int:
        """Given a data directory, start its server on a free port and return the port.

        The port is free when chosen but could be taken before the server binds it, so a
        start that fails for that reason is retried on another port.
        """
        log = self.base / f"{datadir.name}.log"
        for _attempt in range(3):
            port = _free_port()
            self.started.append(datadir)
            try:
                self.run(
                    "pg_ctl",
                    "start",
                    "-D",
                    str(datadir),
                    "-l",
                    str(log),
                    "-w",
                    "-t",
                    str(int(STEP_TIMEOUT_S) - 5),
                    "-o",
                    f"-p {port}",
                )
            except PairError as error:
                if "could not bind" in _tail(log):
                    continue
                raise PairError(f"{error}\n--- {log.name} ---\n{_tail(log)}") from error
            return port
        raise PairError(f"{datadir.name} found no free port:\n{_tail(log)}")

    def stop_all(self) -> None:
        """Stop every server started here, newest first; kill one that will not stop."""
        for datadir in reversed(dict.fromkeys(self.started)):
            try:
                self.run("pg_ctl", "stop", "-D", str(datadir), "-m", "immediate", "-w", "-t", "10")
            except PairError:
                _kill_postmaster(datadir)


def _kill_postmaster(datadir: Path) -> None:
    """Given a data directory, SIGKILL the postmaster its postmaster.pid names, if any."""
    with suppress(OSError, ValueError, IndexError):
        pid = int((datadir / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)


def _wait_streaming(primary_dsn: str, standbys: int) -> None:
    """Given a primary, wait until that many standbys stream from it; raise PairError if not."""
    deadline = time.monotonic() + STREAMING_TIMEOUT_S
    streaming = 0
    while time.monotonic() < deadline:
        with psycopg.connect(primary_dsn, autocommit=True, connect_timeout=5) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchone()
        streaming = row[0] if row else 0
        if streaming >= standbys:
            return
        time.sleep(0.1)
    raise PairError(f"{streaming} of {standbys} standbys streaming after {STREAMING_TIMEOUT_S:g}s")


@contextmanager
def streaming_pair() -> Iterator[StreamingPair]:
    """Build a primary and a streaming standby, yield their DSNs, then destroy both.

    Raise PairError (with the failing tool's output or server log) if a step fails;
    whatever was started is stopped and the directory removed in any case.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PairError("no PostgreSQL server binaries found")
    # Short path: unix socket paths are limited to about 100 bytes.
    base = Path(tempfile.mkdtemp(prefix="upkeep-pg-", dir="/tmp"))
    cluster = _Cluster(bindir, base)
    try:
        if os.geteuid() == 0:
            server_user = pwd.getpwnam(SERVER_USER)
            os.chown(base, server_user.pw_uid, server_user.pw_gid)
        primary, standby = base / "primary", base / "standby"
        cluster.run(
            "initdb",
            "-D",
            str(primary),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        # Appending keeps the files' owner; a later setting overrides an earlier one.
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(PRIMARY_CONF.format(sockets=base))
        (primary / "pg_hba.conf").write_text(PG_HBA)
        primary_port = cluster.start(primary)

        # -R writes primary_conninfo (over 127.0.0.1) and standby.signal into the copy.
        cluster.run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            "postgres",
            "-D",
            str(standby),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write("cluster_name = 'upkeep_standby'\n")
        standby_port = cluster.start(standby)

        pair = StreamingPair(
            primary_dsn=f"host=127.0.0.1 port={primary_port} user=postgres dbname=postgres",
            standby_dsn=f"host=127.0.0.1 port={standby_port} user=postgres dbname=postgres",
            owned=True,
        )
        _wait_streaming(pair.primary_dsn, standbys=1)
        yield pair
    finally:
        try:
            cluster.stop_all()
        finally:
            shutil.rmtree(base, ignore_errors=True)
