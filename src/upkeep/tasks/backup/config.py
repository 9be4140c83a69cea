"""The ``backups:`` section: where backups go, how long they stay, what is backed up.

```yaml
backups:
  repository: /var/backups/upkeep      # default .upkeep/backups beside the config
  copy_to: sftp://backup@10.0.0.9/srv/upkeep   # a second destination (or a path)
  sftp: {identity_file: ~/.ssh/backup_ed25519, known_hosts: ~/.ssh/known_hosts}
  key: ${BACKUP_KEY}                   # encrypt at rest (AES-256-GCM); a secret
  retention: {keep_daily: 30, keep_weekly: 13, keep_monthly: 12}
  sources:
    db:     {target: db, format: directory, jobs: 2, rto: 15m, rpo: 24h,
             validate: ["SELECT count(*) > 0 FROM orders"]}
    orders: {target: orders-db}
    cache:  {target: cache}
    app:    {sqlite: /var/lib/app/app.db}
    config: {paths: [/etc/nginx, /etc/app]}
```
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import Field, model_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.redaction import SecretMarker
from upkeep.tasks.backup.retention import RetentionRules
from upkeep.tasks.copies import SftpOptions

SOURCE_KINDS = ("target", "sqlite", "paths", "upkeep")


class BackupSourceConfig(StrictModel):
    """One thing to back up: a database target, a SQLite file, or files."""

    target: str | None = Field(default=None, description="a postgres, mysql or redis target")
    sqlite: str | None = Field(default=None, description="a SQLite database file")
    paths: list[str] | None = Field(default=None, description="files and directories")
    upkeep: Literal[True] | None = Field(
        default=None, description="upkeep's own config file and store"
    )
    format: Literal["custom", "directory"] = Field(
        default="custom", description="PostgreSQL: pg_dump format (directory allows jobs)"
    )
    jobs: int = Field(default=1, ge=1, le=64, description="PostgreSQL: parallel dump/restore")
    rto: Duration | None = Field(default=None, description="recovery time objective")
    rpo: Duration | None = Field(default=None, description="recovery point objective")
    validate_queries: list[str] = Field(
        default=[],
        alias="validate",
        description="drill queries on the restored copy; each must return a row whose "
        "first value is true (or a non-zero number)",
    )
    timeout: Duration = Field(default=timedelta(hours=6), description="a dump or restore")

    @model_validator(mode="after")
    def _one_kind(self) -> BackupSourceConfig:
        given = [name for name in SOURCE_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a backup source has exactly one of target, sqlite, paths or upkeep")
        if self.paths is not None and not self.paths:
            raise ValueError("paths must list at least one file or directory")
        return self


class BackupsConfig(StrictModel):
    """Where backups go and how long they stay."""

    repository: str = Field(
        default=".upkeep/backups", description="directory of the repository (beside the config)"
    )
    copy_to: Annotated[str | None, SecretMarker(part="password")] = Field(
        default=None, description="a second destination: an absolute path or sftp://"
    )
    sftp: SftpOptions | None = Field(default=None, description="login for an sftp:// copy_to")
    key: Annotated[str | None, SecretMarker()] = Field(
        default=None, description="encrypt backups at rest with this secret (AES-256-GCM)"
    )
    retention: RetentionRules = Field(default=RetentionRules(), description="keep rules")
    scratch: str | None = Field(
        default=None,
        description="where dumps, drills and restores work (default: <repository>/.scratch); "
        "must be upkeep's user's, not writable by group or others",
    )
    sources: dict[str, BackupSourceConfig] = {}


DATABASE_KINDS = ("postgres", "mysql", "redis")


def backup_problems(
    backups: BackupsConfig, target_kinds: dict[str, str]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Given the section and the kind of every target, return (key path, problem) pairs."""
    from upkeep.tasks.copies import location_problems

    problems: list[tuple[tuple[str | int, ...], str]] = []
    if backups.copy_to is not None:
        problems += [
            (("backups", "copy_to"), problem)
            for problem in location_problems(backups.copy_to, backups.sftp)
        ]
    for name, source in backups.sources.items():
        path: tuple[str | int, ...] = ("backups", "sources", name)
        if source.target is not None:
            kind = target_kinds.get(source.target)
            if kind is None:
                problems.append(((*path, "target"), f"no target named {source.target!r}"))
            elif kind not in DATABASE_KINDS:
                problems.append(
                    ((*path, "target"), f"a {kind} target cannot be backed up; use paths")
                )
        if source.jobs > 1 and source.format != "directory":
            problems.append(((*path, "jobs"), "parallel jobs need format: directory"))
    return problems


def resolved(backups: BackupsConfig, resolve: Callable[[str], str]) -> BackupsConfig:
    """Return the section with its local paths made absolute by ``resolve``."""
    sources = {
        name: source.model_copy(
            update={
                "sqlite": resolve(source.sqlite) if source.sqlite else None,
                "paths": [resolve(path) for path in source.paths] if source.paths else None,
            }
        )
        for name, source in backups.sources.items()
    }
    copy_to = backups.copy_to
    if copy_to is not None and "://" not in copy_to:
        copy_to = resolve(copy_to)
    return backups.model_copy(
        update={
            "repository": resolve(backups.repository),
            "scratch": resolve(backups.scratch) if backups.scratch else None,
            "copy_to": copy_to,
            "sources": sources,
        }
    )
