"""``upkeep backup list|create|verify|restore|prune`` and ``upkeep drill``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from upkeep.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    console,
    load_for_command,
    local_time,
    print_error,
    print_json,
    try_open_store,
)
from upkeep.cli.output import Column, print_table, untrusted
from upkeep.tasks.backup.service import backup_row

if TYPE_CHECKING:
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.store.repository import Backup
    from upkeep.store.store import Store
    from upkeep.tasks.backup.service import BackupEnv, DrillReport


@dataclass
class _Session:
    env: BackupEnv
    loaded: LoadedConfig
    store: Store | None
    open_error: str | None
    """Why the store could not be opened (the operations go on without its catalog)."""


@contextlib.contextmanager
def _session(config_path: Path | None) -> Iterator[_Session | None]:
    from zoneinfo import ZoneInfo

    from upkeep.store.store import normalise_url
    from upkeep.tasks.backup.service import BackupEnv

    loaded = load_for_command(config_path)
    if loaded is None:
        yield None
        return
    store, open_error = try_open_store(loaded)
    try:
        env = BackupEnv(
            loaded.config.backups,
            loaded.config.targets,
            store.backups if store is not None else None,
            ZoneInfo(loaded.config.timezone),
            config_path=loaded.path,
            store_url=normalise_url(loaded.config.store.url, loaded.base_dir),
            store_schema=loaded.config.store.schema_name,
        )
        yield _Session(env, loaded, store, open_error)
    finally:
        if store is not None:
            store.close()


@contextlib.contextmanager
def _env(config_path: Path | None) -> Iterator[BackupEnv | None]:
    with _session(config_path) as session:
        yield session.env if session is not None else None


def _check_sources(session: _Session, sources: list[str], drill: DrillReport | None = None) -> None:
    """Run the checks on the ``backup`` targets of ``sources`` now, record them with their
    alerts and deliver what is due, so a failed backup or drill alerts at once, as from a
    runbook (``tasks/backup/checks.py``). Results the store does not take (or a store that
    could not be opened) alert from the spill. Every problem is said on stderr; nothing is
    raised over the operation's own outcome. After a drill, its verdict is recorded as
    upkeep's own drill check of the source too (``tasks/backup/checks.py``)."""
    import asyncio

    from upkeep.cli.common import new_pipeline, print_problems
    from upkeep.cli.interrupts import run_async
    from upkeep.engine.runner import run_checks
    from upkeep.tasks.backup.checks import check_source, drill_result, source_checks

    loaded = session.loaded
    config = loaded.config
    own = drill_result(config, drill, loaded.redactor) if drill is not None else None
    if own is None and not any(source_checks(config, source) for source in sources):
        return
    pipeline = new_pipeline(loaded, session.store, session.open_error)
    problems: list[str] = []
    if own is not None:
        problems.extend(pipeline.take([own]).problems)

    async def run_check(name: str) -> CheckResult:
        results = await run_checks(
            [loaded.checks[name]], redactor=loaded.redactor, concurrency=1, store=session.store
        )
        settled = await asyncio.to_thread(pipeline.take, results)
        problems.extend(settled.problems)
        return results[0]

    async def check_all() -> None:
        for source in sources:
            problems.extend((await check_source(config, source, run_check)).problems)

    try:
        run_async(check_all())
        problems.extend(pipeline.tick_and_deliver())
    finally:
        pipeline.close()
    print_problems(problems)


