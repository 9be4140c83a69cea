"""The backups API: the repository's backups (``upkeep backup list``), and taking,
verifying and drilling them (``upkeep backup create|verify``, ``upkeep drill``) as jobs.

Taking a backup or restoring one for a drill takes minutes to hours, longer than any
HTTP client should wait: each is a job (``upkeep.web.jobs``) answered with 202 and its
id; ``GET /api/jobs/{id}`` gives its outcome, and the backup catalog records it as the
command does. Afterwards, as after the command, the source's checks run through the
daemon's pipeline, so a failed backup or drill alerts at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from upkeep.core.access import Scope
from upkeep.web.guard import CHANGE_REFUSALS, READ_REFUSALS
from upkeep.web.inputs import ApiBody, RecordId, Runner, needs
from upkeep.web.jobs import JobBusy
from upkeep.web.models import Answer
from upkeep.web.queries import NAME_PATTERN, BackupId, SourceName

if TYPE_CHECKING:
    from upkeep.tasks.backup.service import BackupEnv, DrillReport
    from upkeep.web.app import DaemonState


class BackupRow(Answer):
    """A backup in the repository (`upkeep backup list --json`)."""

    id: str
    source: str
    started_at: str
    intact: bool
    problem: str | None
    raw_bytes: int | None
    stored_bytes: int | None
    encrypted: bool
    verified: str
    label: str | None
    path: str


class BackupList(Answer):
    """The repository's backups, the latest failed attempts, and whether others may write it."""

    backups: list[BackupRow]
    failed_attempts: list[dict[str, Any]]
    repository_exposed: list[str]


class JobModel(Answer):
    """Long work the API started: poll `GET /api/jobs/{id}` until it is not `running`."""

    id: int
    kind: str = Field(description="`backup`, `verify` or `drill`")
    key: str = Field(description="what it works on (a source)")
    started_by: str
    started_at: str
    status: str = Field(description="`running`, `succeeded` or `failed`")
    finished_at: str | None
    result: dict[str, Any] = Field(
        description="what the command's `--json` says, and the `problems` of recording "
        "the checks run afterwards"
    )
    error: str | None


class VerifyRequest(ApiBody):
    """How to verify a backup."""

    restore: bool = Field(
        default=False,
        description="restore it into a scratch copy and compare (else: re-hash it)",
    )


class DrillRequest(ApiBody):
    """A restore drill's objectives, as `upkeep drill` takes them."""

    rto: str | None = Field(
        default=None, max_length=40, description="recovery time objective, e.g. 15m"
    )
    rpo: str | None = Field(
        default=None, max_length=40, description="recovery point objective, e.g. 1d"
    )
    take_backup: bool = Field(
        default=False, description="take a new backup first instead of the newest one"
    )


def backup_env(state: DaemonState) -> BackupEnv:
    """Given the daemon's state, return the backup environment of the config in force
    (as a runbook's backup task builds it: ``tasks.backup.tasks.env_of``)."""
    from zoneinfo import ZoneInfo

    from upkeep.store.store import normalise_url
    from upkeep.tasks.backup.service import BackupEnv

    loaded = state.loaded
    config = loaded.config
    return BackupEnv(
        config.backups,
        config.targets,
        state.store.backups,
        ZoneInfo(config.timezone),
        config_path=loaded.path,
        store_url=normalise_url(config.store.url, loaded.base_dir),
        store_schema=config.store.schema_name,
    )


