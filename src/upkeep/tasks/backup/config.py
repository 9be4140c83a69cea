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

Which key makes which kind of source, and the rules of each kind, are the source kinds'
own (``registry.SOURCE_KINDS``). The section checks itself against the rest of the config
when the loader asks (``BackupsConfig.review``, a ``SelfCheckingSection``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, ValidatorFunctionWrapHandler, model_validator

from upkeep.core.durations import Duration
from upkeep.core.models import Reference, StrictModel, exactly_one_of, validate_with_key_rule
from upkeep.core.redaction import SecretMarker
from upkeep.probes.backup import BackupTarget
from upkeep.tasks.backup.registry import CONFIG_KEYS, PATH_KEYS, kind_for
from upkeep.tasks.backup.retention import RetentionRules
from upkeep.tasks.base import ProblemPath, SectionContext, SectionReview
from upkeep.tasks.copies import SftpOptions


class BackupSourceConfig(StrictModel):
    """One thing to back up: a database target, a SQLite file, or files."""

    target: Annotated[str, Reference(("targets",), "target")] | None = Field(
        default=None, description="a postgres, mysql or redis target"
    )
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

    @model_validator(mode="wrap")
    @classmethod
    def _one_kind(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> BackupSourceConfig:
        keys = f"{', '.join(CONFIG_KEYS[:-1])} or {CONFIG_KEYS[-1]}"
        rule = exactly_one_of(CONFIG_KEYS, f"a backup source has exactly one of {keys}")
        return validate_with_key_rule(cls, data, handler, rule)


class BackupsConfig(StrictModel):
    """Where backups go and how long they stay."""

    repository: str = Field(
        default=".upkeep/backups", description="directory of the repository (beside the config)"
    )
    copy_to: Annotated[str | None, SecretMarker(part="password")] = Field(
        default=None,
        description=(
            "a second destination: an absolute path or sftp://; retention applies there too, "
            "to this repository's copies only (other hosts' copies of a source of the same "
            "name are left alone)"
        ),
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
    sources: dict[str, BackupSourceConfig] = Field(
        default={},
        description="what is backed up, by name (the name `backup.*` tasks and targets use)",
    )

    def review(self, context: SectionContext) -> SectionReview[BackupsConfig]:
        """Given the rest of the config, return the section with its paths resolved, the
        ``backup`` targets completed with its repository and key (unless they name their
        own), and every problem: a second destination that cannot work, a source naming
        a target that cannot be backed up, what a source's kind refuses
        (``Source.validate``). Names that refer to nothing (a source's target, a ``backup``
        target's source) are the loader's to list, like every ``Reference``."""
        from upkeep.tasks.copies import location_problems

        problems: list[tuple[ProblemPath, str]] = []
        if self.copy_to is not None:
            problems += [
                (("backups", "copy_to"), problem)
                for problem in location_problems(self.copy_to, self.sftp)
            ]
        for name, source in self.sources.items():
            problems += _source_problems(("backups", "sources", name), source, context)
        resolved = self._resolved(context)
        return SectionReview(resolved, _completed_targets(resolved, context), problems)

    def _resolved(self, context: SectionContext) -> BackupsConfig:
        """Return the section with its local paths made absolute."""
        resolve = context.resolve_path

        def resolved_source(source: BackupSourceConfig) -> BackupSourceConfig:
            update: dict[str, Any] = {}
            for key in PATH_KEYS:
                value = getattr(source, key)
                if isinstance(value, str):
                    update[key] = resolve(value)
                elif isinstance(value, list):
                    update[key] = [resolve(path) for path in value]
            return source.model_copy(update=update)

        copy_to = self.copy_to
        if copy_to is not None and "://" not in copy_to:
            copy_to = resolve(copy_to)
        return self.model_copy(
            update={
                "repository": resolve(self.repository),
                "scratch": resolve(self.scratch) if self.scratch else None,
                "copy_to": copy_to,
                "sources": {name: resolved_source(s) for name, s in self.sources.items()},
            }
        )


def _source_problems(
    path: ProblemPath, source: BackupSourceConfig, context: SectionContext
) -> list[tuple[ProblemPath, str]]:
    """Return the problems of one entry of ``backups.sources``."""
    target = None
    if source.target is not None:
        target = context.targets.get(source.target)
        if target is None:
            return []  # the loader lists names that refer to nothing (``Reference``)
    kind = kind_for(source, target)
    if kind is None:
        found = target.kind if target is not None else "?"
        return [((*path, "target"), f"a {found} target cannot be backed up; use paths")]
    return [((*path, key), problem) for key, problem in kind.validate(source, target)]


def _completed_targets(backups: BackupsConfig, context: SectionContext) -> dict[str, Any]:
    """Return the targets with each ``backup`` target reading the section's repository,
    with its key (which authenticates the manifests and records), unless it names its own.
    (A source that is not configured is the loader's to list: ``Reference``.)"""
    targets = dict(context.targets)
    for name, target in context.targets.items():
        if not isinstance(target, BackupTarget):
            continue
        update: dict[str, Any] = {}
        if target.repository is None:
            update["repository"] = backups.repository
        if target.key is None and backups.key is not None:
            update["key"] = backups.key
        if update:
            targets[name] = target.model_copy(update=update)
    return targets
