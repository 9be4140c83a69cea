"""``upkeep init``: a starter config for this machine, and an API token for its daemon.

Host checks always; PostgreSQL, Redis and MariaDB/MySQL when they answer on their
default local ports, detected with the same ping probes the checks use.

The daemon's API refuses every request without a token, so ``init`` generates one
(256 random bits), prints it once and stores only its SHA-256 in
``.upkeep/api-token.sha256`` beside the config (mode 0600, created exclusively, never
through a link, in a directory nobody else can write). The config names it as
``engine.api_tokens.admin: ${file:.upkeep/api-token.sha256}``. The digest is no
credential: a copy of the config directory, a backup or a world-readable file does not
let anyone call the API, and nobody can recover the token from it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import platform
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DETECT_TIMEOUT_S = 2.0
"""Named timeout: how long a candidate service gets to answer a ping during detection."""
STATE_DIRECTORY = ".upkeep"
"""Beside the config: the SQLite store and the API token's digest."""
TOKEN_FILE = "api-token.sha256"  # noqa: S105 - a file name; the file holds a digest
"""The file in ``STATE_DIRECTORY`` holding ``sha256:<hex>`` of the generated token."""
TOKEN_NAME = "admin"  # noqa: S105 - a token's name, not a token
"""The generated token's name: what it changes is recorded as made by ``api:admin``."""
TOKEN_PREFIX = "upk_"  # noqa: S105 - the fixed start of every generated token
"""Generated tokens start with this, so a leaked one is recognisable (secret scanners)."""


class TokenFileError(Exception):
    """The token file cannot be written safely; the message says why and what to do."""


@dataclass(frozen=True)
class Found:
    """A local service that answered."""

    kind: str
    address: str
    version: str


