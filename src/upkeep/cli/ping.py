"""``upkeep ping``: tell a heartbeat that a job started, succeeded or failed.

For scripts and crontabs: ``upkeep ping ID`` sends a success, ``--start``, ``--fail``,
``--log`` and ``--exit-code N`` the other signals, with a body from ``--data-file``
(``-``: standard input). ``upkeep ping ID -- COMMAND ARGS...`` wraps a job: it sends a
start, runs the command (through the process seam, its whole tree ended with it), sends
its exit code with the end of its output, prints its output, and exits with its exit code,
so cron still sees the job's own result. The ping goes to ``--url`` (or
``$UPKEEP_URL``), else the config's ``alerting.public_url``, else ``engine.listen``.

Each ping is tried ``--retries`` more times after a connection failure, a timeout, a 408,
429 or 5xx (as ``curl --retry`` does), waiting 1 s, then 2 s, 4 s, ... between tries; each
try has ``PING_TIMEOUT_S``. The id is a credential: it is never printed (``/ping/***``).
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from upkeep.cli.common import EXIT_FAILED, EXIT_USAGE, console

PING_TIMEOUT_S = 10.0
"""Named timeout: one try of a ping (connect, send, answer)."""
DEFAULT_RETRIES = 5
"""Tries after the first, as ``curl --retry 5``."""
FIRST_BACKOFF_S = 1.0
"""The wait before the first retry; it doubles each retry."""
MAX_BACKOFF_S = 60.0
"""The longest wait between two tries."""
BODY_BYTES = 10 * 1024
"""The end of a body (a data file, a wrapped command's output) sent with a ping."""
COMMAND_OUTPUT_BYTES = 64 * 1024
"""How much of a wrapped command's stdout and of its stderr is kept (the end) and printed."""
DEFAULT_COMMAND_TIMEOUT_S = 24 * 3600.0
"""A wrapped command still running after this long is ended and reported failed."""
EXIT_TIMED_OUT = 124
"""A wrapped command that ran out of time (``timeout(1)``'s code)."""
EXIT_NOT_STARTED = 127
"""A wrapped command that could not be started (the shell's code)."""
RETRIED_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Answers worth another try, as ``curl --retry`` has them."""
_ID = re.compile(r"^[A-Za-z0-9_-]{22,128}$")


@dataclass(frozen=True)
class PingOutcome:
    """Whether a ping was taken, and if not, why (never naming the id)."""

    ok: bool
    reason: str = ""


def signal_path(start: bool, fail: bool, log: bool, exit_code: int | None) -> str | None:
    """Given the signal options, return the ping URL's last segment ("" for a success);
    None if more than one was given."""
    chosen = [
        segment
        for segment, given in (
            ("/start", start),
            ("/fail", fail),
            ("/log", log),
            (f"/{exit_code}", exit_code is not None),
        )
        if given
    ]
    if len(chosen) > 1:
        return None
    return chosen[0] if chosen else ""


def listen_url(listen: str) -> str:
    """Given ``engine.listen`` (``host:port``), return the URL a local client reaches it
    at: an address that listens on every interface is reached on loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 - read, not bound
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def base_url(url: str | None, config_path: Path | None) -> str | None:
    """Given ``--url`` and ``-c``, return the daemon's base URL: the URL given, else the
    config's ``alerting.public_url``, else its ``engine.listen``; None (the reason
    printed) if there is no URL and the config cannot be loaded."""
    if url:
        return url.rstrip("/")
    from upkeep.cli.common import load_or_report

    loaded = load_or_report(config_path)
    if loaded is None:
        console(stderr=True).print(
            "upkeep: give the daemon's address with --url (or $UPKEEP_URL), or a config",
            markup=False,
        )
        return None
    config = loaded.config
    if config.alerting.public_url:
        return config.alerting.public_url.rstrip("/")
    return listen_url(config.engine.listen)


async def send_ping(
    base: str, heartbeat_id: str, segment: str, body: bytes, *, retries: int
) -> PingOutcome:
    """Given the daemon's base URL, the id, the signal segment and a body, send the ping,
    retrying after failures worth a retry; return whether the daemon took it."""
    from upkeep.io.http import HttpClient, HttpError

    url = f"{base}/ping/{heartbeat_id}{segment}"
    shown = f"{base}/ping/***{segment}"
    client = HttpClient(pool_limit=4)
    wait = FIRST_BACKOFF_S
    reason = ""
    try:
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(wait)
                wait = min(wait * 2, MAX_BACKOFF_S)
            try:
                response = await client.request(
                    "POST",
                    url,
                    timeout_s=PING_TIMEOUT_S,
                    headers={"content-type": "text/plain; charset=utf-8"},
                    body=body,
                    keep_body=True,
                )
            except HttpError as error:
                # The client's own description may name the URL (a redirect loop does).
                reason = f"{shown}: {str(error).replace(heartbeat_id, '***')}"
                continue
            if response.status_code == 200:
                return PingOutcome(True)
            answer = response.body[:200].decode("utf-8", "replace").strip()
            answer = answer.replace(heartbeat_id, "***")
            reason = f"{shown}: HTTP {response.status_code} {answer}".rstrip()
            if response.status_code not in RETRIED_STATUSES:
                break
    finally:
        await client.close()
    return PingOutcome(False, reason)


def _read_data(data_file: str | None) -> bytes:
    if data_file is None:
        return b""
    if data_file == "-":
        return sys.stdin.buffer.read()[-BODY_BYTES:]
    with Path(data_file).open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - BODY_BYTES))
        return handle.read(BODY_BYTES)


