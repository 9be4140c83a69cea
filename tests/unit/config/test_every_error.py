"""``upkeep validate`` lists every error in one run, each at its file, line and key, in
plain words; fixing one never reveals another; every cross-reference is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config

# Each error of the config below, independent of the others and of a different phase:
# name -> (the entry as written with the error, the same entry fixed, where the error is,
# a fragment of its message).
ERRORS: dict[str, tuple[str, str, str, str]] = {
    "timezone": (
        "timezone: Mars/Base\n",
        "timezone: Europe/Berlin\n",
        "timezone",
        "unknown timezone 'Mars/Base'",
    ),
    "unknown key": (
        '  db: {kind: postgres, dsn: "postgresql:///test", bogus: 1}\n',
        '  db: {kind: postgres, dsn: "postgresql:///test"}\n',
        "targets.db.bogus",
        "unknown key",
    ),
    "missing target": (
        "    target: apii\n",
        "    target: api\n",
        "checks.a.target",
        "no target named 'apii'",
    ),
    "warn syntax": (
        "    warn: response_time_ms >> 500\n",
        "    warn: response_time_ms > 500\n",
        "checks.a.warn",
        "unexpected '>'",
    ),
    "crit syntax": (
        "    crit: status_code != 200 or\n",
        "    crit: status_code != 200\n",
        "checks.a.crit",
        "unexpected end of condition",
    ),
    "every": (
        "    every: 0s\n",
        "    every: 30s\n",
        "checks.b.every",
        "every must be longer than 0s",
    ),
    "severity": (
        "    severity: P9\n",
        "    severity: P1\n",
        "checks.b.severity",
        "expected one of P1, P2, P3, P4",
    ),
    "quoted number": (
        "    crit: \"status_code != '200'\"\n",
        '    crit: "status_code != 200"\n',
        "checks.c.crit",
        "status_code is a number and '200' is a text",
    ),
    "apprise": (
        '  ops: "notaurl"\n',
        '  ops: "json://127.0.0.1:9/"\n',
        "channels.ops",
        "not an Apprise URL",
    ),
    "channel": (
        "  - notify: [nosuch]\n",
        "  - notify: [ops]\n",
        "routes[0].notify[0]",
        "no channel named 'nosuch'",
    ),
    "window": (
        "    window: nowin\n",
        "    window: w\n",
        "runbooks.r.window",
        "no window named 'nowin'",
    ),
    "command string": (
        '      - command: "echo a string"\n',
        "      - command: [echo, a, string]\n",
        "runbooks.r.steps[0].command",
        "write command: [echo, a, string]",
    ),
    "verify": (
        "        with: {start: [/bin/true], stop: [/bin/true], verify: nocheck}\n",
        "        with: {start: [/bin/true], stop: [/bin/true], verify: a}\n",
        "runbooks.r.steps[1].with.verify",
        "no check named 'nocheck'",
    ),
}

TEMPLATE = """\
{timezone}targets:
  api: {{kind: http, url: "http://127.0.0.1:1/"}}
{unknown key}checks:
  a:
{missing target}{warn syntax}{crit syntax}  b:
    target: api
{every}{severity}  c:
    target: api
{quoted number}channels:
{apprise}routes:
{channel}    match: {{severity: P1}}
windows:
  w: {{schedule: "0 3 * * *", duration: 1h}}
