"""``upkeep check`` and ``upkeep validate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from upkeep.core.status import Status, worst

if TYPE_CHECKING:
    from rich.console import Console

    from upkeep.alerting.guard import StoreGuard
    from upkeep.alerting.manager import AlertManager
    from upkeep.config.loader import LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.store.store import Store

EXIT_CONFIG_ERROR = 2
"""``validate`` exits 2 on an invalid config, as the spec says."""


def parse_labels(pairs: list[str]) -> dict[str, str]:
    """Given ``k=v`` strings, return them as a dict; raise ValueError on a malformed pair."""
    labels: dict[str, str] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--label expects key=value, got {pair!r}")
        labels[key.strip()] = value.strip()
    return labels


def run_validate(config_path: Path | None) -> int:
    """Given ``-c``, validate the config, print a summary or every error; return 0 or 2."""
    from upkeep.cli.common import console, load_or_report

    loaded = load_or_report(config_path, check_channels=True)
    if loaded is None:
        return EXIT_CONFIG_ERROR
    config = loaded.config
    console().print(
        f"{loaded.path}: valid - {len(config.targets)} targets, {len(config.checks)} checks, "
        f"{len(config.runbooks)} runbooks, {len(config.channels)} channels, "
        f"{len(config.routes)} routes, {len(config.windows)} windows",
        markup=False,
    )
    return 0


def run_check(
    config_path: Path | None,
    names: list[str],
    label_pairs: list[str],
    *,
    json_output: bool,
    store: bool,
) -> int:
    """Run the selected checks, store and print the results; return the worst status code.

    A config or selection problem is reported and returns 3 (unknown), as a Nagios plugin
    does when it cannot say. The results are always printed. If the store cannot take them
    (it cannot be opened, is full, read-only, damaged or unreachable), that is said on
    stderr with the reason, their alerts are processed and delivered from the spill
    (``alerting/guard.py``), and the exit code is the worst status's if that is critical
    or unknown, else 3: a run whose results were lost never passes as ok or warning. A
    store that fails its integrity check (run when the last pass is older than
    ``alerting.store_failure.integrity_interval``) counts the same.
    """
    from upkeep.cli.common import console, load_or_report, setup_logging
    from upkeep.engine.runner import run_checks, select_checks

    setup_logging()
    err = console(stderr=True)
    loaded = load_or_report(config_path)
    if loaded is None:
        return int(Status.UNKNOWN)
    try:
        labels = parse_labels(label_pairs)
        selected = select_checks(loaded.checks.values(), names, labels)
    except ValueError as error:
        err.print(f"upkeep: {error}", markup=False)
        return int(Status.UNKNOWN)
    except KeyError as error:
        err.print(f"upkeep: no check named {error.args[0]}", markup=False)
        return int(Status.UNKNOWN)
    if not selected:
        err.print("upkeep: no checks match", markup=False)
        return int(Status.UNKNOWN)

    history, open_error = _open_history(loaded, err) if store else (None, None)
    from upkeep.cli.interrupts import run_async

    results = run_async(
        run_checks(selected, redactor=loaded.redactor, concurrency=loaded.config.engine.concurrency)
    )
    sound = True
    if store:
        try:
            sound = record_and_alert(loaded, history, results, err, open_error=open_error)
        finally:
            if history is not None:
                history.close()
    overall = worst([result.status for result in results])
    if json_output:
        from upkeep.cli.common import print_json

        print_json({"results": [result.to_json() for result in results], "worst": overall.label})
    else:
        from upkeep.cli.output import results_table, summary_line

        condition_names = {
            check.name: frozenset().union(
                *(condition.metric_names for condition in (check.warn, check.crit) if condition)
            )
            for check in selected
        }
        out = console()
        out.print(results_table(results, condition_names, out.width))
        out.print(
            summary_line([result.status for result in results]) + f" - worst: {overall.label}",
            markup=False,
        )
    if not sound and overall in (Status.OK, Status.WARNING):
        return int(Status.UNKNOWN)
    return int(overall)


def _open_history(loaded: LoadedConfig, err: Console) -> tuple[Store | None, str | None]:
    """Open the config's store; if it cannot be, say why and return (None, the reason):
    the checks still run, and alerting works from the spill."""
    from upkeep.store.store import Store, StoreError

    try:
        return Store.open(loaded.config.store, loaded.base_dir), None
    except StoreError as error:
        reason = loaded.redactor.redact(str(error))
        err.print(f"upkeep: {reason}", markup=False)
        return None, reason


def record_and_alert(
    loaded: LoadedConfig,
    store: Store | None,
    results: list[CheckResult],
    err: Console,
    *,
    open_error: str | None = None,
) -> bool:
    """Store the results with their alerts, run the alerts' clock and deliver what is due
    now, so ``upkeep check`` from cron alerts like the daemon does; return whether the
    store is sound (took the results and passed its integrity check).

    If the store does not take them, the results and their alerts go to the spill and
    are delivered from there; every problem is said on stderr (never raised). A failure
    of alerting alone is reported after the results are stored; a delivery failure is
    reported and left in the outbox for the next run or the daemon to retry.
    """
    from upkeep.alerting.guard import ResultsNotRecordedError, StoreGuard, location_label
    from upkeep.alerting.manager import AlertProcessingError

    def say(text: str) -> None:
        err.print(f"upkeep: {loaded.redactor.redact(text)}", markup=False)

    guard = StoreGuard(loaded, store, open_error=open_error)
    try:
        integrity = guard.check_integrity(only_if_due=True)
        if integrity is not None and integrity.unchecked is None and not integrity.ok:
            say(f"the store failed its integrity check: {integrity.reason}")
        try:
            outcome = guard.record(results)
        except AlertProcessingError as error:
            cause = error.__cause__ or error
            from upkeep.store.store import error_reason

            say(f"alerts were not processed: {error_reason(cause)}")
            return guard.health.integrity_ok is not False
        except ResultsNotRecordedError as error:
            say(f"results were not stored: {error}")
            return False
        if not outcome.stored or outcome.spill is not None:
            what = "results were" if not outcome.stored else "alerts were"
            say(f"{what} not stored: {outcome.reason}")
            say(
                f"alerting continues from {location_label(outcome.spill)} until the store "
                "takes writes again"
            )
        _tick_and_deliver_guarded(loaded, guard, err)
        sound = outcome.stored and outcome.spill is None
        return sound and guard.health.integrity_ok is not False
    finally:
        guard.close()


def _record_and_alert(
    loaded: LoadedConfig, store: Store, results: list[CheckResult], err: Console
) -> None:
    """``record_and_alert`` for a store that is open (the backup commands' way in)."""
    record_and_alert(loaded, store, results, err)


def _tick_and_deliver_guarded(loaded: LoadedConfig, guard: StoreGuard, err: Console) -> None:
    """Run the alerts' clock where the alerts are (store or spill) and deliver what is
    due there, reporting what fails."""
    try:
        guard.tick()
    except Exception as error:  # noqa: BLE001 - reported; the next run ticks again
        from upkeep.store.store import error_reason

        err.print(
            f"upkeep: the alerts' clock did not run: {loaded.redactor.redact(error_reason(error))}",
            markup=False,
        )
    target = guard.spill_store or guard.main
    if target is None or not loaded.config.channels:
        return
    _deliver(loaded, target, err)


def tick_and_deliver(
    loaded: LoadedConfig, store: Store, manager: AlertManager, err: Console
) -> None:
    """Run the alerts' clock once and deliver the notices due now, reporting (not raising)
    what could not be delivered: what the daemon does, for one-shot commands."""
    # Without a daemon, each run is also the clock: repeats, escalation steps, lapsed
    # acknowledgements and ended mutes happen here (their keys make a daemon's tick and
    # this one write each notice once).
    manager.tick()
    if not loaded.config.channels:
        return
    _deliver(loaded, store, err)


def _deliver(loaded: LoadedConfig, store: Store, err: Console) -> None:
    """Deliver what ``store``'s outbox has due now, reporting what was not delivered."""
    import logging

    from upkeep.alerting.delivery import deliver_now

    # The lines below say what failed; the dispatcher's own log line would say it twice.
    logging.getLogger("upkeep.alerting.delivery").setLevel(logging.ERROR)
    try:
        reports = deliver_now(loaded, store)
    except Exception as error:  # noqa: BLE001 - the outbox keeps them for the next run
        from upkeep.store.store import error_reason

        err.print(
            f"upkeep: notifications not delivered: {loaded.redactor.redact(error_reason(error))}",
            markup=False,
        )
        return
    for report in reports:
        if not report.ok:
            err.print(
                f"upkeep: notification to {report.channel} not delivered yet: {report.error}",
                markup=False,
            )
