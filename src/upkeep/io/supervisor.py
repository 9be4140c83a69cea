"""The process between upkeep and every command it runs: it ends the command's whole tree.

``upkeep.io.process`` never starts a command itself. It starts this file as a small
program (``python -I -S supervisor.py --control-fd N --grace S [--leave-detached] --
argv...``), and this program starts the command. It marks itself a *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``), so every process the command starts stays below it
for good: a grandchild that calls ``setsid``, double-forks or clears its environment and
whose parent exits is re-parented to this supervisor, not to init. Its descendants are
therefore exactly the command's tree, found by walking parent links in ``/proc``, and it
can end all of them and reap them (it has no other children, so ``waitpid(-1)`` here
steals nobody's exit status).

The control socket (one end of a Unix socket pair; upkeep holds the other):

* supervisor to upkeep: ``started PID`` once the command runs, or ``error ERRNO`` if it
  could not be started; then ``exit CODE`` or ``signal NUMBER`` as soon as the command
  itself has exited. The supervisor exits (status 0) once the rest of the tree has ended.
* upkeep to supervisor: nothing but end-of-file. It means "end it now": upkeep's deadline
  passed, its task was cancelled, or upkeep itself died (the kernel closes the socket
  then, so even a SIGKILLed upkeep leaves no process tree behind).

Ending the tree: SIGTERM (and SIGCONT, so a stopped process sees it) to every descendant,
then after ``--grace`` seconds SIGKILL to whatever is left, repeated until nothing is (a
process that forks while being killed is caught on the next pass). When the command exits
by itself the rest of its tree is ended the same way, unless ``--leave-detached`` (a
service's start command that daemonises the service): then what is left runs on.

This process ignores every signal that would end or stop it by default but SIGTERM,
SIGINT and SIGHUP (which end the tree, as above): a command that signals its parent
(``kill -USR1 $PPID``, a readiness notice some daemons send) or its process group must not
kill the supervisor and leave the rest of its tree to init. The command starts with every
signal at its default. Only SIGKILL and SIGSTOP cannot be ignored; see
``upkeep.io.process`` for what then happens.

Signals go only to processes found below this supervisor in ``/proc``, each checked again
through a pidfd against its start time right before the signal, so a pid that was reused
in between is never hit; never to pid 1, this process or its parent (upkeep).

This module imports only the standard library and nothing at module level that is slow
to import: it runs once per command, with ``-I -S`` (no site, no user paths, so no module
of the command's environment shadows a standard one).
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and collections cost milliseconds to import, once per command
    import signal
    from collections.abc import Iterable
else:
    # The C module under ``signal``: the same functions and numbers, without the enum
    # classes whose import costs more than the rest of this program's start.
    import _signal as signal

PR_SET_CHILD_SUBREAPER = 36
"""From <linux/prctl.h>."""
HOUSEKEEPING_S = 1.0
"""While the command runs, how often exited orphans below us are reaped."""
KILL_PASSES = 200
"""How many SIGKILL sweeps at most; each one kills everything it finds."""
PASS_PAUSE_S = 0.01
"""Pause between two checks of whether the tree has ended."""
LAUNCH_ID_VARIABLE = "UPKEEP_LAUNCH_ID"
"""Environment variable naming a launch; upkeep's fallback sweep looks for it."""


class ProcessEntry:
    """One process as ``/proc/PID/stat`` shows it (a plain class: dataclasses are slow to
    import)."""

    __slots__ = ("parent", "pid", "start_ticks", "state")

    def __init__(self, pid: int, parent: int, state: str, start_ticks: int) -> None:
        self.pid = pid
        self.parent = parent
        self.state = state
        self.start_ticks = start_ticks

    def __repr__(self) -> str:
        return f"ProcessEntry(pid={self.pid}, parent={self.parent}, state={self.state!r})"