runbooks:
  r:
{window}    steps:
{command string}      - task: service.restart
{verify}"""


def config_with(tmp_path: Path, fixed: frozenset[str] = frozenset()) -> Path:
    parts = {name: (good if name in fixed else bad) for name, (bad, good, _, _) in ERRORS.items()}
    path = tmp_path / "upkeep.yaml"
    path.write_text(TEMPLATE.format_map(parts), encoding="utf-8")
    return path


def issues_of(path: Path) -> list[tuple[str, str]]:
    from upkeep.config.errors import format_path

    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={}, check_channels=True)
    return [(format_path(issue.path), issue.message) for issue in caught.value.issues]


def expected_for(fixed: frozenset[str]) -> list[tuple[str, str]]:
    return sorted(
        (where, fragment) for name, (_, _, where, fragment) in ERRORS.items() if name not in fixed
    )


def matches(found: list[tuple[str, str]], expected: list[tuple[str, str]]) -> bool:
    pairs = sorted(found)
    return len(pairs) == len(expected) and all(
        where == want_where and fragment in message
        for (where, message), (want_where, fragment) in zip(pairs, expected, strict=True)
    )


def test_errors_of_every_phase_are_listed_in_one_run(tmp_path: Path) -> None:
    found = issues_of(config_with(tmp_path))
    assert matches(found, expected_for(frozenset())), found


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_fixing_one_error_reveals_no_other(tmp_path: Path, name: str) -> None:
    found = issues_of(config_with(tmp_path, frozenset({name})))
    assert matches(found, expected_for(frozenset({name}))), found


def test_the_config_with_every_error_fixed_is_valid(tmp_path: Path) -> None:
    loaded = load_config(config_with(tmp_path, frozenset(ERRORS)), environ={})
    assert set(loaded.checks) == {"a", "b", "c"}


def test_errors_are_listed_in_file_order_with_line_and_key(tmp_path: Path) -> None:
    path = config_with(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={}, check_channels=True)
    positions = [(issue.line, issue.column) for issue in caught.value.issues]
    assert positions == sorted(positions)
    lines = path.read_text(encoding="utf-8").splitlines()
    for issue in caught.value.issues:
        key = issue.path[-1]
        # Each issue points at the line that holds its key (a list item: the list's line).
        assert isinstance(key, int) or str(key) in lines[issue.line - 1], issue
        assert str(issue).startswith(f"{path}:{issue.line}:{issue.column}: ")


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_rule_over_keys_is_listed_with_the_errors_of_its_fields(tmp_path: Path) -> None:
    # Two actions in one step and a command given as text: both at once, not one per run.
    found = issues_of(
        write(
            tmp_path,
            'runbooks:\n  r:\n    steps:\n      - {command: "a b", manual: "do it"}\n'
            "windows:\n  w: {duration: nope}\n",
        )
    )
    assert ("runbooks.r.steps[0].command", "expected a list") in [
        (where, message[:15]) for where, message in found
    ]
    assert any(
        where == "runbooks.r.steps[0]"
        and "exactly one of" in message
        and "command, manual" in message
        for where, message in found
    ), found
    assert any(where == "windows.w.duration" for where, _ in found), found
    assert any(where == "windows.w" and "schedule" in message for where, message in found), found


def test_errors_after_a_removed_list_item_keep_their_own_index(tmp_path: Path) -> None:
    found = issues_of(
        write(
            tmp_path,
            "routes:\n  - {notify: 5}\n  - {notify: [ops], bad: 1}\n  - {notify: [ghost]}\n"
            'channels:\n  ops: "json://127.0.0.1:9/"\n',
        )
    )
    assert ("routes[1].bad", "unknown key (not part of this section; check the spelling)") in found
    assert any(where == "routes[2].notify[0]" and "'ghost'" in message for where, message in found)
    assert any(where == "routes[0].notify" for where, _ in found), found


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("checks:\n  a: {target: t, every: [1]}\n", "checks.a.every", ""),
        (
            "checks:\n  a: {target: t, enabled: maybe}\n",
            "checks.a.enabled",
            "expected true or false",
        ),
        ("checks:\n  a: {target: t, after: 0}\n", "checks.a.after", "must be at least 1"),
        ("checks:\n  a: {target: t, labels: [x]}\n", "checks.a.labels", "expected a mapping"),
        ("checks:\n  a: {target: [t]}\n", "checks.a.target", "expected a text, got a list"),
        ("routes:\n  - {notify: ops}\n", "routes[0].notify", "write notify: [ops]"),
        (
            "engine: {concurrency: lots}\n",
            "engine.concurrency",
            "expected a whole number, got a text",
        ),
        ("targets:\n  'bad name': {kind: host}\n", "targets", "a name of letters, digits"),
    ],
)
def test_messages_say_what_is_expected_in_plain_words(
    tmp_path: Path, text: str, where: str, fragment: str
) -> None:
    found = issues_of(
        write(tmp_path, "targets:\n  t: {kind: host}\n" + text if "targets" not in text else text)
    )
    assert any(
        found_where.startswith(where) and fragment in message for found_where, message in found
    ), found
    assert not any("Input should" in message for _, message in found), found


def test_a_check_with_bad_params_still_has_its_conditions_checked(tmp_path: Path) -> None:
    found = issues_of(
        write(
            tmp_path,
            "targets:\n  box: {kind: host}\nchecks:\n"
            "  d: {target: box, probe: disk, params: {deep: 1}, warn: nosuch > 1}\n",
        )
    )
    assert {where for where, _ in found} == {"checks.d.params.deep", "checks.d.warn"}, found


# --- conditions against the metric types the probe declares --------------------------------


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ("status_code != '200'", "write 200 without quotes"),
        ('status_code == "ok"', 'status_code is a number and "ok" is a text'),
        ("response_time_ms > 10MB", "a size (10MB) compares only with a metric measured in bytes"),
        ("status_code > 5s", "a duration (5s) compares only with a metric measured in time"),
        ("body_bytes > 1h", "a duration (1h) compares only"),
        ("status_code > 1 and body_bytes < '5'", "body_bytes is a number"),
    ],
)
def test_a_comparison_of_different_types_is_a_validation_error(
    tmp_path: Path, condition: str, fragment: str
) -> None:
    path = write(
        tmp_path,
        'targets:\n  api: {kind: http, url: "http://127.0.0.1:1/"}\n'
        f"checks:\n  a:\n    target: api\n    crit: {condition!r}\n",
    )
    found = issues_of(path)
    assert len(found) == 1 and found[0][0] == "checks.a.crit" and fragment in found[0][1], found


@pytest.mark.parametrize(
    "condition",
    [
        "status_code != 200 or response_time_ms > 1.5s",
        "body_bytes > 10GB",
        "body_bytes >= 1.5MiB and cert_days_left < 2w",
    ],
)
def test_well_typed_conditions_are_valid(tmp_path: Path, condition: str) -> None:
    path = write(
        tmp_path,
        'targets:\n  api: {kind: http, url: "http://127.0.0.1:1/"}\n'
        f"checks:\n  a:\n    target: api\n    crit: {condition!r}\n",
    )
    assert load_config(path, environ={}).checks["a"].crit is not None


def test_a_string_metric_compared_with_a_number_is_an_error(tmp_path: Path) -> None:
    # A variant the issue does not list: the text metric on the left, the number right.
    path = write(
        tmp_path,
        'targets:\n  db: {kind: postgres, dsn: "postgresql:///test"}\n'
        "checks:\n  v: {target: db, probe: ping, warn: version == 15}\n",
    )
    found = issues_of(path)
    assert found == [
        (
            "checks.v.warn",
            "in 'version == 15': version is a text and 15 is a number, which never compare "
            "(so it would never hold)",
        )
    ], found


# --- every cross-reference ------------------------------------------------------------------

BASE = """\
targets:
  api: {kind: http, url: "http://127.0.0.1:1/"}
  db: {kind: postgres, dsn: "postgresql:///test"}
  backups-db: {kind: backup, source: SOURCE}
