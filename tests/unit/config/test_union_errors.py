"""A value that fails a union is one error naming every member, unless it clearly meant
one member (by its kind), whose errors then stand at their own paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from upkeep.config.errors import ConfigError
from upkeep.config.loader import UNION_TAGS, data_path, load_config, resolve_unions
from upkeep.core.models import StrictModel

HEAD = """\
targets:
  db: {kind: postgres, dsn: "postgresql://127.0.0.1/test"}
channels:
  ops: "json://127.0.0.1:9000/hooks/ops"
"""


def errors_of(tmp_path: Path, text: str) -> list[str]:
    """Given a config's text after HEAD, return its errors without the file's name."""
    path = tmp_path / "upkeep.yaml"
    path.write_text(HEAD + text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return [str(issue).removeprefix(str(path) + ":") for issue in caught.value.issues]


def runbook(on_failure: str) -> str:
    return f"runbooks:\n  r:\n    steps:\n      - manual: hi\n    on_failure: {on_failure}\n"


def test_a_number_for_on_failure_is_one_error_naming_both_members(tmp_path: Path) -> None:
    assert errors_of(tmp_path, runbook("5")) == [
        "9:17: runbooks.r.on_failure: expected stop or continue, or a list of steps; got a number"
    ]


def test_a_mapping_for_on_failure_names_no_member_tag(tmp_path: Path) -> None:
    assert errors_of(tmp_path, runbook("{manual: x}")) == [
        "9:5: runbooks.r.on_failure: expected stop or continue, or a list of steps; "
        "got a mapping (key: value)"
    ]


def test_a_misspelt_word_for_on_failure_is_one_error(tmp_path: Path) -> None:
    assert errors_of(tmp_path, runbook("stopp")) == [
        "9:17: runbooks.r.on_failure: expected stop or continue, or a list of steps; got a text"
    ]


def test_a_list_of_steps_reports_inside_the_step(tmp_path: Path) -> None:
    assert errors_of(tmp_path, runbook("[ {bogus: 1} ]")) == [
        "9:19: runbooks.r.on_failure[0]: a step needs exactly one of checks, task, command, "
        "manual, approval, wait, watch (found: none)",
        "9:20: runbooks.r.on_failure[0].bogus: unknown key (not part of this section; "
        "check the spelling)",
    ]


def retention(match: str) -> str:
    return (
        "runbooks:\n  r:\n    steps:\n      - task: sql.retention\n        target: db\n"
        f"        with: {{table: t, column: c, older_than: 30d, match: {match}}}\n"
    )


def test_a_list_for_a_match_value_names_every_kind_once(tmp_path: Path) -> None:
    assert errors_of(tmp_path, retention("{note: [1, 2], s: {a: 1}, ok: x}")) == [
        "10:62: runbooks.r.steps[0].with.match.note: expected true or false, a whole number, "
        "a number or a text; got a list",
        "10:76: runbooks.r.steps[0].with.match.s: expected true or false, a whole number, "
        "a number or a text; got a mapping (key: value)",
    ]


def test_a_whole_number_too_large_for_a_match_value_gets_the_limit_once(tmp_path: Path) -> None:
    assert errors_of(tmp_path, retention("{n: 99999999999999999}")) == [
        "10:65: runbooks.r.steps[0].with.match.n: must be at most 9007199254740992"
    ]


def route(escalate: str) -> str:
    return f"routes:\n  - notify: [ops]\n    escalate: {escalate}\n"


def test_a_number_for_escalate_names_the_mapping_and_the_list(tmp_path: Path) -> None:
    assert errors_of(tmp_path, route("5")) == [
        "7:15: routes[0].escalate: expected a mapping (key: value) or a list of escalations; "
        "got a number"
    ]


def test_a_mapping_for_escalate_reports_inside_the_mapping(tmp_path: Path) -> None:
    assert errors_of(tmp_path, route("{after: 5m, bogus: 1}")) == [
        "7:5: routes[0].escalate.notify: required key is missing",
        "7:27: routes[0].escalate.bogus: unknown key (not part of this section; "
        "check the spelling)",
    ]


def test_a_list_for_escalate_reports_inside_the_list(tmp_path: Path) -> None:
    assert errors_of(tmp_path, route("[{after: 5m, notify: [ops]}, {after: 5m}]")) == [
        "7:44: routes[0].escalate[1].notify: required key is missing"
    ]


class Nested(StrictModel):
    value: int | list[bool | str]


def test_a_union_inside_the_member_meant_is_resolved_in_turn() -> None:
    data = {"value": [True, [1], "ok"]}
    with pytest.raises(ValidationError) as caught:
        Nested.model_validate(data)
    resolved = resolve_unions(data, caught.value.errors(), Nested)
    assert [(data_path(data, item["loc"], item[UNION_TAGS]), item["msg"]) for item in resolved] == [
        (("value", 1), "expected true or false, or a text; got a list")
    ]
