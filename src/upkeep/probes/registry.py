"""The one explicit table of target kinds and their probes.

Adding a probe kind means: write ``probes/<kind>.py`` with its target model and probe
classes, then list them here. Nothing is discovered implicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from upkeep.probes import (
    backup,
    command,
    group,
    heartbeat,
    host,
    http,
    logs,
    mysql,
    postgres,
    postgres_health,
    redis,
    systemd,
    tcp,
    tls,
)
from upkeep.probes.base import Probe, TargetBase


@dataclass(frozen=True)
class TargetKind:
    """A target kind: its config model and its probes, the default one first."""

    name: str
    model: type[TargetBase]
    probes: tuple[type[Probe[Any, Any]], ...]

    @property
    def default_probe(self) -> str:
        """Return the name of the probe used when a check names none."""
        return self.probes[0].name

    def probe(self, name: str) -> type[Probe[Any, Any]] | None:
        """Given a probe name, return its class, or None if this kind has no such probe."""
        for probe in self.probes:
            if probe.name == name:
                return probe
        return None


TARGET_KINDS: dict[str, TargetKind] = {
    kind.name: kind
    for kind in (
        TargetKind("http", http.HttpTarget, (http.RequestProbe,)),
        TargetKind("tcp", tcp.TcpTarget, (tcp.ConnectProbe,)),
        TargetKind(
            "postgres",
            postgres.PostgresTarget,
            (
                postgres.PingProbe,
                postgres.ConnectionsProbe,
                postgres.LongQueriesProbe,
                postgres.ReplicationProbe,
                postgres.SizeProbe,
                postgres.VacuumProbe,
                postgres_health.WraparoundProbe,
                postgres_health.SequencesProbe,
                postgres_health.ReplicationSlotsProbe,
                postgres_health.TransactionsProbe,
                postgres.CacheHitProbe,
                postgres.IndexesProbe,
                postgres.QueryProbe,
            ),
        ),
        TargetKind(
            "mysql",
            mysql.MysqlTarget,
            (
                mysql.PingProbe,
                mysql.ConnectionsProbe,
                mysql.QueryProbe,
                mysql.IndexesProbe,
                mysql.FragmentationProbe,
            ),
        ),
        TargetKind(
            "redis",
            redis.RedisTarget,
            (
                redis.PingProbe,
                redis.MemoryProbe,
                redis.StatsProbe,
                redis.BigkeysProbe,
                redis.HealthProbe,
            ),
        ),
        TargetKind(
            "host",
            host.HostTarget,
            (
                host.DiskProbe,
                host.MemoryProbe,
                host.CpuProbe,
                host.LoadProbe,
                host.ProcessProbe,
                host.UptimeProbe,
                systemd.SystemdProbe,
            ),
        ),
        TargetKind(
            "logs",
            logs.LogsTarget,
            (
                logs.ErrorsProbe,
                logs.SizeProbe,
                logs.LevelsProbe,
                logs.SecurityProbe,
                logs.AccessProbe,
            ),
        ),
        TargetKind("tls", tls.TlsTarget, (tls.ExpiryProbe,)),
        TargetKind("command", command.CommandTarget, (command.RunProbe,)),
        TargetKind("backup", backup.BackupTarget, (backup.FreshnessProbe, backup.DrillProbe)),
        TargetKind("heartbeat", heartbeat.HeartbeatTarget, (heartbeat.StatusProbe,)),
        TargetKind("group", group.GroupTarget, (group.HealthProbe,)),
    )
}