checks:
  a: {target: TARGET, depends_on: [DEPENDS]}
channels:
  ops: "json://127.0.0.1:9/"
routes:
  - notify: [CHANNEL]
    match: {checks: [ROUTE_CHECK]}
    escalate: {after: 1h, notify: [ESCALATE]}
    fallback: FALLBACK
windows:
  w: {schedule: "0 3 * * *", duration: 1h, mute: {checks: [MUTE_CHECK]}}
backups:
  sources:
    db: {target: BACKUP_TARGET}
runbooks:
  r:
    window: WINDOW
    steps:
      - checks: {names: [STEP_CHECK]}
      - task: http.request
        target: STEP_TARGET
      - task: service.restart
        with: {start: [/bin/true], stop: [/bin/true], verify: VERIFY}
      - task: backup.verify
        with: {source: TASK_SOURCE}
"""
GOOD = {
    "SOURCE": "db",
    "TARGET": "api",
    "DEPENDS": "upkeep-none",
    "CHANNEL": "ops",
    "ROUTE_CHECK": "upkeep:store",
    "ESCALATE": "ops",
    "FALLBACK": "ops",
    "MUTE_CHECK": "a",
    "BACKUP_TARGET": "db",
    "WINDOW": "w",
    "STEP_CHECK": "a",
    "STEP_TARGET": "api",
    "VERIFY": "a",
    "TASK_SOURCE": "db",
}


def reference_config(tmp_path: Path, broken: str | None) -> Path:
    text = BASE.replace(
        "depends_on: [DEPENDS]",
        "depends_on: []" if broken != "DEPENDS" else "depends_on: [DEPENDS]",
    )
    # Longer placeholders first: SOURCE is part of TASK_SOURCE.
    for placeholder, good in sorted(GOOD.items(), key=lambda item: -len(item[0])):
        text = text.replace(placeholder, "nosuch" if placeholder == broken else good)
    return write(tmp_path, text)


def test_the_reference_config_is_valid_when_every_name_exists(tmp_path: Path) -> None:
    loaded = load_config(reference_config(tmp_path, None), environ={})
    assert "a" in loaded.checks


@pytest.mark.parametrize(
    ("broken", "where", "what"),
    [
        ("SOURCE", "targets.backups-db.source", "backup source"),
        ("TARGET", "checks.a.target", "target"),
        ("DEPENDS", "checks.a.depends_on[0]", "check"),
        ("CHANNEL", "routes[0].notify[0]", "channel"),
        ("ROUTE_CHECK", "routes[0].match.checks[0]", "check"),
        ("ESCALATE", "routes[0].escalate.notify[0]", "channel"),
        ("FALLBACK", "routes[0].fallback", "channel"),
        ("MUTE_CHECK", "windows.w.mute.checks[0]", "check"),
        ("BACKUP_TARGET", "backups.sources.db.target", "target"),
        ("WINDOW", "runbooks.r.window", "window"),
        ("STEP_CHECK", "runbooks.r.steps[0].checks.names[0]", "check"),
        ("STEP_TARGET", "runbooks.r.steps[1].target", "target"),
        ("VERIFY", "runbooks.r.steps[2].with.verify", "check"),
        ("TASK_SOURCE", "runbooks.r.steps[3].with.source", "backup source"),
    ],
)
def test_every_reference_to_another_section_is_checked(
    tmp_path: Path, broken: str, where: str, what: str
) -> None:
    found = issues_of(reference_config(tmp_path, broken))
    assert len(found) == 1, found
    assert found[0][0] == where and found[0][1].startswith(f"no {what} named 'nosuch' ("), found


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("upkeep:drill:db", True),  # a backup source
        ("upkeep:drill:backups-db", True),  # a target, drilled with the defaults
        ("upkeep:drill:nosuch", False),
        ("upkeep:drill:", False),
    ],
)
def test_a_route_may_name_a_drill_verdict_of_a_backup_source(
    tmp_path: Path, name: str, valid: bool
) -> None:
    """A drill's verdict is upkeep's own check ``upkeep:drill:<source>``: a route or a
    window may name it when the source exists, and not otherwise."""
    path = reference_config(tmp_path, None)
    path.write_text(path.read_text().replace("checks: [upkeep:store]", f"checks: [{name!r}]"))
    if valid:
        assert load_config(path, environ={}).config.routes[0].match.checks == [name]
    else:
        assert issues_of(path) == [
            ("routes[0].match.checks[0]", f"no check named {name!r} (checks: a)")
        ]


def test_every_field_naming_another_section_is_marked_as_a_reference() -> None:
    """A guard for new probes and tasks: a str field whose description says it names an
    entry of another section carries ``Reference``, so the loader checks it."""
    import typing

    from pydantic import BaseModel

    from upkeep.config.models import UpkeepConfig
    from upkeep.core.models import Reference
    from upkeep.probes.registry import TARGET_KINDS
    from upkeep.tasks.registry import TASK_KINDS

    models: list[type[BaseModel]] = [UpkeepConfig]
    for kind in TARGET_KINDS.values():
        models.append(kind.model)
        models.extend(probe.Params for probe in kind.probes)
    models.extend(task.Params for task in TASK_KINDS.values())
    seen: set[type[BaseModel]] = set()
    unmarked = []
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            text = str(field.annotation)
            nested = [field.annotation]
            while nested:
                annotation = nested.pop()
                nested.extend(typing.get_args(annotation))
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    models.append(annotation)
            description = (field.description or "").lower()
            names_one = any(
                phrase in description
                for phrase in ("name of a configured", "of backups.sources", "a postgres, mysql")
            ) or name in {"target", "verify", "depends_on", "window", "notify", "fallback"}
            marked = "Reference" in text or any(
                isinstance(meta, Reference) for meta in field.metadata
            )
            if names_one and "str" in text and not marked:
                unmarked.append(f"{model.__name__}.{name}")
    assert not unmarked, unmarked


# --- rules of a whole entry, task rules and references beside errors of the same entry -----

# The reviewer's repro, each error independent of the others: name -> (as written with the
# error, fixed, where the error is, a fragment of its message).
ENTRY_ERRORS: dict[str, tuple[str, str, str, str]] = {
    "concurrency": (
        "  concurrency: 0\n",
        "  concurrency: 4\n",
        "engine.concurrency",
        "must be at least 1",
    ),
    "one default": (
        "  api_token: first-token-0123456789\n",
        "",
        "engine",
        "api_token is the token named 'default'",
    ),
    "signal": ("          signal: BOGUS\n", "", "runbooks.r.steps[0].with.signal", "BOGUS"),
    "verify 0": (
        "          verify: nocheck\n",
        "          verify: a\n",
        "runbooks.r.steps[0].with.verify",
        "no check named 'nocheck'",
    ),
    "stop 0": (
        "",
        "          pidfile: /run/app.pid\n",
        "runbooks.r.steps[0].with",
        "needs `stop` (a command) or `pidfile`",
    ),
    "target 1": (
        "        target: api\n",
        "",
        "runbooks.r.steps[1].target",
        "takes no target, not a http target",
    ),
    "verify 1": (
        "          verify: nocheck\n",
        "          verify: a\n",
        "runbooks.r.steps[1].with.verify",
        "no check named 'nocheck'",
    ),
    "stop 1": (
        "",
        "          stop: [/bin/true]\n",
        "runbooks.r.steps[1].with",
        "needs `stop` (a command) or `pidfile`",
    ),
    "flapping": (
        "    low: 30\n",
        "    low: 10\n",
        "alerting.flapping",
        "flapping.low must be lower than flapping.high",
    ),
    "flapping key": ("    bogus: 1\n", "", "alerting.flapping.bogus", "unknown key"),
}

ENTRY_TEMPLATE = """\
targets:
  api: {{kind: http, url: "http://127.0.0.1:1/"}}
