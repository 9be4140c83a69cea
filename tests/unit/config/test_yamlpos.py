"""The YAML reader's bounds: aliases, nesting, tags and numbers, each refused at its line."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from upkeep.config.yamlpos import (
    INTEGER_LIMIT,
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    YamlSyntaxError,
    load_yaml,
)


def refused(text: str) -> YamlSyntaxError:
    with pytest.raises(YamlSyntaxError) as caught:
        load_yaml(text, "upkeep.yaml")
    return caught.value


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [
        f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]" for level in range(1, levels)
    ]
    return "\n".join(lines) + "\n"


def test_a_recursive_alias_is_refused_where_it_stands() -> None:
    error = refused("checks:\n  a: &loop\n    - *loop\n")
    assert (error.line, error.column) == (3, 7)
    assert "recursive alias" in str(error) and "*loop" in str(error)
    assert "recursive" in str(refused("a: &a [*a]\n"))
    assert "recursive" in str(refused("a: &a {b: {c: *a}}\n"))


def test_a_billion_laughs_is_refused_after_reading_it_not_after_expanding_it() -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        error = refused(billion_laughs())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 5 * 1024 * 1024
    assert f"more than {MAX_ALIAS_NODES:,} nodes" in str(error)
    assert error.line == 5  # a4: the first level whose aliases go past the budget


def test_ordinary_anchors_and_merge_keys_work() -> None:
    data, positions = load_yaml(
        "checks:\n"
        "  api: &check {target: api, every: 30s, labels: {team: web}}\n"
        "  web:\n"
        "    <<: *check\n"
        "    target: web\n"
        "  both:\n"
        "    <<: [{every: 1m, timeout: 5s}, *check]\n"
        "  copy: *check\n",
        "upkeep.yaml",
    )
    checks = data["checks"]
    assert checks["web"] == {"target": "web", "every": "30s", "labels": {"team": "web"}}
    # Earlier merged mappings win over later ones; written keys over all of them.
    assert checks["both"] == {
        "every": "1m",
        "timeout": "5s",
        "target": "api",
        "labels": {"team": "web"},
    }
    assert checks["copy"] == checks["api"]
    # A merged key's position is where it was written.
    assert positions.find(("checks", "web", "every")) == (2, 36)
    assert positions.find_key(("checks", "web", "every")) == (2, 29)
    assert positions.find(("checks", "web", "target")) == (5, 13)


def test_a_merge_of_something_other_than_mappings_is_refused() -> None:
    error = refused("a:\n  <<: [1, 2]\n  b: 1\n")
    assert error.line == 2 and "<< merges a mapping" in str(error)


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n",
        "".join(f"{'  ' * level}k{level}:\n" for level in range(MAX_DEPTH + 1))
        + "  " * 65
        + "x: 1\n",
        # Each part is shallow; the alias puts one inside the other.
        "a: &deep " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*deep" + "]" * 30 + "\n",
    ],
    ids=["flow", "block", "through-an-alias"],
)
def test_nesting_is_bounded(text: str) -> None:
    error = refused(text)
    assert f"deeper than {MAX_DEPTH} levels" in str(error)


def test_nesting_within_the_bound_reads() -> None:
    depth = MAX_DEPTH - 1
    data, _ = load_yaml("a: " + "[" * depth + "1" + "]" * depth + "\n", "upkeep.yaml")
    node: Any = data["a"]
    for _ in range(depth):
        node = node[0]
    assert node == 1


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("a: !!python/object:os.system x\n", "tag 'tag:yaml.org,2002:python/object:os.system'", 1),
        ("a:\n  b: !custom x\n", "tag '!custom' is not supported", 2),
        ("a: !!binary aGVsbG8=\n", "is not supported", 1),
        ("a: !!set {x}\n", "is not supported", 1),
        ("a: !!int xyz\n", "'xyz' is not a valid integer", 1),
        ("a: " + "9" * 5000 + "\n", "is too large; integers go up to", 1),
        (f"a: {INTEGER_LIMIT + 1}\n", "is too large", 1),
        ("a: -0x8000000000000001\n", "is too large", 1),
        ("a: .inf\n", "is not a finite number", 1),
        ("a: !!float 1e999\n", "is not a finite number", 1),
        ("window:\n  start: 2024-13-45\n", "is not a valid timestamp", 2),
        ("a: 1\n---\nb: 2\n", "a config is one document", 2),
        ("a: *nothing\n", "names no anchor", 1),
        ("? [a, b]\n: c\n", "a key must be a plain value", 1),
        ("a: 1\na: 2\n", "duplicate key 'a'", 2),
        ("a: b\n  c: \x07\n", "not valid YAML", 2),
    ],
)
def test_what_is_refused_and_where(text: str, message: str, line: int) -> None:
    error = refused(text)
    assert message in str(error)
    assert error.line == line


def test_a_scalar_error_carries_its_key_path() -> None:
    error = refused("engine:\n  concurrency: " + "9" * 100 + "\n")
    assert error.path == ("engine", "concurrency")
    assert (error.line, error.column) == (2, 16)


def test_plain_types_still_read_as_yaml_reads_them() -> None:
    data, _ = load_yaml(
        "a: 0x10\nb: 1_000\nc: .5\nd: ~\ne: yes\nf: 'yes'\ng: 2024-01-01 02:00:00\n"
        f"h: {INTEGER_LIMIT}\ni: -{INTEGER_LIMIT}\n",
        "upkeep.yaml",
    )
    assert data["a"] == 16 and data["b"] == 1000 and data["c"] == 0.5 and data["d"] is None
    assert data["e"] is True and data["f"] == "yes"
    assert data["g"].year == 2024 and data["h"] == INTEGER_LIMIT and data["i"] == -INTEGER_LIMIT