def _say(text: str) -> None:
    console(stderr=True).print(f"upkeep: {text}", markup=False)


def run_ping(
    heartbeat_id: str,
    *,
    start: bool,
    fail: bool,
    log: bool,
    exit_code: int | None,
    url: str | None,
    data_file: str | None,
    retries: int,
    config_path: Path | None,
    command: list[str],
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
) -> int:
    """Send one ping, or wrap a command in a start and its exit code; return the exit
    code: 0 (taken), 1 (refused or not delivered), 2 (bad input), or the command's."""
    if not _ID.fullmatch(heartbeat_id):
        _say("a heartbeat id is 22 to 128 letters, digits, - and _")
        return EXIT_USAGE
    segment = signal_path(start, fail, log, exit_code)
    if segment is None or (command and segment):
        _say("give one of --start, --fail, --log, --exit-code, or a command after --")
        return EXIT_USAGE
    if exit_code is not None and not 0 <= exit_code <= 255:
        _say("--exit-code is 0 to 255")
        return EXIT_USAGE
    if command and data_file is not None:
        _say("--data-file cannot go with a command: the command's output is sent")
        return EXIT_USAGE
    if url is not None and urlsplit(url).scheme not in ("http", "https"):
        _say("--url is an http:// or https:// address")
        return EXIT_USAGE
    base = base_url(url, config_path)
    if base is None:
        return EXIT_USAGE
    from upkeep.cli.interrupts import run_async

    if command:
        return run_async(_wrap(base, heartbeat_id, command, retries, command_timeout_s))
    try:
        body = _read_data(data_file)
    except OSError as error:
        _say(f"cannot read {data_file}: {error.strerror or error}")
        return EXIT_USAGE
    outcome = run_async(send_ping(base, heartbeat_id, segment, body, retries=retries))
    if not outcome.ok:
        _say(f"ping not taken: {outcome.reason}")
        return EXIT_FAILED
    return 0


async def _wrap(
    base: str, heartbeat_id: str, command: list[str], retries: int, timeout_s: float
) -> int:
    """Send a start, run the command, print its output, send its exit code with the end
    of its output; return its exit code (124 timed out, 127 not started)."""
    from upkeep.io.process import ProcessStartError, run_process

    started = await send_ping(base, heartbeat_id, "/start", b"", retries=retries)
    if not started.ok:
        _say(f"start ping not taken (running the command anyway): {started.reason}")
    try:
        result = await run_process(
            command,
            timeout_s=timeout_s,
            max_output_bytes=COMMAND_OUTPUT_BYTES,
            keep_tail=True,
        )
    except ProcessStartError as error:
        _say(str(error))
        await _report(base, heartbeat_id, "/fail", str(error).encode(), retries)
        return EXIT_NOT_STARTED
    # The job's own output, passed through as it wrote it (as `timeout` or `nice` would):
    # cron mails it, and it is the job's, not text upkeep composed.
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    output = result.stdout + (f"\n--- stderr ---\n{result.stderr}" if result.stderr else "")
    body = output.encode("utf-8", "replace")[-BODY_BYTES:]
    if result.timed_out:
        _say(f"the command ran longer than {timeout_s:g}s and was ended")
        await _report(base, heartbeat_id, "/fail", body, retries)
        return EXIT_TIMED_OUT
    code = result.exit_code if result.exit_code is not None else 1
    # A command ended by a signal has a negative code; the shell reports 128 + signal.
    code = code if code >= 0 else 128 - code
    await _report(base, heartbeat_id, f"/{min(code, 255)}", body, retries)
    return code


async def _report(base: str, heartbeat_id: str, segment: str, body: bytes, retries: int) -> None:
    outcome = await send_ping(base, heartbeat_id, segment, body, retries=retries)
    if not outcome.ok:
        _say(f"ping not taken: {outcome.reason}")
