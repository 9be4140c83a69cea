"""A fork server for the end-to-end tests: each ``upkeep`` call is still a process of its
own, but one forked from a parent that has already imported the CLI.

Started as ``python cli_zygote.py FD`` with a listening Unix socket at file descriptor FD,
this program imports the modules every command needs (typer, pydantic, SQLAlchemy, the config
models, the CLI's own modules) once, then answers each connection by forking. The child
takes the caller's three standard streams (passed with ``SCM_RIGHTS``), working directory,
environment and argv, exactly as ``python -m upkeep.cli.main ARGS`` would be given them,
and runs ``upkeep.cli.main`` as ``__main__`` (``runpy``, as ``-m`` does); its exit ends
the process as any CLI run ends (atexit handlers, flushed streams). The server reports
the child's pid, then its exit status.

What a fork cannot give the child is a fresh interpreter: the modules were imported before
the environment was set (upkeep reads its environment when a command runs, not at import),
and the hash seed is the server's. ``ZygoteClient.run`` returns what ``subprocess.run``
with ``capture_output=True, text=True`` returns, and raises ``subprocess.TimeoutExpired``
(after killing the child) as it does. Each CLI start costs ~0.7 s of imports on this
machine; the suite starts the CLI hundreds of times.
"""

from __future__ import annotations

import contextlib
import gc
import json
import locale
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 60.0
"""Named timeout: how long the server may take to import everything and answer a first
call (seconds of CPU on a loaded two-core machine)."""
ORPHAN_CHECK_S = 5.0
"""How often an idle server checks that the test process that started it still runs."""
HEADER = struct.Struct("!I")
PRELOAD = (
    "typer.main",
    "upkeep.cli.options",
    "upkeep.cli.common",
    "upkeep.cli.output",
    "upkeep.cli.check",
    "upkeep.cli.history",
    "upkeep.cli.runbooks",
    "upkeep.cli.alerts",
    "upkeep.cli.incidents",
    "upkeep.cli.backup",
    "upkeep.cli.logs",
    "upkeep.cli.notify",
    "upkeep.cli.ping",
    "upkeep.cli.accounts",
    "upkeep.cli.init",
    "upkeep.cli.interrupts",
    "upkeep.config.loader",
    "upkeep.engine.pipeline",
    "upkeep.engine.runner",
    "upkeep.engine.runbooks",
    "upkeep.store.store",
    "upkeep.tasks.registry",
    "upkeep.alerting.delivery",
    "upkeep.notify.channels",
    "alembic.command",
    "alembic.config",
    "lark",
    "psutil",
)
"""What nearly every command imports (a store's first migration, a channel's URL check
included); the rest a command imports itself, as it would. Not ``upkeep.cli.main``: as
under ``-m``, it runs as ``__main__`` and nothing imports it by name."""


# --- the server ----------------------------------------------------------------------------


