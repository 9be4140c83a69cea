"""The daemon running a plugin that leaves a detached grandchild behind, for 10 minutes.

Issue #11, finding 16: a plugin whose grandchild calls ``setsid`` (a new session and
process group) and outlives its parent survived the plugin's timeout; ``upkeep serve``
running such a plugin every 2 s leaked file descriptors (23 -> 47 in 30 s) and left 16
orphans. This runs the real ``upkeep serve`` (a separate process, SQLite store in a
temporary directory) on exactly that plugin:

    sh -c 'setsid sleep MARKER &'; sleep MARKER      (timeout 1s, every 2s)

and prints, every ``--report`` seconds: elapsed time, plugin launches so far, the daemon's
open fds, its threads, the living processes named by the marker (the current launch's
two at most) and zombies below the daemon. At the end: the same figures after SIGTERM,
and whether anything outlived the daemon.

Usage: .venv/bin/python benchmarks/process_trees.py [--duration 600] [--every 2s]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def marker_processes(marker: str) -> list[psutil.Process]:
    """Return the living (not zombie) processes whose argv ends with ``marker``."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[-1:] == [marker] and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def zombies_below(pid: int) -> int:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0
    count = 0
    for child in children:
        try:
            count += child.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            continue
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds to run")
    parser.add_argument("--every", default="2s", help="the check's interval")
    parser.add_argument("--timeout", default="1s", help="the check's timeout")
    parser.add_argument("--report", type=float, default=30.0, help="seconds between lines")
    args = parser.parse_args()
    marker = f"{3000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        launches = base / "launches.log"
        plugin = f"echo x >> {launches}; sh -c 'setsid sleep {marker} &'; sleep {marker}"
        (base / "upkeep.yaml").write_text(
            f"store: sqlite:///{base / 'upkeep.db'}\n"
            f'engine: {{listen: "127.0.0.1:{free_port()}"}}\n'
            "targets:\n"
            f"  plugin: {{kind: command, command: [sh, -c, {json.dumps(plugin)}]}}\n"
            "checks:\n"
            f"  leaky: {{target: plugin, probe: run, every: {args.every}, "
            f"timeout: {args.timeout}}}\n",
            encoding="utf-8",
        )
        environment = {key: value for key, value in os.environ.items() if key != "UPKEEP_CONFIG"}
        log = (base / "serve.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "upkeep.cli.main", "serve"],
            cwd=base,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        process = psutil.Process(daemon.pid)

        def launched() -> int:
            return len(launches.read_text().splitlines()) if launches.exists() else 0

        print(f"plugin every {args.every}, timeout {args.timeout}, for {args.duration:g}s")
        print(
            f"{'elapsed s':>9} {'launches':>8} {'fds':>5} {'threads':>7} {'sleepers':>8} {'zombies':>7}"
        )
        started = time.monotonic()
        try:
            while time.monotonic() - started < args.duration:
                time.sleep(min(args.report, args.duration - (time.monotonic() - started)))
                if daemon.poll() is not None:
                    raise SystemExit(f"upkeep serve exited {daemon.returncode}")
                print(
                    f"{time.monotonic() - started:>9.0f} {launched():>8} "
                    f"{process.num_fds():>5} {process.num_threads():>7} "
                    f"{len(marker_processes(marker)):>8} {zombies_below(daemon.pid):>7}",
                    flush=True,
                )
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(60)
            time.sleep(0.5)
            left = marker_processes(marker)
            print(f"after SIGTERM: exit {code}, {len(left)} plugin process(es) left")
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
            for leftover in marker_processes(marker):
                leftover.kill()
            log.close()


if __name__ == "__main__":
    main()
