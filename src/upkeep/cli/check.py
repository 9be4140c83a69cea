"""``upkeep check`` and ``upkeep validate``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from upkeep.core.status import Status, worst

if TYPE_CHECKING:
    from upkeep.config.loader import CompiledCheck, LoadedConfig
    from upkeep.core.results import CheckResult
    from upkeep.engine.pipeline import Pipeline
    from upkeep.store.store import Store

EXIT_CONFIG_ERROR = 2
"""``validate`` exits 2 on an invalid config, as the spec says."""


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
    from upkeep.cli.common import (
        console,
        load_or_report,
        parse_labels,
        print_problems,
        setup_logging,
        try_open_store,
    )
    from upkeep.engine.runner import select_checks

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

    # Opened first: the checks still run if it cannot be, and alerting works from the spill.
    history, open_error = try_open_store(loaded) if store else (None, None)
    try:
        results, problems, sound = _run_in_waves(loaded, selected, history, open_error, store=store)
        print_problems(problems)
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
        out.print(results_table(results, condition_names, out.width), crop=False)
        out.print(
            summary_line([result.status for result in results]) + f" - worst: {overall.label}",
            markup=False,
        )
    if not sound and overall in (Status.OK, Status.WARNING):
        return int(Status.UNKNOWN)
    return int(overall)


def _run_in_waves(
    loaded: LoadedConfig,
    selected: list[CompiledCheck],
    history: Store | None,
    open_error: str | None,
    *,
    store: bool,
) -> tuple[list[CheckResult], list[str], bool]:
    """Given the selected checks and the opened store, run them (and with ``store``,
    settle their results); return the results, the problems met and whether the store
    stayed sound.

    Checks whose probe reads other checks' stored results (``Probe.reads_results``: a
    group's health) run in a second wave, after this run's other results are stored: a
    score never lags one run behind.
    """
    from upkeep.cli.common import new_pipeline
    from upkeep.cli.interrupts import run_async
    from upkeep.engine.runner import run_checks

    waves = [
        [check for check in selected if not check.probe.reads_results],
        [check for check in selected if check.probe.reads_results],
    ]
    sound = True
    results: list[CheckResult] = []
    problems: list[str] = []
    pipeline: Pipeline | None = None
    try:
        for wave in (wave for wave in waves if wave):
            done = run_async(
                run_checks(
                    wave,
                    redactor=loaded.redactor,
                    concurrency=loaded.config.engine.concurrency,
                    store=history,
                )
            )
            results += done
            if store:
                # Made once the first results are in, as before waves: a signal during
                # the checks leaves no pipeline to unwind.
                pipeline = pipeline or new_pipeline(loaded, history, open_error)
                settled = pipeline.settle(done)
                problems += [text for text in settled.problems if text not in problems]
                sound = sound and settled.sound
    finally:
        if pipeline is not None:
            pipeline.close()
    return results, problems, sound
