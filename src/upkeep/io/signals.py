"""The one way upkeep signals a process it did not start: the one a pidfile names.

A pidfile is a claim written by someone else, often in a directory its service's user can
write. As root, ``kill(pid)`` with whatever it holds would let that user aim upkeep at any
process: ``0`` is upkeep's own process group, ``-1`` every process on the host, ``1`` is
init, and a stale pid may by now belong to an unrelated program. So a pid is signalled
only when all of these hold:

* the pidfile is a regular file (not a link, FIFO or device) with no other hard link (where
  ``fs.protected_hardlinks`` is off, a service user could link another service's root-owned
  pidfile into its own directory) of at most a few bytes, and its first line is a decimal
  pid greater than 1;
* the pid is a process's, not one of its threads' (``/proc`` answers for a thread id too);
* the pid is not upkeep itself, a process of upkeep's own process group, or one of
  upkeep's ancestors (the shell or supervisor that runs it);
* the process started before the pidfile was last written (give or take clock
  granularity); one that started later reused the number and is not the pidfile's;
* a pidfile not owned by root (or by upkeep's own user) names a process whose real or
  saved uid is the pidfile's owner, the kernel's own rule for who may signal whom: a
  service user can point upkeep only at processes it could signal itself (not at a root
  process that merely lends it its effective uid);
* at the moment of signalling it is still the same process: the signal goes through a
  pidfd opened on the checked process (``pidfd_send_signal``), so a pid reused between
  the check and the signal is never hit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upkeep.io.safefs import UnsafeFileError, open_regular

PIDFILE_MAX_BYTES = 4096
"""A pidfile holds a number and maybe a newline; anything bigger is not one."""
PID_REUSE_TOLERANCE_S = 2.0
"""A process that started more than this after its pidfile was written reused the number
(the slack covers the granularity of start times and mtimes)."""


class PidfileError(Exception):
    """The pidfile cannot be trusted to name a process upkeep may signal; says why."""


@dataclass(frozen=True)
class PidfileProcess:
    """What a pidfile names: the live process (a ``psutil.Process``), or why there is none."""

    path: str
    pid: int | None
    process: Any
    reason: str = ""

    @property
    def running(self) -> bool:
        """Return whether the pidfile names a live process upkeep may signal."""
        return self.process is not None


def parse_signal(name: str) -> signal.Signals:
    """Given ``HUP``, ``SIGHUP`` or ``hup``, return the signal; raise ValueError if unknown."""
    upper = name.strip().upper()
    upper = upper if upper.startswith("SIG") else f"SIG{upper}"
    if upper not in signal.Signals.__members__:
        raise ValueError(f"{name!r} is not a signal name such as HUP, USR1 or TERM")
    return signal.Signals[upper]


def _ancestors() -> set[int]:
    import psutil

    found: set[int] = set()
    with contextlib.suppress(psutil.Error):
        found = {parent.pid for parent in psutil.Process().parents()}
    return found


def refusal(pid: int) -> str | None:
    """Given a pid, return why upkeep must never signal it, or None if it may."""
    if pid <= 1:
        return f"pid {pid} is {'init' if pid == 1 else 'not a single process'}"
    if pid == os.getpid():
        return f"pid {pid} is upkeep's own pid"
    try:
        if os.getpgid(pid) == os.getpgrp():
            return f"pid {pid} is in upkeep's own process group"
    except ProcessLookupError:
        return None
    if pid in _ancestors():
        return f"pid {pid} is one of upkeep's parent processes"
    return None


def _thread_group(pid: int) -> int | None:
    """Given a pid, return the id of the process it belongs to (itself for a process, its
    process's for a thread), or None if there is no such task."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:  # the kernel's, not a user's file
            for line in status:
                if line.startswith(b"Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def read_pidfile(path: str | Path) -> PidfileProcess:
    """Given a pidfile path, return the live process it names, or why none runs.

    A missing pidfile, a pid that is not running (or a zombie), and a pid that started
    after the pidfile was written are "not running" (``process`` None, with the reason).
    Raise PidfileError if the pidfile cannot be trusted: not a regular file, hard-linked,
    unreadable, not a pid, a thread's id, a pid upkeep must never signal (``refusal``), or
    a process that does not run as the pidfile's owner.
    """
    import psutil

    where = str(path)
    try:
        descriptor = open_regular(path, single_link=True)
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read(PIDFILE_MAX_BYTES + 1)
        if len(data) > PIDFILE_MAX_BYTES:
            raise ValueError(where)
    except FileNotFoundError:
        return PidfileProcess(where, None, None, f"not running: no pidfile at {where}")
    except UnsafeFileError as error:
        raise PidfileError(f"pidfile {where}: {error.strerror}; refusing to trust it") from None
    except ValueError:
        raise PidfileError(f"pidfile {where} is larger than {PIDFILE_MAX_BYTES} bytes") from None
    except OSError as error:
        raise PidfileError(f"pidfile {where} cannot be read: {error.strerror}") from None
    text = data.decode("ascii", errors="replace")
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if not first.isascii() or not first.isdigit():
        raise PidfileError(
            f"pidfile {where} does not hold a pid (it starts {first[:20]!r}); "
            "refusing to guess which process to signal"
        )
    pid = int(first)
    if pid <= 1 or pid == os.getpid():
        raise PidfileError(
            f"pidfile {where} holds pid {pid}: {refusal(pid)}; refusing to signal it"
        )
    if (leader := _thread_group(pid)) is not None and leader != pid:
        raise PidfileError(
            f"pidfile {where} holds {pid}, a thread of pid {leader}, not a process; "
            "refusing to signal it"
        )
    try:
        process = psutil.Process(pid)
        started = float(process.create_time())
        zombie = process.status() == psutil.STATUS_ZOMBIE
        real, _effective, saved = process.uids()
    except psutil.NoSuchProcess:
        return PidfileProcess(
            where, pid, None, f"not running: pid {pid} from {where} does not exist"
        )
    if zombie:
        return PidfileProcess(
            where, pid, None, f"not running: pid {pid} from {where} has already exited"
        )
    if started > info.st_mtime + PID_REUSE_TOLERANCE_S:
        return PidfileProcess(
            where,
            pid,
            None,
            f"not running: pid {pid} started after {where} was written, "
            "so it is another process that reused the number",
        )
    if (why := refusal(pid)) is not None:
        raise PidfileError(f"pidfile {where} holds pid {pid}: {why}; refusing to signal it")
    if info.st_uid not in (0, os.geteuid()) and info.st_uid not in (real, saved):
        raise PidfileError(
            f"pidfile {where} belongs to uid {info.st_uid} but pid {pid} runs as uid "
            f"{real}; a service's pidfile may only name its own processes"
        )
    return PidfileProcess(where, pid, process)


def send_signal(process: Any, signum: signal.Signals) -> bool:
    """Given a checked ``psutil.Process`` and a signal, send it to that very process (not a
    later process with the same pid); return False if it has already exited.

    Raise PermissionError if upkeep may not signal it, PidfileError if the pid is one upkeep
    must never signal.
    """
    import psutil

    pid = int(process.pid)
    if (why := refusal(pid)) is not None:
        raise PidfileError(f"refusing to signal pid {pid}: {why}")
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError as error:
        if error.errno == errno.EINVAL:  # a thread's id, not a process's
            raise PidfileError(f"refusing to signal {pid}: not a process") from None
        raise
    try:
        # The pidfd pins whatever process has this pid now; it must be the one checked.
        try:
            if psutil.Process(pid).create_time() != process.create_time():
                return False
        except psutil.NoSuchProcess:
            return False
        try:
            signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            return False
        except OSError as error:
            if error.errno == errno.EPERM:
                raise PermissionError(error.errno, error.strerror) from None
            raise
    finally:
        os.close(pidfd)
    return True
