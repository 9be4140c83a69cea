"""``upkeep serve`` on a clock the test moves (test support, never shipped).

    python -m tests.support.clocked_serve CLOCK_FILE -c CONFIG [--listen HOST:PORT]

The same daemon as ``upkeep serve`` (``run_serve``: the config, logging, the listen checks,
``Daemon``), given an ``OffsetClock`` on ``CLOCK_FILE`` instead of the system clock. This is
the only way a daemon gets another clock: it takes the repository's ``tests`` package on
the path, which the wheel does not contain, and upkeep itself reads no variable or file
that would switch clocks, so a production daemon cannot run on it by accident.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    """Parse the arguments, run the daemon on the offset clock; return its exit code."""
    from tests.support.clocks import OffsetClock
    from upkeep.cli import interrupts
    from upkeep.cli.runbooks import run_serve

    parser = argparse.ArgumentParser(prog="clocked_serve")
    parser.add_argument("clock_file", type=Path)
    parser.add_argument("-c", "--config", type=Path, required=True)
    parser.add_argument("--listen")
    arguments = parser.parse_args()
    interrupts.install()  # as the ``upkeep`` entry point does
    return run_serve(arguments.config, arguments.listen, clock=OffsetClock(arguments.clock_file))


if __name__ == "__main__":
    sys.exit(main())
