"""No config input crashes or hangs ``load_config``: every one is a ``ConfigError`` naming
the file, the line and (where there is one) the key.

The inputs are the hostile ones of issue #11 and their variants: files that are not UTF-8,
are not regular files or are huge; durations and numbers past any sense; secrets that are
devices, FIFOs or too large; conditions that nest without end. The last tests walk every
config model, so a field added later cannot escape the bounds.
"""

from __future__ import annotations

import os
import time
import typing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from upkeep.config.errors import ConfigError
from upkeep.config.loader import MAX_CONFIG_BYTES, load_config
from upkeep.config.models import UpkeepConfig
from upkeep.config.secrets import MAX_EXPANDED_CHARS, MAX_SECRET_BYTES
from upkeep.probes.registry import TARGET_KINDS
from upkeep.tasks.registry import TASK_KINDS

DISK_CHECK = "targets:\n  box: {kind: host}\nchecks:\n  disk:\n    target: box\n    probe: disk\n"


def issues_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    """Load ``path``; return the error lines, failing the test if it loads or takes long."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    assert time.monotonic() - started < 5.0
    return [str(issue) for issue in caught.value.issues]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "upkeep.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the config file itself ----------------------------------------------------------------------


def test_a_config_that_is_not_utf8_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_bytes((DISK_CHECK + "    description: caf\xe9\n").encode("latin-1"))
    [issue] = issues_of(path)
    assert issue.startswith(f"{path}:7:21: ")
    assert "not UTF-8 text: byte 0xe9 at offset" in issue


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = {"fifo": tmp_path / "upkeep.yaml", "device": Path("/dev/zero"), "directory": tmp_path}[
        kind
    ]
    if kind == "fifo":
        os.mkfifo(path)
    [issue] = issues_of(path)
    assert issue.startswith(f"{path}:") and "cannot read config" in issue
    assert "not a regular file" in issue


def test_a_config_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    with path.open("wb") as file:
        file.truncate(MAX_CONFIG_BYTES + 1)  # sparse: costs no disk
    [issue] = issues_of(path)
    assert "cannot read config: larger than 8 MiB" in issue


# --- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ("checks:\n  c: {target: box, probe: disk, every: 99999999999999y}\n", "checks.c.every"),
        (
            "checks:\n  c: {target: box, probe: disk, timeout: " + "9" * 400 + "s}\n",
            "checks.c.timeout",
        ),
        ("checks:\n  c: {target: box, probe: disk, for: 101y}\n", "checks.c.for"),
        ("retention: {results: 1000000d}\n", "retention.results"),
        ("engine: {drain_timeout: 5300w}\n", "engine.drain_timeout"),
        ("alerting: {response_targets: {P1: 200y}}\n", "alerting.response_targets.P1"),
        ("alerting: {delivery: {max_backoff: 100y1ms}}\n", "alerting.delivery.max_backoff"),
        ("windows:\n  w: {schedule: '@daily', duration: 10000y}\n", "windows.w.duration"),
        ("routes:\n  - {notify: [x], repeat: 999999999999y}\n", "routes[0].repeat"),
    ],
)
def test_a_duration_past_100_years_is_an_error_naming_the_key(
    tmp_path: Path, snippet: str, key: str
) -> None:
    found = issues_of(write(tmp_path, "targets:\n  box: {kind: host}\n" + snippet))
    assert any(
        f": {key}: " in issue and "longer than 100y, the longest duration" in issue
        for issue in found
    ), found


def test_durations_up_to_100_years_are_taken(tmp_path: Path) -> None:
    loaded = load_config(
        write(
            tmp_path,
            DISK_CHECK + "    every: 100y\nretention: {results: 36500d}\n",
        ),
        environ={},
    )
    assert loaded.checks["disk"].every == timedelta(days=36500)


@pytest.mark.parametrize(
    ("snippet", "key", "message"),
    [
        ("engine: {concurrency: 99999999999999999999999}\n", "engine.concurrency", "too large"),
        ("engine: {concurrency: " + "9" * 5000 + "}\n", "engine.concurrency", "too large"),
        ("alerting: {flapping: {high: .nan}}\n", "alerting.flapping.high", "not a finite"),
        ("alerting: {flapping: {high: 1.0e+999}}\n", "alerting.flapping.high", "not a finite"),
        (
            "windows:\n  w: {start: 9999-12-31T23:00:00, duration: 2h}\n",
            "windows.w.start",
            "between the years 1970 and 9000",
        ),
        (
            "runbooks:\n  r:\n    steps:\n      - task: logs.rotate\n        target: l\n"
            "        with: {min_size: " + "9" * 400 + "G}\n",
            "runbooks.r.steps[0].with.min_size",
            "between 0 and 1 PiB",
        ),
    ],
)
def test_numbers_past_their_range_are_errors_naming_the_key(
    tmp_path: Path, snippet: str, key: str, message: str
) -> None:
    text = "targets:\n  box: {kind: host}\n  l: {kind: logs, path: /tmp}\n" + snippet
    found = issues_of(write(tmp_path, text))
    assert any(f": {key}: " in issue and message in issue for issue in found), found


# --- conditions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("(" * 5000 + "used_percent > 1" + ")" * 5000, "at most 4,096 characters"),
        ("not " * 10000 + "used_percent > 1", "at most 4,096 characters"),
        ("not " * 50000 + "used_percent > 1", "a value is at most 64 Ki characters"),
        ("(" * 40 + "used_percent > 1" + ")" * 40, "nests deeper than 32 levels"),
        ("not " * 33 + "used_percent > 1", "nests deeper than 32 levels"),
        ("used_percent > 99999999y", "longer than 100y"),
    ],
)
def test_conditions_are_bounded_in_length_and_depth(
    tmp_path: Path, condition: str, message: str
) -> None:
    found = issues_of(write(tmp_path, DISK_CHECK + f"    warn: '{condition}'\n"))
    assert any(
        ":7:" in issue and "checks.disk.warn: " in issue and message in issue for issue in found
    ), found


# --- text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("a{4294967295}", "is not a usable regular expression"),
        ("(" * 1000 + "a" + ")" * 1000, "nests its groups too deeply"),
        ("a" * 5000, "a pattern is at most 4,096 characters"),
        ("(unclosed", "is not a valid regular expression"),
    ],
)
def test_a_regular_expression_that_re_cannot_take_is_an_error_naming_the_key(
    tmp_path: Path, pattern: str, message: str
) -> None:
    text = (
        "targets:\n  l: {kind: logs, path: /tmp}\nchecks:\n  errors:\n    target: l\n"
        f"    probe: errors\n    params: {{pattern: '{pattern}'}}\n"
    )
    found = issues_of(write(tmp_path, text))
    assert any(
        ":7:" in issue and "checks.errors.params.pattern: " in issue and message in issue
        for issue in found
    ), found


def test_a_schedule_past_1000_characters_is_refused(tmp_path: Path) -> None:
    schedule = ",".join(["1"] * 600) + " * * * *"
    text = f"runbooks:\n  r:\n    schedule: '{schedule}'\n    steps: [{{manual: look}}]\n"
    found = issues_of(write(tmp_path, text))
    assert any(
        "runbooks.r.schedule: " in issue and "at most 1,000 characters" in issue for issue in found
    ), found


def test_a_single_value_past_64_ki_characters_is_refused_at_its_line(tmp_path: Path) -> None:
    found = issues_of(write(tmp_path, DISK_CHECK + "    description: " + "x" * 70_000 + "\n"))
    assert found == [
        f"{tmp_path / 'upkeep.yaml'}:7:18: checks.disk.description: a value is at most 64 Ki "
        "characters; this one has 70,000"
    ]


# --- secrets ----------------------------------------------------------------------------------------


def secret_issue(tmp_path: Path, reference: str, environ: dict[str, str] | None = None) -> str:
    found = issues_of(write(tmp_path, DISK_CHECK + f"    description: '{reference}'\n"), environ)
    [issue] = found
    assert issue.startswith(f"{tmp_path / 'upkeep.yaml'}:7:18: checks.disk.description: "), issue
    return issue


def test_a_secret_file_that_is_a_device_fifo_or_directory_is_refused_at_once(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "'/dev/zero': a character device, not a regular file" in secret_issue(
        tmp_path, "${file:/dev/zero}"
    )
    assert "a FIFO (named pipe), not a regular file" in secret_issue(tmp_path, f"${{file:{fifo}}}")
    assert "a directory, not a regular file" in secret_issue(tmp_path, f"${{file:{tmp_path}}}")


def test_a_secret_file_over_the_cap_or_not_utf8_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    assert "larger than 64 KiB" in secret_issue(tmp_path, "${file:big}")
    latin = tmp_path / "latin"
    latin.write_bytes("pässword".encode("latin-1"))
    issue = secret_issue(tmp_path, "${file:latin}")
    assert "not UTF-8 text: byte 0xe4 at offset 1" in issue
    assert "pässword" not in issue


def test_an_environment_value_that_is_not_utf8_or_too_long_is_refused(tmp_path: Path) -> None:
    # os.environ keeps bytes that are not UTF-8 as lone surrogates.
    assert "environment variable BAD is not valid UTF-8" in secret_issue(
        tmp_path, "${BAD}", {"BAD": "caf\udce9"}
    )
    assert "environment variable HUGE is longer than 64 KiB" in secret_issue(
        tmp_path, "${HUGE}", {"HUGE": "x" * (MAX_SECRET_BYTES + 1)}
    )


def test_references_cannot_expand_a_small_config_into_a_huge_one(tmp_path: Path) -> None:
    value = "x" * MAX_SECRET_BYTES
    count = MAX_EXPANDED_CHARS // MAX_SECRET_BYTES + 1
    # One reference a value (each value is at most 64 Ki characters once expanded).
    labels = "".join(f"      l{index}: '${{BIG}}'\n" for index in range(count))
    found = issues_of(write(tmp_path, DISK_CHECK + "    labels:\n" + labels), {"BIG": value})
    [issue] = found  # said once, not once per reference
    assert "references add more than 4 Mi characters in all" in issue
    assert value not in issue


def test_a_secret_file_named_many_times_is_read_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upkeep.config import files, secrets

    (tmp_path / "token").write_text("t0ken-value\n", encoding="utf-8")
    reads: list[Path] = []
    real = files.read_text_file

    def counting(path: Path, limit: int) -> str:
        reads.append(path)
        return real(path, limit)

    monkeypatch.setattr(secrets, "read_text_file", counting)
    channels = "".join(f"  c{index}: 'json://h/?t=${{file:token}}'\n" for index in range(50))
    loaded = load_config(write(tmp_path, "channels:\n" + channels), environ={})
    assert len(loaded.config.channels) == 50 and len(reads) == 1


# --- every field of every model --------------------------------------------------------------------


def config_models() -> list[type[BaseModel]]:
    """Every model a config is validated against: sections, targets, probe and task params."""
    found: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in found:
                return
            found.append(annotation)
            for model_field in annotation.model_fields.values():
                visit(model_field.annotation)
            return
        for argument in typing.get_args(annotation):
            visit(argument)

    visit(UpkeepConfig)
    for kind in TARGET_KINDS.values():
        visit(kind.model)
        for probe in kind.probes:
            visit(probe.Params)
    for task in TASK_KINDS.values():
        visit(task.Params)
    return found


def shaped(annotation: Any, wanted: type, value: Any) -> Any:
    """Given a field's annotation, return ``value`` placed where the ``wanted`` type sits
    in it: alone, or as the item of a list or the value of a dict."""
    if annotation is wanted:
        return value
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is list:
        inner = shaped(arguments[0], wanted, value)
        return None if inner is None else [inner]
    if origin is dict:
        inner = shaped(arguments[1], wanted, value)
        key = typing.get_args(arguments[0])[0] if typing.get_args(arguments[0]) else "key"
        return None if inner is None else {key: inner}
    for argument in arguments:
        inner = shaped(argument, wanted, value)
        if inner is not None:
            return inner
    return None


def fields_of_type(wanted: type) -> list[tuple[type[BaseModel], str, list[Any]]]:
    """Return (model, field, constraints) for every field whose type is ``wanted``, alone,
    optional, or inside a list or dict."""
    found = []
    for model in config_models():
        for name, model_field in model.model_fields.items():

            def holds(annotation: Any, metadata: list[Any]) -> list[Any] | None:
                if annotation is wanted:
                    return metadata
                extra = []
                for item in getattr(annotation, "__metadata__", ()):
                    # Annotated[int, Field(le=...)] keeps its bounds inside the FieldInfo.
                    extra.extend(item.metadata if isinstance(item, FieldInfo) else [item])
                for argument in typing.get_args(annotation):
                    inner = holds(argument, [*metadata, *extra])
                    if inner is not None:
                        return inner
                return None

            constraints = holds(model_field.annotation, list(model_field.metadata))
            if constraints is not None:
                found.append((model, model_field.alias or name, constraints))
    return found


def test_every_duration_field_refuses_more_than_100_years() -> None:
    fields = fields_of_type(timedelta)
    assert len(fields) > 30  # the walk reaches targets, probes and tasks
    for model, key, _ in fields:
        annotation = next(
            model_field.annotation
            for name, model_field in model.model_fields.items()
            if key in (name, model_field.alias)
        )
        with pytest.raises(ValidationError, match="longer than 100y"):
            model.model_validate({key: shaped(annotation, timedelta, "101y")})


def test_every_integer_and_float_field_has_an_upper_bound() -> None:
    # The YAML reader caps integers at 64 bits; each field must say its own sensible range.
    unbounded = [
        f"{model.__name__}.{key}"
        for number in (int, float)
        for model, key, constraints in fields_of_type(number)
        if not any(
            isinstance(item, annotated_types.Le | annotated_types.Lt) for item in constraints
        )
        and key != "min_size"  # a size, checked by parse_size (at most 1 PiB)
    ]
    assert unbounded == []


def test_every_datetime_field_is_bounded_within_the_calendar() -> None:
    fields = fields_of_type(datetime)
    assert [(model.__name__, key) for model, key, _ in fields] == [("WindowConfig", "start")]


# --- many errors ---------------------------------------------------------------------------------


def test_setting_aside_failing_entries_is_one_pass_not_one_per_error() -> None:
    from upkeep.config.loader import remove_paths

    data = {"checks": {f"c{index}": {"every": "bad", "target": "box"} for index in range(20_000)}}
    started = time.monotonic()
    pruned = remove_paths(data, [("checks", f"c{index}", "every") for index in range(20_000)])
    # One walk: copying the 20,000-entry section once per error took minutes at 8 MiB.
    assert time.monotonic() - started < 1.0
    assert pruned["checks"]["c7"] == {"target": "box"} and data["checks"]["c7"]["every"] == "bad"


def test_list_items_are_set_aside_by_their_original_index() -> None:
    from upkeep.config.loader import remove_paths

    data = {"routes": ["r0", "r1", "r2", "r3"], "keep": {"a": [1, 2, 3]}}
    pruned = remove_paths(data, [("routes", 1), ("routes", 2), ("keep", "a", 0), ("keep", "a")])
    assert pruned == {"routes": ["r0", "r3"], "keep": {}}


# --- dependencies --------------------------------------------------------------------------------


def dependency_config(tmp_path: Path, depends: dict[str, list[str]]) -> Path:
    checks = "".join(
        f"  {name}: {{target: box, probe: disk, depends_on: [{', '.join(parents)}]}}\n"
        for name, parents in depends.items()
    )
    return write(tmp_path, "targets:\n  box: {kind: host}\nchecks:\n" + checks)


def test_dependency_cycles_are_each_reported_once_at_the_check_they_return_to(
    tmp_path: Path,
) -> None:
    found = issues_of(
        dependency_config(
            tmp_path, {"a": ["b", "c"], "b": ["a"], "c": ["a"], "d": ["d"], "e": ["a"]}
        )
    )
    messages = [issue.split(": ", 1)[1] for issue in found]
    assert messages == [
        "checks.a.depends_on: dependency cycle: a -> b -> a",
        "checks.a.depends_on: dependency cycle: a -> c -> a",
        "checks.d.depends_on: a check cannot depend on itself",
    ]


def test_a_long_dependency_chain_is_checked_in_one_walk(tmp_path: Path) -> None:
    # A chain of 2,000 checks: walking from each check anew took minutes with the cycle
    # closed and 13 s without (4,000: over 5 minutes, and 54 s).
    count = 2000
    chain = {f"c{index}": [f"c{index + 1}"] for index in range(count - 1)}
    loaded = load_config(dependency_config(tmp_path, {**chain, f"c{count - 1}": []}), environ={})
    assert len(loaded.checks) == count
    [issue] = issues_of(dependency_config(tmp_path, {**chain, f"c{count - 1}": ["c0"]}))
    assert issue.endswith(
        "checks.c0.depends_on: dependency cycle: c0 -> c1 -> c2 -> c3 -> c4 -> c5 -> "
        "... (2000 checks) ... -> c1994 -> c1995 -> c1996 -> c1997 -> c1998 -> c1999 -> c0"
    )


def test_an_error_per_entry_lists_a_few_known_names_not_all(tmp_path: Path) -> None:
    # Listing every target in every error made 20,000 bad checks print gigabytes.
    count = 2000
    targets = "".join(f"  t{index}: {{kind: host}}\n" for index in range(count))
    checks = "".join(f"  c{index}: {{target: missing{index}}}\n" for index in range(count))
    found = issues_of(write(tmp_path, f"targets:\n{targets}checks:\n{checks}"))
    assert len(found) == count
    assert all(len(issue) < 400 for issue in found), max(found, key=len)
    assert found[0].endswith(
        "checks.c0.target: no target named 'missing0' (targets: t0, t1, t10, t100, t1000, "
        "t1001, t1002, t1003, t1004, t1005, t1006, t1007, t1008, t1009, t101, t1010, t1011, "
        "t1012, t1013, t1014, ... (2000 in all))"
    )