def read_entry(pid: int) -> ProcessEntry | None:
    """Given a pid, return its ``/proc`` entry, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ")"; the fields after the last ")"
    # are plain: state, ppid, ... starttime is field 22, the 20th after the name.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return ProcessEntry(pid, int(fields[1]), fields[0].decode(), int(fields[19]))
    except (IndexError, ValueError):
        return None


def all_entries() -> list[ProcessEntry]:
    """Return every process this pid namespace shows in ``/proc``."""
    entries = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            entry = read_entry(int(name))
            if entry is not None:
                entries.append(entry)
    return entries


def descendants(root: int, entries: Iterable[ProcessEntry] | None = None) -> list[ProcessEntry]:
    """Given a pid, return every process below it (children, their children, ...)."""
    children: dict[int, list[ProcessEntry]] = {}
    for entry in all_entries() if entries is None else entries:
        children.setdefault(entry.parent, []).append(entry)
    found: list[ProcessEntry] = []
    queue = [root]
    while queue:
        for child in children.get(queue.pop(), []):
            if child.pid != root:
                found.append(child)
                queue.append(child.pid)
    return found


def signal_entry(entry: ProcessEntry, signum: int, *, protected: Iterable[int] = ()) -> bool:
    """Given a process seen in ``/proc`` and a signal, send the signal to that very process.

    Return False (and send nothing) if the pid is 1, this process, its parent or in
    ``protected``, or if the pid now belongs to another process (its start time changed)
    or is gone. The pid is pinned with a pidfd before the check, so it cannot be reused
    between the check and the signal.
    """
    if entry.pid <= 1 or entry.pid in (os.getpid(), os.getppid(), *protected):
        return False
    try:
        pinned = os.pidfd_open(entry.pid)
    except ProcessLookupError:
        return False
    except OSError:
        pinned = -1  # No pidfd (an old kernel): checked just before, which is nearly as good.
    try:
        now = read_entry(entry.pid)
        if now is None or now.start_ticks != entry.start_ticks:
            return False
        if pinned >= 0:
            signal.pidfd_send_signal(pinned, signum)
        else:
            os.kill(entry.pid, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if pinned >= 0:
            os.close(pinned)


_ENDING_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
"""Signals that ask this supervisor to end the tree now."""
_KEPT_AT_DEFAULT = ("SIGKILL", "SIGSTOP", "SIGCHLD", "SIGCONT", "SIGURG", "SIGWINCH")
"""Signals left alone: they cannot be caught, or their default ends nothing (SIGCHLD
ignored would make the kernel reap our children before we can see how they ended)."""


def ignore_stray_signals() -> list[int]:
    """Ignore every signal whose default action ends or stops this process, but those
    that end the tree; return the signals now ignored (the command gets them at their
    defaults again)."""
    kept = {getattr(signal, name) for name in (*_ENDING_SIGNALS, *_KEPT_AT_DEFAULT)}
    ignored = []
    for number in range(1, signal.NSIG):
        if number in kept:
            continue
        try:
            signal.signal(number, signal.SIG_IGN)
        except (OSError, ValueError):
            continue  # reserved by the C library (32, 33) or no such signal
        ignored.append(number)
    return ignored


def become_subreaper() -> bool:
    """Mark this process a child subreaper; return whether the kernel agreed."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