async def check_sources(
    state: DaemonState, sources: list[str], drill: DrillReport | None = None
) -> list[str]:
    """Run the checks on the ``backup`` targets of ``sources`` now through the daemon's
    pipeline (and record a drill's verdict as upkeep's own drill check), as the command
    does after its work; return what went wrong. Without a daemon's pipeline nothing is
    run, and that is said."""
    from upkeep.tasks.backup.checks import drill_result, source_checks

    loaded = state.loaded
    names = [name for source in sources for name in source_checks(loaded.config, source)]
    own = drill_result(loaded.config, drill, loaded.redactor) if drill is not None else None
    if not names and own is None:
        return []
    if state.run_checks_now is None or state.record_results is None:
        return ["the source's checks were not run: no daemon owns a pipeline here"]
    problems: list[str] = []
    if own is not None:
        problems += await state.record_results([own])
    checks = [loaded.checks[name] for name in names if name in loaded.checks]
    if checks:
        _, found = await state.run_checks_now(checks)
        problems += found
    return problems


def _backup_list(state: DaemonState, source: str | None) -> BackupList | None:
    """Return the repository's backups (of ``source`` only, if given) as `upkeep backup
    list --json` shows them; None if there is no such source."""
    env = backup_env(state)
    if source is not None and source not in env.config.sources:
        return None
    from upkeep.tasks.backup.service import backup_row

    backups = env.repository.inventory(source)
    exposed = env.repository.exposure() if env.config.key is None else []
    failures = [
        record.to_json()
        for record in (env.catalog.records(source) if env.catalog is not None else [])
        if record.status == "failed"
    ]
    return BackupList.model_validate(
        {
            "backups": [backup_row(backup) for backup in backups],
            "failed_attempts": failures[:20],
            "repository_exposed": exposed,
        }
    )


Work = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
"""A job's work: returns whether it succeeded and its outcome."""


def _backup_work(state: DaemonState, env: BackupEnv, source: str) -> Work:
    """Return the work of taking a backup of ``source`` (as ``upkeep backup create``)."""
    from upkeep.tasks.backup.service import BackupFailed, create

    async def work() -> tuple[bool, dict[str, Any]]:
        try:
            report = await asyncio.to_thread(create, env, source)
        except BackupFailed as error:
            document: dict[str, Any] = {"source": source, "ok": False, "error": str(error)}
        else:
            document = {"source": source, "ok": True, **report.to_json()}
        document["problems"] = await check_sources(state, [source])
        return bool(document["ok"]), document

    return work


def _verify_work(state: DaemonState, env: BackupEnv, backup_id: str, restore: bool) -> Work:
    """Return the work of verifying a backup (as ``upkeep backup verify``)."""
    from upkeep.tasks.backup.service import BackupFailed, verify

    async def work() -> tuple[bool, dict[str, Any]]:
        try:
            report = await asyncio.to_thread(lambda: verify(env, backup_id, restore=restore))
        except BackupFailed as error:
            return False, {"id": backup_id, "ok": False, "error": str(error)}
        document = report.to_json()
        document["problems"] = await check_sources(state, [report.backup.source])
        return report.ok, document

    return work


def _drill_work(
    state: DaemonState,
    env: BackupEnv,
    name: str,
    objectives: tuple[timedelta | None, timedelta | None],
    take_backup: bool,
) -> Work:
    """Return the work of a restore drill of source ``name`` (as ``upkeep drill``), given
    its RTO and RPO objectives."""
    from upkeep.tasks.backup.service import BackupFailed, drill

    rto, rpo = objectives

    async def work() -> tuple[bool, dict[str, Any]]:
        try:
            report = await asyncio.to_thread(
                lambda: drill(env, name, rto=rto, rpo=rpo, take_backup=take_backup)
            )
        except BackupFailed as error:
            return False, {"source": name, "passed": False, "error": str(error)}
        document = report.to_json()
        document["problems"] = await check_sources(state, [name], report)
        return report.passed, document

    return work


