"""files.cleanup's pure rules: glob matching, params, and the problems validate reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.probes.logs import LogsTarget
from upkeep.tasks.files.cleanup import (
    DEFAULT_MAX_FILES,
    CleanupParams,
    FilesCleanup,
    Matcher,
    pattern_problem,
)


def params(**values: Any) -> CleanupParams:
    return CleanupParams.model_validate({"older_than": "7d", **values})


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*", "a.log", True),
        ("*", "sub/a.log", False),
        ("*.log", "a.log", True),
        ("*.log", "a.log.1", False),
        ("*.log*", "a.log.1.gz", True),
        ("app-?.log", "app-1.log", True),
        ("app-?.log", "app-12.log", False),
        ("app-[0-9].log", "app-7.log", True),
        ("app-[!0-9].log", "app-7.log", False),
        ("app-[!0-9].log", "app-x.log", True),
        ("[ab]/*.log", "a/x.log", True),
        ("**/*.log", "x.log", True),
        ("**/*.log", "a/b/c/x.log", True),
        ("**/*.log", "a/b/c/x.txt", False),
        ("archive/**/*.gz", "archive/x.gz", True),
        ("archive/**/*.gz", "archive/2026/11/x.gz", True),
        ("archive/**/*.gz", "current/x.gz", False),
        ("archive/**", "archive/2026/x", True),
        ("a/*.log", "a/b/x.log", False),
        ("[unclosed", "[unclosed", True),
        ("a.b", "axb", False),
        ("**", "any/depth/at/all", True),
    ],
)
def test_glob_matches_whole_relative_paths(pattern: str, path: str, expected: bool) -> None:
    assert Matcher(pattern, recursive=False).matches(path) is expected


def test_recursive_pattern_without_slash_matches_the_name_at_any_depth() -> None:
    assert Matcher("*.log", recursive=True).matches("a/b/x.log")
    assert not Matcher("*.log", recursive=False).matches("a/b/x.log")
    assert not Matcher("a*.log", recursive=True).matches("a/b/x.log")


def test_a_class_never_matches_the_separator() -> None:
    assert not Matcher("a[/]b", recursive=True).matches("a/b")
    assert not Matcher("a[!x]b", recursive=True).matches("a/b")


@pytest.mark.parametrize("pattern", ["/var/log/*.log", "../*.log", "a/../b", "./x", "a//b", ""])
def test_patterns_that_could_not_name_files_under_root_are_rejected(pattern: str) -> None:
    assert pattern_problem(pattern) is not None
    with pytest.raises(ValidationError):
        params(pattern=pattern)


def test_defaults() -> None:
    step = params()
    assert step.root is None
    assert step.pattern is None
    assert step.older_than == timedelta(days=7)
    assert step.recursive is False
    assert step.remove_empty_dirs is False
    assert step.max_files == DEFAULT_MAX_FILES == 10_000


def test_older_than_is_required_and_needs_a_unit() -> None:
    with pytest.raises(ValidationError, match="older_than"):
        CleanupParams.model_validate({"root": "/srv/x"})
    with pytest.raises(ValidationError, match="has no unit"):
        CleanupParams.model_validate({"root": "/srv/x", "older_than": 7})


def test_unknown_keys_and_a_zero_cap_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        params(follow_links=True)
    with pytest.raises(ValidationError, match="max_files"):
        params(max_files=0)


def test_validate_needs_a_root_from_params_or_target() -> None:
    task = FilesCleanup()
    assert task.validate(None, params()) == [
        "files.cleanup needs `root`, or a logs target whose path is the root"
    ]
    assert task.validate(LogsTarget(path="/var/log/app"), params()) == []
    assert task.validate(None, params(root="/srv/app/tmp")) == []


def test_validate_rejects_a_relative_root() -> None:
    (problem,) = FilesCleanup().validate(None, params(root="logs"))
    assert "relative" in problem


def test_validate_wants_recursive_for_deep_patterns_and_empty_dirs() -> None:
    task = FilesCleanup()
    (problem,) = task.validate(None, params(root="/srv/x", pattern="**/*.log"))
    assert "set recursive: true" in problem
    (problem,) = task.validate(None, params(root="/srv/x", remove_empty_dirs=True))
    assert "remove_empty_dirs needs recursive" in problem
    target = LogsTarget(path="/var/log/app", pattern="**/*.log")
    (problem,) = task.validate(target, params())
    assert "'**/*.log' reaches into subdirectories" in problem
    assert task.validate(target, params(recursive=True)) == []
