"""`upkeep serve` refuses a busy port with a clear message and exit 2, and cleans up."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def test_serve_on_a_busy_port_exits_2_and_says_why(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        config = tmp_path / "upkeep.yaml"
        config.write_text(
            f'engine: {{listen: "127.0.0.1:{port}"}}\n'
            "targets:\n  box: {kind: host}\nchecks:\n  disk: {target: box, probe: disk}\n"
        )
        done = subprocess.run(
            [sys.executable, "-m", "upkeep.cli.main", "serve", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
