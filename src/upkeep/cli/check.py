"""``upkeep check`` and ``upkeep validate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from upkeep.status import Status, worst

if TYPE_CHECKING:
    from rich.console import Console

    from upkeep.alerting.manager import AlertManager
    from upkeep.config.loader import LoadedConfig
    from upkeep.engine.results import CheckResult
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

    A config, selection or store problem is reported and returns 3 (unknown), as a Nagios
    plugin does when it cannot say. If storing the results fails, that is reported on
    stderr and the results are still printed; the exit code is then the worst status's
    if that is critical or unknown, else 3, so a run whose results were lost never
    passes as ok or warning.
    """
    from upkeep.cli.common import console, load_or_report, open_store, setup_logging
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

    history = open_store(loaded) if store else None
    if store and history is None:
        return int(Status.UNKNOWN)
    from upkeep.cli.interrupts import run_async

    results = run_async(
        run_checks(selected, redactor=loaded.redactor, concurrency=loaded.config.engine.concurrency)
    )
    stored = True
    if history is not None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            _record_and_alert(loaded, history, results, err)
        except SQLAlchemyError as error:
            stored = False
            # The driver's first line, not str(error): that adds the SQL and its parameters.
            cause = getattr(error, "orig", None) or error
            reason = " ".join(str(cause).strip().split("\n", 1)[0].split())
            err.print(
                f"upkeep: results were not stored: {loaded.redactor.redact(reason)}",
                markup=False,
            )
        finally:
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
    if not stored and overall in (Status.OK, Status.WARNING):
        return int(Status.UNKNOWN)
    return int(overall)


def _record_and_alert(
    loaded: LoadedConfig, store: Store, results: list[CheckResult], err: Console
) -> None:
    """Store the results with their alerts (one transaction), run the alerts' clock, and
    deliver what is due now, so ``upkeep check`` from cron alerts like the daemon does. A
    failure of alerting is reported after the results are stored; a delivery failure is
    reported and left in the outbox for the next run or the daemon to retry.
    """
    from upkeep.alerting.manager import AlertManager, AlertProcessingError

    manager = AlertManager(loaded, store)
    try:
        manager.record(results)
    except AlertProcessingError as error:
        # The driver's first line, not str(error): that adds the SQL and its parameters.
        cause = getattr(error.__cause__, "orig", None) or error.__cause__ or error
        reason = " ".join(str(cause).strip().split("\n", 1)[0].split())
        err.print(
            f"upkeep: alerts were not processed: {loaded.redactor.redact(reason)}", markup=False
        )
        return
    tick_and_deliver(loaded, store, manager, err)


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
    import logging

    from upkeep.notify.dispatcher import deliver_now

    # The lines below say what failed; the dispatcher's own log line would say it twice.
    logging.getLogger("upkeep.notify.dispatcher").setLevel(logging.ERROR)
    for report in deliver_now(loaded, store):
        if not report.ok:
            err.print(
                f"upkeep: notification to {report.channel} not delivered yet: {report.error}",
                markup=False,
            )