checks:
  a: {{target: api}}
engine:
{concurrency}{one default}  api_tokens: {{default: second-token-0123456789}}
alerting:
  flapping:
    high: 25
{flapping}{flapping key}runbooks:
  r:
    steps:
      - task: service.restart
        with:
          start: [/bin/true]
{signal}{verify 0}{stop 0}      - task: service.restart
{target 1}        with:
          start: [/bin/true]
{verify 1}{stop 1}"""


def entry_config(tmp_path: Path, fixed: frozenset[str] = frozenset()) -> Path:
    parts = {
        name: (good if name in fixed else bad) for name, (bad, good, _, _) in ENTRY_ERRORS.items()
    }
    return write(tmp_path, ENTRY_TEMPLATE.format_map(parts))


def entry_expected(fixed: frozenset[str]) -> list[tuple[str, str]]:
    return sorted(
        (where, fragment)
        for name, (_, _, where, fragment) in ENTRY_ERRORS.items()
        if name not in fixed
    )


def test_rules_of_an_entry_are_listed_with_the_errors_of_its_fields(tmp_path: Path) -> None:
    found = issues_of(entry_config(tmp_path))
    assert matches(found, entry_expected(frozenset())), found


@pytest.mark.parametrize("name", sorted(ENTRY_ERRORS))
def test_fixing_an_error_of_an_entry_reveals_no_other(tmp_path: Path, name: str) -> None:
    found = issues_of(entry_config(tmp_path, frozenset({name})))
    assert matches(found, entry_expected(frozenset({name}))), found


def test_the_entries_with_every_error_fixed_are_valid(tmp_path: Path) -> None:
    loaded = load_config(entry_config(tmp_path, frozenset(ENTRY_ERRORS)), environ={})
    assert set(loaded.tasks) == {("r", 0), ("r", 1)}


def test_a_task_rule_runs_on_the_params_that_are_valid(tmp_path: Path) -> None:
    # A variant: the task's own rule (validate) beside a wrong value and a wrong target.
    found = issues_of(
        write(
            tmp_path,
            "targets:\n  api: {kind: http, url: 'http://127.0.0.1:1/'}\n"
            "runbooks:\n  r:\n    steps:\n"
            "      - task: files.cleanup\n        target: api\n"
            "        with: {root: /tmp/x, older_than: soon, remove_empty_dirs: true}\n",
        )
    )
    assert sorted(where for where, _ in found) == [
        "runbooks.r.steps[0].target",
        "runbooks.r.steps[0].with",
        "runbooks.r.steps[0].with.older_than",
    ], found
    assert ("runbooks.r.steps[0].with", "remove_empty_dirs needs recursive: true") in found


def test_a_rule_about_a_value_set_aside_waits_for_that_value(tmp_path: Path) -> None:
    # `url` is written (wrongly): "needs url" would be the default's problem, not the file's.
    found = issues_of(
        write(
            tmp_path,
            "runbooks:\n  r:\n    steps:\n      - task: http.request\n        with: {url: 5}\n",
        )
    )
    assert [where for where, _ in found] == ["runbooks.r.steps[0].with.url"], found


def test_a_step_set_aside_whole_still_has_its_names_checked(tmp_path: Path) -> None:
    found = issues_of(
        write(
            tmp_path,
            "runbooks:\n  r:\n    steps:\n"
            "      - task: service.restart\n        command: [x]\n"
            "        with: {start: [x], stop: [x], verify: nosuch}\n"
            "      - {checks: {names: [ghost]}, manual: do it}\n"
            "checks:\n  c: {depends_on: [phantom]}\n",
        )
    )
    assert sorted(where for where, _ in found) == [
        "checks.c.depends_on[0]",
        "checks.c.target",
        "runbooks.r.steps[0]",
        "runbooks.r.steps[0].with.verify",
        "runbooks.r.steps[1]",
        "runbooks.r.steps[1].checks.names[0]",
    ], found


def test_a_wrong_name_in_params_with_a_wrong_value_is_one_error(tmp_path: Path) -> None:
    # The verify value is itself wrong (too short): its own error, not "no check named ''".
    found = issues_of(
        write(
            tmp_path,
            "runbooks:\n  r:\n    steps:\n      - task: service.restart\n"
            "        with: {start: [x], stop: [x], verify: ''}\n",
        )
    )
    assert [where for where, _ in found] == ["runbooks.r.steps[0].with.verify"], found
    assert "character" in found[0][1], found


def test_probe_params_with_a_wrong_value_still_have_their_names_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe whose params name another check (none ships one yet: the mechanism is the
    same for every probe) with one wrong param and one unknown name: both in one run."""
    from dataclasses import replace
    from typing import Annotated, ClassVar

    from pydantic import Field

    from upkeep.core.models import Reference, StrictModel
    from upkeep.probes import registry
    from upkeep.probes.base import MetricSpec, ProbeOutcome
    from upkeep.probes.host import ProcessProbe

    class PairedParams(StrictModel):
        partner: Annotated[str, Reference(("checks",), "check")] | None = None
        depth: int = Field(default=1, ge=1)

    class PairedProbe(ProcessProbe):
        name: ClassVar[str] = "paired"
        Params: ClassVar[type[StrictModel]] = PairedParams
        metrics: ClassVar[tuple[MetricSpec, ...]] = ProcessProbe.metrics

        async def run(self, target: Any, params: Any, context: Any) -> ProbeOutcome:
            raise NotImplementedError  # never run: the test only loads the config

    host = registry.TARGET_KINDS["host"]
    monkeypatch.setitem(
        registry.TARGET_KINDS, "host", replace(host, probes=(*host.probes, PairedProbe))
    )
    found = issues_of(
        write(
            tmp_path,
            "targets:\n  box: {kind: host}\nchecks:\n"
            "  p: {target: box, probe: paired, params: {partner: nosuch, depth: 0}}\n",
        )
    )
    assert sorted(where for where, _ in found) == [
        "checks.p.params.depth",
        "checks.p.params.partner",
    ], found