class Supervisor:
    """Runs one command below itself and ends its whole tree; see the module docstring."""

    def __init__(self, argv: list[str], control: int, grace_s: float, leave_detached: bool):
        self.argv = argv
        self.control = control
        self.grace_s = grace_s
        self.leave_detached = leave_detached
        self.child = 0
        self.child_status: int | None = None

    def tell(self, line: str) -> None:
        """Send one line to upkeep; a closed control socket (upkeep gone) is ignored."""
        try:  # noqa: SIM105 - contextlib costs milliseconds to import, once per command
            os.write(self.control, f"{line}\n".encode())
        except OSError:
            pass

    def reap(self) -> None:
        """Collect every exited child (ours are all the command's tree): no zombies."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child:
                self.child_status = status

    def living(self) -> list[ProcessEntry]:
        """Return the processes below us that have not exited yet."""
        return [entry for entry in descendants(os.getpid()) if entry.state not in ("Z", "X")]

    @staticmethod
    def has_children() -> bool:
        """Return whether any process is below us, a zombie included.

        Exact and cheap (one ``waitid``, no walk of ``/proc``): every descendant hangs
        from a child of ours through living parents, since a process whose parent ends
        is re-parented to us (we are its subreaper) before that parent can be reaped.
        """
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return False
        return True

    def settled(self) -> bool:
        """Reap what has exited; return whether nothing at all is left below us (not even
        a zombie: one whose parent is still alive comes to us when that parent ends)."""
        self.reap()
        return not self.has_children()

    def end_tree(self) -> None:
        """SIGTERM every descendant, SIGKILL what is left after the grace period, and reap
        every one, so nothing (not even a zombie) is left below us."""
        if self.settled():
            return  # the usual end: the command left nothing behind; /proc is not read
        for entry in self.living():
            if signal_entry(entry, signal.SIGTERM):
                signal_entry(entry, signal.SIGCONT)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            if self.settled():
                return
            time.sleep(PASS_PAUSE_S)
        for _ in range(KILL_PASSES):
            for entry in self.living():
                signal_entry(entry, signal.SIGKILL)
            time.sleep(PASS_PAUSE_S)
            if self.settled():
                return

    def report(self) -> None:
        """Tell upkeep how the command ended: ``exit CODE`` or ``signal NUMBER``."""
        status = self.child_status or 0
        if os.WIFSIGNALED(status):
            self.tell(f"signal {os.WTERMSIG(status)}")
        else:
            self.tell(f"exit {os.waitstatus_to_exitcode(status)}")

    def run(self) -> int:
        """Start the command, wait for it or for end-of-file from upkeep, end the tree,
        report the command's exit; return this process's exit code (0)."""
        become_subreaper()
        # SIGTERM, SIGINT or SIGHUP to us (our process group, a person) ends the tree too.
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda number, frame: None)
        ignored = ignore_stray_signals()
        try:
            # posix_spawn reports a command that cannot start here, as an OSError; every
            # signal this process handles or ignores is the command's default again.
            self.child = os.posix_spawnp(
                self.argv[0],
                self.argv,
                dict(os.environ),
                setsigdef=(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, *ignored),
            )
        except OSError as error:
            self.tell(f"error {error.errno or 0}")
            return 0
        self.tell(f"started {self.child}")
        try:
            exited = os.pidfd_open(self.child)
        except OSError:
            exited = -1
        watched = [fd for fd in (self.control, wake_read, exited) if fd >= 0]
        stop = False
        while self.child_status is None and not stop:
            readable, _, _ = select.select(watched, [], [], HOUSEKEEPING_S)
            if self.control in readable:
                try:
                    stop = not os.read(self.control, 64)
                except OSError:
                    stop = True
            if wake_read in readable:
                os.read(wake_read, 64)
                stop = True
            self.reap()
        reported = self.child_status is not None
        if reported:
            # Said at once, so upkeep's deadline covers the command and not our cleanup.
            self.report()
        if stop or not self.leave_detached:
            self.end_tree()
        if self.child_status is None:
            # end_tree ends the child too; only a process stuck in the kernel (state D)
            # outlives it, and then upkeep's own deadline ends this wait.
            try:
                _, self.child_status = os.waitpid(self.child, 0)
            except ChildProcessError:
                self.child_status = 0
        if not reported:
            self.report()
        return 0


def parse_arguments(arguments: list[str]) -> tuple[list[str], int, float, bool]:
    """Given this program's arguments, return (argv, control fd, grace, leave_detached).

    Raise ValueError if they are not ``--control-fd N --grace S [--leave-detached] --
    argv...`` with a non-empty argv.
    """
    if "--" not in arguments:
        raise ValueError("missing -- before the command")
    split = arguments.index("--")
    options, argv = arguments[:split], arguments[split + 1 :]
    if not argv:
        raise ValueError("no command after --")
    control, grace, leave_detached = -1, 2.0, False
    index = 0
    while index < len(options):
        option = options[index]
        if option == "--leave-detached":
            leave_detached = True
            index += 1
        elif option in ("--control-fd", "--grace") and index + 1 < len(options):
            if option == "--control-fd":
                control = int(options[index + 1])
            else:
                grace = float(options[index + 1])
            index += 2
        else:
            raise ValueError(f"unknown option {option!r}")
    if control < 0:
        raise ValueError("--control-fd is required")
    return argv, control, grace, leave_detached


def main(arguments: list[str]) -> int:
    """Run as a program: supervise the command given after ``--``; return the exit code."""
    try:
        argv, control, grace, leave_detached = parse_arguments(arguments)
    except ValueError as error:
        sys.stderr.write(f"upkeep supervisor: {error}\n")
        return 2
    os.set_inheritable(control, False)
    return Supervisor(argv, control, grace, leave_detached).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