CANDIDATES: tuple[tuple[str, str], ...] = (
    ("postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
    ("postgres", f"postgresql://{os.environ.get('USER', 'root')}@127.0.0.1:5432/postgres"),
    ("redis", "redis://127.0.0.1:6379/0"),
    ("mysql", "mysql://root@127.0.0.1:3306/mysql"),
)


async def _ping(kind: str, address: str) -> Found | None:
    from datetime import timedelta

    from upkeep.core.redaction import Redactor
    from upkeep.io.http import HttpClient
    from upkeep.probes.base import ProbeContext, TargetUnreachable
    from upkeep.probes.registry import TARGET_KINDS

    target_kind = TARGET_KINDS[kind]
    field = "url" if kind == "redis" else "dsn"
    target = target_kind.model.model_validate({"kind": kind, field: address})
    probe_class = target_kind.probes[0]
    http = HttpClient()
    context = ProbeContext(
        timeout=timedelta(seconds=DETECT_TIMEOUT_S), http=http, redactor=Redactor()
    )
    try:
        async with asyncio.timeout(DETECT_TIMEOUT_S):
            outcome = await probe_class().run(target, probe_class.Params(), context)
    except (TargetUnreachable, TimeoutError, OSError):
        return None
    finally:
        await http.close()
    return Found(kind, address, str(outcome.metrics.get("version", "")))


async def detect_services() -> list[Found]:
    """Return the local services that answered, at most one per kind, in candidate order."""
    answers = await asyncio.gather(*(_ping(kind, address) for kind, address in CANDIDATES))
    found: dict[str, Found] = {}
    for answer in answers:
        if answer is not None and answer.kind not in found:
            found[answer.kind] = answer
    return list(found.values())


def local_timezone() -> str:
    """Return this machine's IANA timezone name, or UTC when it cannot be told."""
    from_env = os.environ.get("TZ", "").lstrip(":")
    if from_env and "/" in from_env:
        return from_env
    try:
        link = os.readlink("/etc/localtime")
    except OSError:
        return "UTC"
    marker = "zoneinfo/"
    return link.split(marker, 1)[1] if marker in link else "UTC"


SERVICE_BLOCKS: dict[str, tuple[str, str]] = {
    "postgres": (
        '  postgres: {{kind: postgres, dsn: "{address}", labels: {{role: database}}}}\n',
        """  postgres-ping:
    target: postgres
    every: 30s
    warn: latency_ms > 100
    crit: latency_ms > 1000
    severity: P1
  postgres-connections:
    target: postgres
    probe: connections
    every: 1m
    warn: usage_percent > 80
    crit: usage_percent > 90
    severity: P2
  postgres-long-queries:
    target: postgres
    probe: long_queries
    params: {over: 5m}
    every: 1m
    warn: count > 0
  postgres-vacuum:
    target: postgres
    probe: vacuum
    every: 1h
    warn: dead_tuple_percent_max > 20
""",
    ),
    "redis": (
        '  redis: {{kind: redis, url: "{address}", labels: {{role: cache}}}}\n',
        """  redis-ping:
    target: redis
    every: 30s
    warn: latency_ms > 50
    crit: latency_ms > 500
    severity: P2
  redis-memory:
    target: redis
    probe: memory
    every: 5m
    warn: used_percent > 80
    crit: used_percent > 95
""",
    ),
    "mysql": (
        '  mysql: {{kind: mysql, dsn: "{address}", labels: {{role: database}}}}\n',
        """  mysql-ping:
    target: mysql
    every: 30s
    warn: latency_ms > 100
    crit: latency_ms > 1000
    severity: P1
  mysql-connections:
    target: mysql
    probe: connections
    every: 1m
    warn: usage_percent > 80
    crit: usage_percent > 90
    severity: P2
""",
    ),
}


STARTER_ALERTS = """
# Alerts go NOWHERE yet: an alert is sent only through a channel that a route names.
# Until you add both, `upkeep check` and `upkeep serve` record alerts (see `upkeep alerts`)
# and notify nobody. To be told, uncomment and edit this (any Apprise URL works:
# mailto://, json://, slack://, ntfy://, ...); `upkeep validate` checks it and
# `upkeep notify test ops` sends a test message.
#
# channels:
#   ops: "mailto://${SMTP_USER}:${SMTP_PASSWORD}@smtp.example.com?to=oncall@example.com"
#
# routes:
#   - name: everything-to-ops
#     notify: [ops]
#     group_wait: 30s
#     repeat: 4h
"""

STARTER_RUNBOOKS = """
# `upkeep run daily-health-check --dry-run` shows what a run does; `upkeep serve` runs it
# every morning, and every check on its `every:`.
runbooks:
  daily-health-check:
    description: Morning health check
    schedule: "0 9 * * *"
    steps:
      - checks: {}
      - manual: Review overnight alerts and anything not ok above
"""


def render_config(found: list[Found], timezone: str) -> str:
    """Given detected services and a timezone, return the starter config text (its API
    token is read from ``.upkeep/api-token.sha256`` beside it)."""
    host = platform.node() or "this host"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    found_text = (
        ", ".join(f"{item.kind} {item.version}".strip() for item in found) or "no local services"
    )
    targets = "  local: {kind: host, labels: {role: host}}\n"
    checks = """  root-disk:
    target: local
    probe: disk
    params: {path: /}
    every: 5m
    warn: used_percent > 80
    crit: used_percent > 90
    severity: P2
  memory:
    target: local
    probe: memory
    every: 1m
    warn: used_percent > 85
    crit: used_percent > 95
  load:
    target: local
    probe: load
    every: 1m
    warn: load_per_cpu > 2
    crit: load_per_cpu > 4
  cpu:
    target: local
    probe: cpu
    every: 1m
    warn: used_percent > 90
    crit: used_percent > 98
    # A busy minute is normal (a build, a backup): only a CPU busy for 5 minutes and 5
    # results in a row opens an incident.
    for: 5m
    after: 5
"""
    for item in found:
        target_block, check_block = SERVICE_BLOCKS[item.kind]
        targets += target_block.format(address=item.address)
        checks += check_block
    return (
        f"# upkeep starter config, written by `upkeep init` on {host} at {stamp}.\n"
        f"# Found: {found_text}. Edit freely; `upkeep validate` checks it, `upkeep check` runs it.\n"
        f"# Reference: docs/probes.md lists every probe and metric.\n"
        f"timezone: {timezone}\n"
        "store: sqlite:///.upkeep/upkeep.db\n"
        "\nengine:\n"
        "  listen: 127.0.0.1:9464\n"
        "  # /healthz and /metrics answer anyone; the API (/api/...) needs\n"
        "  # `Authorization: Bearer <token>`. `upkeep init` showed the token once; the file\n"
        "  # holds only its SHA-256. More tokens: one line each, `name: <token or sha256:hex>`.\n"
        "  api_tokens:\n"
        f"    {TOKEN_NAME}: ${{file:{STATE_DIRECTORY}/{TOKEN_FILE}}}\n"
        "\ntargets:\n"
        f"{targets}"
        "\nchecks:\n"
        f"{checks}"
        f"{STARTER_ALERTS}"
        f"{STARTER_RUNBOOKS}"
    )


def new_token() -> str:
    """Return a new API token: ``upk_`` and 256 random bits, URL-safe base64."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def write_token_digest(directory: Path, token: str) -> Path | None:
    """Given the state directory and a new token, write ``sha256:<hex>`` of it to the
    token file (0600, in a private 0700 directory, never through a link); return the file,
    or None if a private token file of ours is already there (it stays in force).

    Raise TokenFileError if the file cannot be written safely.
    """
    from upkeep.io.safefs import UnsafeFileError, is_private_file, open_private_directory

    path = directory / TOKEN_FILE
    try:
        with open_private_directory(directory) as state:
            existing = state.lstat(TOKEN_FILE)
            if existing is not None:
                if is_private_file(existing):
                    return None
                raise TokenFileError(
                    f"{path} exists and is not a private file of yours (a symlink, or readable "
                    "or owned by others); it is left alone. Remove it and run init again"
                )
            digest = hashlib.sha256(token.encode("ascii")).hexdigest()
            state.write_atomic(TOKEN_FILE, f"sha256:{digest}\n".encode("ascii"), mode=0o600)
    except UnsafeFileError as error:
        raise TokenFileError(
            f"cannot use {directory} for the API token: {error.strerror} "
            "(a symlink, or a directory others can write, is refused); make it yours and "
            "not group/world writable, then run init again"
        ) from None
    except OSError as error:
        raise TokenFileError(f"cannot create {path}: {error.strerror or error}") from None
    return path


def _write_config(path: Path, text: str) -> None:
    """Write the config (0600) through an unguessable temporary file in its directory,
    then rename it into place (a link planted at any name is never followed)."""
    from upkeep.io.safefs import Directory

    with Directory.open(path.parent, create=True) as directory:
        directory.write_atomic(path.name, text.encode("utf-8"), mode=0o600)


def run_init(config_path: Path | None, *, force: bool) -> int:
    """Write the starter config unless one exists (or ``force``), and an API token unless
    one is there; return 0, 1 if the config exists, or 2 if a file cannot be written safely.
    """
    from upkeep.cli.common import console
    from upkeep.config.loader import find_config_path

    path = find_config_path(config_path)
    out = console()
    if path.exists() and not force:
        out.print(f"{path} exists; keeping it (use --force to overwrite)", markup=False)
        return 1
    found = asyncio.run(detect_services())
    text = render_config(found, local_timezone())
    token = new_token()
    try:
        written = write_token_digest(path.parent / STATE_DIRECTORY, token)
        _write_config(path, text)
    except (TokenFileError, OSError) as error:
        console(stderr=True).print(f"upkeep init: {error}", markup=False)
        return 2
    names = ", ".join(item.kind for item in found) or "none"
    out.print(
        f"wrote {path}: host checks, local services found: {names}", markup=False, soft_wrap=True
    )
    token_file = path.parent / STATE_DIRECTORY / TOKEN_FILE
    if written is None:
        out.print(
            f"kept the API token whose SHA-256 is in {token_file} (named {TOKEN_NAME})",
            markup=False,
        )
        return 0
    out.print(
        f"API token {TOKEN_NAME!r}, shown only now (only its SHA-256 is kept, in "
        f"{token_file}); store it where your API clients read secrets:",
        markup=False,
        soft_wrap=True,
    )
    out.print(f"  {token}", markup=False, soft_wrap=True)
    out.print(
        f"use it: curl -H 'Authorization: Bearer {token}' http://127.0.0.1:9464/api/runs",
        markup=False,
        soft_wrap=True,
    )
    return 0