def backup_router(state: DaemonState) -> APIRouter:
    """Given the daemon's state, return the backups, drills and jobs API routes."""
    router = APIRouter()

    @router.get(
        "/api/backups",
        responses={**READ_REFUSALS, 404: {"description": "no backup source of this name"}},
        response_description="`upkeep backup list --json`'s document",
        dependencies=[needs(Scope.READ)],
    )
    async def list_backups(
        source: Annotated[
            str | None,
            Query(pattern=NAME_PATTERN, max_length=200, description="only this source's"),
        ] = None,
    ) -> BackupList:
        """List the repository's backups, oldest first: intact with their verification,
        or damaged with why; the latest failed attempts; whether others may write it."""

        found = await asyncio.to_thread(_backup_list, state, source)
        if found is None:
            raise HTTPException(status_code=404, detail=f"no backup source named {source!r}")
        return found

    job_responses: dict[int | str, dict[str, Any]] = {
        **CHANGE_REFUSALS,
        404: {"description": "no such backup source (or backup)"},
        409: {"description": "a job on this source is still running"},
    }

    def start_job(kind: str, key: str, actor: str, work: Work) -> JobModel:
        try:
            job = state.jobs.start(kind, key, actor, work, state.loaded.redactor.redact)
        except JobBusy as busy:
            raise HTTPException(status_code=409, detail=str(busy)) from None
        return JobModel.model_validate(job.to_json())

    @router.post(
        "/api/backups/{source}",
        status_code=202,
        responses=job_responses,
        response_description="the job taking the backup",
    )
    async def create_backup(source: SourceName, who: Runner) -> JobModel:
        """Take a backup of a source now, as `upkeep backup create SOURCE` (retention and
        the copy included), then run the source's checks."""
        env = backup_env(state)
        if source not in env.config.sources:
            raise HTTPException(status_code=404, detail=f"no backup source named {source!r}")

        return start_job("backup", source, who.actor, _backup_work(state, env, source))

    @router.post(
        "/api/backups/{backup_id}/verify",
        status_code=202,
        responses=job_responses,
        response_description="the job verifying the backup",
    )
    async def verify_backup(
        backup_id: BackupId, who: Runner, body: VerifyRequest | None = None
    ) -> JobModel:
        """Verify a backup, as `upkeep backup verify ID [--restore]`, then run its
        source's checks. The body may be left out (re-hash only)."""
        request = body or VerifyRequest()
        env = backup_env(state)

        def find() -> str | None:
            try:
                return env.repository.get(backup_id).source
            except Exception:  # noqa: BLE001 - RepositoryError: no such backup
                return None

        source = await asyncio.to_thread(find)
        if source is None:
            raise HTTPException(status_code=404, detail=f"no backup {backup_id}")

        return start_job(
            "verify", source, who.actor, _verify_work(state, env, backup_id, request.restore)
        )

    @router.post(
        "/api/drills/{source}",
        status_code=202,
        responses=job_responses,
        response_description="the job running the drill",
    )
    async def run_drill(
        source: SourceName, who: Runner, body: DrillRequest | None = None
    ) -> JobModel:
        """Run a restore drill of a source (or of the source backing up a target), as
        `upkeep drill`: restore the newest backup into a scratch copy, validate it, measure
        RTO/RPO; its verdict is recorded and alerts like the command's."""
        from upkeep.tasks.backup.service import BackupFailed
        from upkeep.web.inputs import api_duration

        request = body or DrillRequest()
        rto = api_duration(request.rto, "rto") if request.rto is not None else None
        rpo = api_duration(request.rpo, "rpo") if request.rpo is not None else None
        env = backup_env(state)
        try:
            name = env.source_for(source)
        except BackupFailed as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

        return start_job(
            "drill", name, who.actor, _drill_work(state, env, name, (rto, rpo), request.take_backup)
        )

    @router.get(
        "/api/jobs/{job_id}",
        responses={**READ_REFUSALS, 404: {"description": "no job with this id in this daemon"}},
        response_description="the job, with its outcome once it is not `running`",
        dependencies=[needs(Scope.READ)],
    )
    async def show_job(job_id: RecordId) -> JobModel:
        """Show a backup, verification or drill job this daemon started."""
        job = state.jobs.get(job_id)
        if job is None:
            raise HTTPException(status_code=404, detail=f"no job {job_id}")
        return JobModel.model_validate(job.to_json())

    return router