def _receive(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Read one request: its length, its JSON (argv, cwd, env) and the three streams."""
    message, fds, _flags, _address = socket.recv_fds(connection, 1 << 20, 3)
    if len(message) < HEADER.size or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        raise ValueError("a request is a length, its JSON and three file descriptors")
    (length,) = HEADER.unpack_from(message)
    body = message[HEADER.size :]
    while len(body) < length:
        chunk = connection.recv(length - len(body))
        if not chunk:
            raise ValueError("the request ended early")
        body += chunk
    request: dict[str, Any] = json.loads(body)
    return request, fds


def _serve(listener: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Answer connections until one forks a child; in that child, return its request."""
    parent = os.getppid()
    listener.settimeout(ORPHAN_CHECK_S)
    while True:
        try:
            connection, _address = listener.accept()
        except TimeoutError:
            if os.getppid() != parent:  # the test process died without stopping us
                sys.exit(0)
            continue
        connection.settimeout(None)
        with connection:
            try:
                request, fds = _receive(connection)
            except (OSError, ValueError) as error:
                sys.stderr.write(f"cli_zygote: bad request: {error}\n")
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                connection.close()
                return request, fds
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                connection.sendall(f"{pid}\n".encode())
            _pid, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                connection.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: take the caller's streams, directory, environment and argv."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    # `runpy` puts the module's file first, as `python -m upkeep.cli.main ARGS` does.
    sys.argv = ["-m", *request["args"]]
    # `python -m` puts the working directory first on the path.
    sys.path[0] = request["cwd"]


def serve_forever() -> None:
    """The server's main: preload, then fork a CLI per request (this returns in the child)."""
    # A SIGINT meant for the suite's process group must not end a server mid-fork with a
    # traceback; the children get Python's default handler back before they run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # Apprise imports its ~130 plugins the first time a URL is looked up (~0.3 s), what
    # `validate`, `check` and `notify` do in every config with a channel. One plugin
    # imports the deprecated `imghdr` (Apprise's to fix; upkeep.notify.channels says so).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from apprise.plugins import N_MGR

        # Looking a scheme up loads every plugin (what upkeep.notify.channels does).
        _ = "json" in N_MGR
    if "upkeep.cli.main" in sys.modules:
        raise RuntimeError("upkeep.cli.main must run as __main__ only, as under `python -m`")
    # A fork copies only the calling thread: a thread started by an import would be lost.
    if threading.active_count() != 1:
        raise RuntimeError(f"an import started a thread: {threading.enumerate()}")
    # The client bound and listens on it, so its calls queue up while this imports.
    listener = socket.socket(fileno=int(sys.argv[1]))
    # What is imported now lives as long as the server: no collection in a child needs to
    # walk it, and walking it would write to (so copy) every page the fork shares.
    gc.collect()
    gc.freeze()
    request, fds = _serve(listener)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _become(request, fds)


# --- the client ----------------------------------------------------------------------------


class ZygoteClient:
    """Starts the server in a temporary directory and runs CLI calls through it."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "cli.sock"
        self.log = directory / "cli_zygote.log"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            listener.listen(8)
            with self.log.open("wb") as log:
                self.process = subprocess.Popen(
                    [sys.executable, __file__, str(listener.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(listener.fileno(),),
                )
        finally:
            listener.close()

    def close(self) -> None:
        """Stop the server (it idles in ``accept``; no child of it is running)."""
        self.process.terminate()
        self.process.wait(timeout=START_TIMEOUT_S)

    def _failure(self, what: str) -> RuntimeError:
        log = self.log.read_text(encoding="utf-8", errors="replace")[-4000:]
        return RuntimeError(f"the CLI fork server {what}; its log:\n{log}")

    def run(
        self, args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
    ) -> subprocess.CompletedProcess[str]:
        """Given the CLI's arguments, a directory, an environment and a timeout, run
        ``upkeep ARGS`` in a forked process and return it finished, as
        ``subprocess.run([sys.executable, "-m", "upkeep.cli.main", *args], ...,
        capture_output=True, text=True)`` would; raise ``subprocess.TimeoutExpired`` after
        killing it if it outlives the timeout."""
        argv = [sys.executable, "-m", "upkeep.cli.main", *args]
        deadline = time.monotonic() + timeout
        request = json.dumps({"args": args, "cwd": str(cwd), "env": env}).encode()
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        # The standard input a subprocess would inherit (pytest's capture makes it
        # /dev/null), or /dev/null where this process has none.
        try:
            stdin = os.dup(0)
        except OSError:
            stdin = os.open(os.devnull, os.O_RDONLY)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
                connection.settimeout(START_TIMEOUT_S + timeout)
                try:
                    connection.connect(str(self.path))
                    socket.send_fds(
                        connection,
                        [HEADER.pack(len(request)) + request],
                        [stdin, out_write, err_write],
                    )
                finally:
                    for fd in (stdin, out_write, err_write):
                        os.close(fd)
                with connection.makefile("rb") as replies:
                    pid_line = replies.readline()
                    if not pid_line:
                        raise self._failure("did not start the command")
                    pid = int(pid_line)
                    # The first call waits for the imports; the command's own time starts now.
                    deadline = max(deadline, time.monotonic() + timeout)
                    outputs = _read_until_eof([out_read, err_read], deadline)
                    if outputs is None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        replies.readline()
                        raise subprocess.TimeoutExpired(argv, timeout)
                    connection.settimeout(max(0.1, deadline - time.monotonic()))
                    try:
                        status_line = replies.readline()
                    except TimeoutError:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                        raise subprocess.TimeoutExpired(argv, timeout) from None
                    if not status_line:
                        raise self._failure("lost the command's exit status")
        finally:
            for fd in (out_read, err_read):
                with contextlib.suppress(OSError):
                    os.close(fd)
        encoding = locale.getpreferredencoding(False)
        stdout, stderr = (_text(data, encoding) for data in outputs)
        return subprocess.CompletedProcess(argv, int(status_line), stdout, stderr)


def _text(data: bytes, encoding: str) -> str:
    """Decode as ``subprocess`` does in text mode: universal newlines."""
    return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


def _read_until_eof(fds: list[int], deadline: float) -> list[bytes] | None:
    """Read every pipe to its end; return their bytes, or None at the deadline."""
    chunks: dict[int, list[bytes]] = {fd: [] for fd in fds}
    with selectors.DefaultSelector() as selector:
        for fd in fds:
            selector.register(fd, selectors.EVENT_READ)
        open_fds = set(fds)
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            for key, _events in selector.select(remaining):
                fd = int(key.fd)
                data = os.read(fd, 1 << 16)
                if data:
                    chunks[fd].append(data)
                else:
                    selector.unregister(fd)
                    open_fds.discard(fd)
    return [b"".join(chunks[fd]) for fd in fds]


if __name__ == "__main__":
    serve_forever()
    import runpy

    # What `python -m upkeep.cli.main` does: the module runs again as __main__ (its
    # imports are already loaded), so click names the program as it would.
    runpy.run_module("upkeep.cli.main", run_name="__main__", alter_sys=True)
