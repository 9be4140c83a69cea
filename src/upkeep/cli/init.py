"""``upkeep init``: a starter config for this machine.

Host checks always; PostgreSQL, Redis and MariaDB/MySQL when they answer on their
default local ports, detected with the same ping probes the checks use.
"""

from __future__ import annotations

import asyncio
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

DETECT_TIMEOUT_S = 2.0
"""Named timeout: how long a candidate service gets to answer a ping during detection."""


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

    from upkeep.io.http import HttpClient
    from upkeep.probes.base import ProbeContext, TargetUnreachable
    from upkeep.probes.registry import TARGET_KINDS
    from upkeep.redaction import Redactor

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
    """Given detected services and a timezone, return the starter config text."""
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
        "\ntargets:\n"
        f"{targets}"
        "\nchecks:\n"
        f"{checks}"
        f"{STARTER_RUNBOOKS}"
    )


def run_init(config_path: Path | None, *, force: bool) -> int:
    """Write the starter config unless one exists (or ``force``); return 0, or 1 if it exists."""
    from upkeep.cli.common import console
    from upkeep.config.loader import find_config_path

    path = find_config_path(config_path)
    out = console()
    if path.exists() and not force:
        out.print(f"{path} exists; keeping it (use --force to overwrite)", markup=False)
        return 1
    found = asyncio.run(detect_services())
    text = render_config(found, local_timezone())
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    names = ", ".join(item.kind for item in found) or "none"
    out.print(f"wrote {path}: host checks, local services found: {names}", markup=False)
    return 0