def test_no_config_model_has_a_rule_checked_after_its_fields() -> None:
    """A rule of a whole entry checked after its fields (mode="after") stays silent while
    any field is wrong, so fixing that field reveals it: every such rule is a key rule
    (``validate_with_key_rule``), checked with the fields."""
    import typing

    from pydantic import BaseModel

    from upkeep.config.models import UpkeepConfig
    from upkeep.probes.registry import TARGET_KINDS
    from upkeep.tasks.registry import TASK_KINDS

    models: list[type[BaseModel]] = [UpkeepConfig]
    for kind in TARGET_KINDS.values():
        models.append(kind.model)
        models.extend(probe.Params for probe in kind.probes)
    models.extend(task.Params for task in TASK_KINDS.values())
    seen: set[type[BaseModel]] = set()
    after = []
    while models:
        model = models.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, rule in model.__pydantic_decorators__.model_validators.items():
            if rule.info.mode == "after":
                after.append(f"{model.__name__}.{name}")
        for field in model.model_fields.values():
            nested = [field.annotation]
            while nested:
                annotation = nested.pop()
                nested.extend(typing.get_args(annotation))
                if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                    models.append(annotation)
    assert len(seen) > 30
    assert not after, after


def _task_names() -> list[str]:
    from upkeep.tasks.registry import TASK_KINDS

    return sorted(TASK_KINDS)


