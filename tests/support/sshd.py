"""A real OpenSSH server on 127.0.0.1 for SFTP tests.

It runs from a temporary directory of its own: its own host key, an authorized_keys file
with a freshly made client key, a known_hosts file for the client, and the chroot-free
``internal-sftp`` subsystem. It logs in the user running the tests (root in CI), with keys
only, on a free port.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
"""Named timeout: how long sshd may take to listen."""


@dataclass(frozen=True)
class SshServer:
    """A running sshd and what a client needs to reach it."""

    port: int
    user: str
    identity_file: Path
    known_hosts: Path
    process: subprocess.Popen[bytes]

    def url(self, directory: Path) -> str:
        """Return the sftp:// URL of a directory on this server."""
        return f"sftp://{self.user}@{HOST}:{self.port}{directory}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
    )


def require_sshd() -> None:
    """Return if OpenSSH's sshd and ssh-keygen are installed; else fail under CI, skip elsewhere."""
    if os.path.exists(SSHD) and shutil.which("ssh-keygen"):
        return
    message = "OpenSSH server is not installed (Debian: openssh-server)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message} (CI=true: a missing peer is a failure)")
    pytest.skip(message)


@contextlib.contextmanager
def running_sshd(directory: Path) -> Iterator[SshServer]:
    """Start sshd on a free loopback port with keys in ``directory``; stop it afterwards."""
    require_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    # sshd refuses keys and configs that group or others can write (StrictModes is off for
    # the tests' own files, but the directory itself must not be world-writable).
    directory.chmod(0o700)
    host_key, client_key = directory / "host_ed25519", directory / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key)
    authorized = directory / "authorized_keys"
    authorized.write_bytes(client_key.with_suffix(".pub").read_bytes())
    authorized.chmod(0o600)
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {HOST}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                f"PidFile {directory / 'sshd.pid'}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "StrictModes no",
                "UsePAM no",
                "Subsystem sftp internal-sftp",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    known_hosts = directory / "known_hosts"
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[{HOST}]:{port} {host_public[0]} {host_public[1]}\n")
    if os.geteuid() == 0:
        # sshd checks for its privilege-separation directory even in debug mode.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # Its log goes to a file: a pipe nobody reads could fill and stall the server.
    log_path = directory / "sshd.log"
    log_file = log_path.open("wb")
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                error = log_path.read_text(errors="replace").strip()
                raise RuntimeError(f"sshd did not start on {HOST}:{port}: {error}")
            time.sleep(0.05)
        yield SshServer(port, getpass.getuser(), client_key, known_hosts, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log_file.close()