@contextlib.contextmanager
def _progress(label: str, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """Yield a callback that advances a byte-counting progress bar (none off a terminal
    or with --json)."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    out = console(stderr=True)
    if not out.is_terminal:
        yield None
        return
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=None)
        yield lambda count: progress.advance(task, count)


def backup_list(config_path: Path | None, source: str | None, *, json_output: bool) -> int:
    """Print the repository's backups (newest last): each intact, with its verification,
    or damaged, with why (a data file missing, a link or of the wrong size, a manifest
    that fails authentication); and a warning if others can write the repository."""
    with _env(config_path) as env:
        if env is None:
            return EXIT_USAGE
        if source is not None and source not in env.config.sources:
            print_error(f"no backup source named {source!r}")
            return EXIT_USAGE
        backups = env.repository.inventory(source)
        exposed = env.repository.exposure() if env.config.key is None else []
        failures = (
            [record for record in env.catalog.records(source) if record.status == "failed"]
            if env.catalog is not None
            else []
        )
        rows = [backup_row(backup) for backup in backups]
        if json_output:
            print_json(
                {
                    "backups": rows,
                    "failed_attempts": [record.to_json() for record in failures[:20]],
                    "repository_exposed": exposed,
                }
            )
            return 0

        columns = (
            Column("id"),
            Column("source"),
            Column("taken"),
            Column("dumped", "number"),
            Column("stored", "number"),
            Column("status", "text"),
            Column("verified", "words"),
            Column("label", "text"),
        )
        out = console()
        print_table(
            out,
            columns,
            [
                (
                    backup.id,
                    backup.source,
                    local_time(backup.taken_at, env.zone),
                    _size(row["raw_bytes"]),
                    _size(row["stored_bytes"]),
                    "ok" if row["intact"] else f"DAMAGED: {row['problem']}",
                    _verified_text(backup, env.zone),
                    row["label"] or "",
                )
                for backup, row in zip(backups, rows, strict=True)
            ],
        )
        damaged = sum(1 for row in rows if not row["intact"])
        out.print(
            f"{len(rows)} backup(s) in {env.repository.root}"
            + (f", {damaged} DAMAGED (not counted, never restored)" if damaged else ""),
            markup=False,
        )
        for problem in exposed:
            out.print(
                f"warning: {problem}: without backups.key anyone who can write the "
                "repository can forge a backup",
                markup=False,
            )
        for record in failures[:5]:
            out.print(
                untrusted(
                    f"failed attempt {local_time(record.started_at, env.zone, seconds=True)} "
                    f"{record.source}: "
                    f"{record.message}",
                    one_line=True,
                )
            )
        return 0


def _verified_text(backup: Backup, zone: tzinfo) -> str:
    """Return a backup's last verification for people: ``never``, or the verdict, how it
    was checked and when, in the config's zone (``ok (hash) 2026-03-01 09:00 CET``)."""
    verification = backup.verification()
    if verification is None:
        return "never"
    verdict = "ok" if verification.get("ok") else "FAILED"
    how = "restore" if verification.get("restored") else "hash"
    try:
        at = local_time(datetime.fromisoformat(str(verification.get("at"))), zone)
    except ValueError:
        at = "?"
    return f"{verdict} ({how}) {at}"


def _size(count: int | None) -> str:
    from upkeep.core.text import format_bytes

    return "?" if count is None else format_bytes(count)


def backup_create(config_path: Path | None, sources: list[str], *, json_output: bool) -> int:
    """Back up the named sources (default: all); exit 1 if any failed."""
    from upkeep.tasks.backup.service import BackupFailed, create

    with _session(config_path) as session:
        if session is None:
            return EXIT_USAGE
        env = session.env
        names = sources or sorted(env.config.sources)
        if not names:
            print_error("no backup sources configured (backups.sources)")
            return EXIT_USAGE
        unknown = [name for name in names if name not in env.config.sources]
        if unknown:
            print_error(f"no backup source named {', '.join(unknown)}")
            return EXIT_USAGE
        results: list[dict[str, Any]] = []
        for name in names:
            try:
                with _progress(f"backing up {name}", not json_output) as progress:
                    report = create(env, name, progress=progress)
            except BackupFailed as error:
                results.append({"source": name, "ok": False, "error": str(error)})
                continue
            results.append({"source": name, "ok": True, **report.to_json()})
            if report.catalog_error is not None:
                print_error(report.catalog_error)
            if report.copy_retention is not None and report.copy_retention.problem:
                print_error(report.copy_retention.problem)
        _check_sources(session, names)
        if json_output:
            print_json({"results": results})
        else:
            out = console()
            for result in results:
                if result["ok"]:
                    out.print(
                        f"ok     {result['source']}: backup {result['id']}, "
                        f"{_size(result['raw_bytes'])} dumped, {_size(result['stored_bytes'])} "
                        f"stored, {result['duration_s']:.1f}s"
                        + (f"; removed {', '.join(result['removed'])}" if result["removed"] else "")
                        + (
                            f"; removed {', '.join(result['copy_removed'])} from the copy"
                            if result["copy_removed"]
                            else ""
                        ),
                        markup=False,
                    )
                else:
                    out.print(f"FAILED {result['source']}: {result['error']}", markup=False)
        return EXIT_FAILED if any(not result["ok"] for result in results) else 0


def backup_verify(
    config_path: Path | None, backup_id: str, *, restore: bool, json_output: bool
) -> int:
    """Verify one backup; exit 1 if anything does not match."""
    from upkeep.tasks.backup.service import BackupFailed, verify

    with _session(config_path) as session:
        if session is None:
            return EXIT_USAGE
        env = session.env
        try:
            with _progress(f"verifying {backup_id}", not json_output) as progress:
                report = verify(env, backup_id, restore=restore, progress=progress)
        except BackupFailed as error:
            print_error(str(error))
            return EXIT_USAGE
        _check_sources(session, [report.backup.source])
        document = report.to_json()
        if json_output:
            print_json(document)
        else:
            out = console()
            how = "restored into a scratch copy and compared" if restore else "re-hashed"
            if report.ok:
                out.print(
                    f"ok: backup {backup_id} {how} ({report.figures['duration_s']:.1f}s)",
                    markup=False,
                )
            else:
                out.print(f"FAILED: backup {backup_id} ({how}):", markup=False)
                for problem in report.problems:
                    out.print(f"  {problem}", markup=False)
            if restore:
                _print_compared(out, report.figures.get("compared", []))
        return 0 if report.ok else EXIT_FAILED


def _print_compared(out: Any, entries: list[dict[str, Any]]) -> None:
    """Print what a restore was compared on: per table (or Redis database) the manifest's
    count and the restored one; for files, how many matched by sha256 and which did not."""
    counted = [entry for entry in entries if entry["kind"] != "file"]
    files = [entry for entry in entries if entry["kind"] == "file"]
    if counted:
        kind, unit = counted[0]["kind"], counted[0]["unit"]
        print_table(
            out,
            [
                Column(kind),
                Column(f"manifest {unit}", "number"),
                Column(f"restored {unit}", "number"),
                Column(""),
            ],
            [
                (
                    entry["name"],
                    _count(entry["manifest"]),
                    _count(entry["restored"]),
                    "ok" if entry["ok"] else "DIFFERS",
                )
                for entry in counted
            ],
        )
    if files:
        matched = sum(1 for entry in files if entry["ok"])
        out.print(
            f"{len(files)} file(s) compared by sha256 with the manifest: {matched} match",
            markup=False,
        )
    if not entries:
        out.print("the manifest records no counts or files to compare", markup=False)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def backup_prune(
    config_path: Path | None, sources: list[str], *, dry_run: bool, json_output: bool
) -> int:
    """Apply retention (or list what it would do); exit 1 if a source refused."""
    from upkeep.tasks.backup.service import BackupFailed, prune

    with _env(config_path) as env:
        if env is None:
            return EXIT_USAGE
        names = sources or sorted(env.config.sources)
        if env.config.retention.is_empty():
            print_error("no retention rules (backups.retention): nothing would be removed")
            return 0
        documents: list[dict[str, Any]] = []
        failed = False
        out = console()
        for name in names:
            try:
                retention = prune(env, name, dry_run=dry_run)
            except BackupFailed as error:
                failed = True
                documents.append({"source": name, "error": str(error)})
                if not json_output:
                    out.print(f"refused {name}: {error}", markup=False)
                continue
            document: dict[str, Any] = {
                "source": name,
                "dry_run": dry_run,
                "backups": _decision_rows(retention.decisions),
            }
            copy = retention.copy
            if copy is not None:
                document["copy"] = {
                    "destination": copy.destination,
                    "backups": _decision_rows(copy.decisions),
                    "removed": copy.removed,
                    "problem": copy.problem,
                    "foreign": copy.foreign,
                }
                failed = failed or copy.problem is not None
            documents.append(document)
            if not json_output:
                verb = "would remove" if dry_run else "removed"
                for decision in retention.decisions:
                    action = "keep  " if decision.keep else verb
                    why = ", ".join(decision.reasons) if decision.keep else "no rule keeps it"
                    out.print(f"{action} {name} {decision.candidate.id}  ({why})", markup=False)
                if copy is not None:
                    for backup_id in copy.removed:
                        out.print(
                            f"{verb} {name} {backup_id} from {copy.destination}", markup=False
                        )
                    if copy.problem:
                        out.print(
                            f"not pruned {name} in {copy.destination}: {copy.problem}", markup=False
                        )
                    if copy.foreign:
                        out.print(
                            f"left alone in {copy.destination}: {name} "
                            f"{', '.join(copy.foreign)} (not this repository's backups)",
                            markup=False,
                        )
        if json_output:
            print_json({"sources": documents})
        return EXIT_FAILED if failed else 0


def _decision_rows(decisions: list[Any]) -> list[dict[str, Any]]:
    return [{"id": d.candidate.id, "keep": d.keep, "reasons": d.reasons} for d in decisions]


def backup_restore(
    config_path: Path | None,
    backup_id: str,
    *,
    to: str | None,
    yes: bool,
    safety: bool,
    json_output: bool,
) -> int:
    """Restore a backup over its source (or ``to``) after confirmation and a safety
    backup; exit 1 if it failed, 2 if refused. A kind that cannot load a backup into its
    source (Redis, upkeep itself) writes it into a new directory instead, asks nothing and
    takes no safety backup (nothing at the source changes), and says it was not loaded and
    how to load it (JSON: ``loaded`` false, ``written_to``); that exits 0."""
    import sys

    from upkeep.tasks.backup.service import BackupFailed, loads_in_place, restore

    with _env(config_path) as env:
        if env is None:
            return EXIT_USAGE
        try:
            backup = env.repository.get(backup_id)
        except Exception as error:  # noqa: BLE001 - RepositoryError; shown as a usage error
            print_error(str(error))
            return EXIT_USAGE
        destination = to or backup.source
        if not yes and loads_in_place(backup):
            if not sys.stdin.isatty():
                print_error("restoring overwrites data: confirm at a terminal or pass --yes")
                return EXIT_USAGE
            import typer

            safety_note = (
                "after a safety backup of what is there now"
                if safety
                else "WITHOUT a safety backup"
            )
            if not typer.confirm(
                f"Restore backup {backup_id} ({backup.taken_at.isoformat()[:19]}) over "
                f"{destination}, {safety_note}?"
            ):
                print_error("not restored")
                return EXIT_USAGE
        try:
            with _progress(f"restoring {backup_id}", not json_output) as progress:
                report = restore(env, backup_id, to=to, safety=safety, progress=progress)
        except BackupFailed as error:
            print_error(str(error))
            return EXIT_FAILED
        document = {
            "id": backup_id,
            "to": report.destination,
            "loaded": report.loaded,
            "written_to": report.written_to,
            "safety_backup": report.safety_backup,
            "message": report.message,
            "duration_s": report.duration_s,
        }
        if json_output:
            print_json(document)
        elif not report.loaded:
            # Never "restored": the destination holds what it held before.
            console().print(f"backup {backup_id} {report.message}", markup=False)
        else:
            console().print(
                f"restored {backup_id} into {report.destination} in {report.duration_s:.1f}s"
                + (f"; safety backup {report.safety_backup}" if report.safety_backup else ""),
                markup=False,
            )
            console().print(report.message, markup=False)
        return 0


def run_drill(
    config_path: Path | None,
    target: str,
    *,
    rto: str | None,
    rpo: str | None,
    take_backup: bool,
    json_output: bool,
) -> int:
    """Run a restore drill of a source (or of the source backing up a target); exit 1 if
    it did not pass."""
    from upkeep.core.durations import parse_duration
    from upkeep.tasks.backup.service import BackupFailed, drill
    from upkeep.tasks.backup.tasks import drill_summary

    try:
        rto_value = parse_duration(rto) if rto else None
        rpo_value = parse_duration(rpo) if rpo else None
    except ValueError as error:
        print_error(str(error))
        return EXIT_USAGE
    with _session(config_path) as session:
        if session is None:
            return EXIT_USAGE
        env = session.env
        try:
            name = env.source_for(target)
            with _progress(f"drill {name}", not json_output) as progress:
                report = drill(
                    env,
                    name,
                    rto=rto_value,
                    rpo=rpo_value,
                    take_backup=take_backup,
                    progress=progress,
                )
        except BackupFailed as error:
            print_error(str(error))
            return EXIT_USAGE
        _check_sources(session, [name], report)
        if json_output:
            print_json(report.to_json())
        else:
            out = console()
            verdict = "PASSED" if report.passed else "FAILED"
            out.print(f"drill of {name}: {verdict}, {drill_summary(report)}", markup=False)
            if report.backup_id:
                out.print(f"  restored backup {report.backup_id}", markup=False)
            for item in report.validations:
                mark = "ok  " if item["ok"] else "FAIL"
                detail = item.get("value") if item["ok"] else item.get("problem")
                out.print(f"  {mark} {item['query']} -> {detail}", markup=False)
            for problem in report.problems:
                out.print(f"  problem: {problem}", markup=False)
        return 0 if report.passed else EXIT_FAILED