@pytest.mark.parametrize("task", _task_names())
def test_every_task_rule_judges_params_that_miss_everything(tmp_path: Path, task: str) -> None:
    """``Task.validate`` runs on params as far as they are valid: no target, every required
    param missing, the model's own rules broken. It must say what is wrong, never fail."""
    path = write(
        tmp_path,
        f"runbooks:\n  r:\n    steps:\n      - task: {task}\n        with: {{bogus: 1}}\n",
    )
    found = issues_of(path)
    assert ("runbooks.r.steps[0].with.bogus", "unknown key") in [
        (where, message[:11]) for where, message in found
    ], found


@pytest.mark.parametrize(
    ("condition", "valid"),
    [("passed == 0", True), ("rto_met != 1", True), ("passed > 0", False), ("passed == 2", False)],
)
def test_a_drill_check_may_compare_its_verdict_with_0_or_1(
    tmp_path: Path, condition: str, valid: bool
) -> None:
    path = reference_config(tmp_path, None)
    path.write_text(
        path.read_text().replace(
            "checks:\n",
            f"checks:\n  drill: {{target: backups-db, probe: drill, crit: {condition}}}\n",
        )
    )
    if valid:
        assert load_config(path, environ={}).checks["drill"].crit is not None
    else:
        found = issues_of(path)
        assert [where for where, _ in found] == ["checks.drill.crit"], found
