"""The server-independent part of the SQL ``query`` probe: rows to metrics, and params."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import ValidationError

from upkeep.config.errors import ConfigError
from upkeep.config.loader import load_config
from upkeep.probes.postgres import QueryProbe
from upkeep.probes.sql import (
    QueryFailed,
    QueryParams,
    QueryResult,
    result_metrics,
    statement_timeout_s,
    to_number,
    validate_params,
    writing_problem,
)


def params(**values: Any) -> QueryParams:
    return QueryParams.model_validate({"query": "select 1", "metrics": ["a"], **values})


def metrics_of(columns: list[str], rows: list[tuple[Any, ...]], **values: Any) -> dict[str, Any]:
    metrics, _ = result_metrics(QueryResult(columns, rows, 1.25), params(**values))
    return metrics


def test_first_row_gives_the_declared_columns_plus_time_and_row_count() -> None:
    metrics, message = result_metrics(
        QueryResult(["A", "other"], [(3, "x"), (9, "y")], 2.5), params()
    )
    assert metrics == {"a": 3, "elapsed_ms": 2.5, "rows": 2}
    assert message == "a=3; 2 row(s) in 2.5 ms"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("12"), 12),
        (Decimal("1.5"), 1.5),
        (True, 1),
        (2.25, 2.25),
        (timedelta(minutes=2), 120.0),
        (None, None),
    ],
)
def test_numbers_of_every_driver_type(value: Any, expected: Any) -> None:
    assert to_number(value, "a") == expected
    assert type(to_number(value, "a")) is type(expected)


@pytest.mark.parametrize("value", ["12", b"1", float("nan"), Decimal("Infinity")])
def test_values_that_are_not_numbers_are_refused_without_quoting_them(value: Any) -> None:
    with pytest.raises(QueryFailed, match=r"column 'a' holds .* not numbers; cast it") as caught:
        to_number(value, "a")
    assert "12" not in str(caught.value)


def test_null_and_no_row_are_unknown_unless_null_as() -> None:
    with pytest.raises(QueryFailed, match="column 'a' is NULL; set null_as"):
        metrics_of(["a"], [(None,)])
    with pytest.raises(QueryFailed, match="the query returned no row, so 'a' has no value"):
        metrics_of(["a"], [])
    with pytest.raises(QueryFailed, match="returned no row, so 'a' has no value"):
        metrics_of(["table", "a"], [], key_column="table")
    assert metrics_of(["a"], [], null_as=0)["a"] == 0
    assert metrics_of(["a"], [(None,)], null_as=0.5)["a"] == 0.5


def test_missing_or_ambiguous_columns_name_what_came_back() -> None:
    with pytest.raises(QueryFailed, match=r"no column 'a' \(columns: b, c\); alias it"):
        metrics_of(["b", "c"], [(1, 2)])
    with pytest.raises(QueryFailed, match="2 columns named 'a'"):
        metrics_of(["a", "A"], [(1, 2)])


def test_too_many_rows_is_an_error_not_a_truncation() -> None:
    with pytest.raises(QueryFailed, match=r"more than max_rows \(2\)"):
        metrics_of(["a"], [(1,), (2,), (3,)], max_rows=2)


def test_key_column_gives_per_key_metrics_and_aggregates() -> None:
    rows = [("public.users", 300, 1), ("public.events", 900, 2)]
    metrics = metrics_of(["table", "a", "b"], rows, metrics=["a", "b"], key_column="table")
    assert metrics == {
        "a.public.users": 300,
        "b.public.users": 1,
        "a.public.events": 900,
        "b.public.events": 2,
        "a": 900,
        "b": 2,
        "elapsed_ms": 1.25,
        "rows": 2,
    }
    summed = metrics_of(["table", "a"], rows[:2], key_column="table", aggregate="sum")
    assert summed["a"] == 1200
    assert metrics_of(["table", "a"], [], key_column="table", null_as=0)["a"] == 0
    with pytest.raises(QueryFailed, match="column 'a' is NULL in the row of key 'gone'; set"):
        metrics_of(["table", "a"], [("gone", None)], key_column="table")


def test_params_rules() -> None:
    with pytest.raises(ValidationError, match="letters, digits and _"):
        params(metrics=["count(*)"])
    with pytest.raises(ValidationError, match="reserved"):
        params(metrics=["rows"])
    with pytest.raises(ValidationError, match="listed twice"):
        params(metrics=["a", "A"])
    with pytest.raises(ValidationError, match="longer than 0s"):
        params(lock_timeout="0s")
    assert validate_params(params(key_column="a"), "postgres") == [
        "key_column 'a' cannot also be one of metrics"
    ]
    assert validate_params(params(aggregate="sum"), "mysql") == [
        "aggregate applies only with key_column"
    ]
    assert statement_timeout_s(params(statement_timeout="1m"), 10.0) == 9.0
    assert statement_timeout_s(params(), 10.0) == 9.0
    assert statement_timeout_s(params(statement_timeout="2s"), 10.0) == 2.0
    assert [spec.name for spec in QueryProbe.metrics_for(params())] == ["a", "elapsed_ms", "rows"]  # type: ignore[union-attr]
    assert QueryProbe.metrics_for(None) is None


CONFIG = """\
targets:
  db: {{kind: postgres, dsn: "postgresql://u@127.0.0.1:5432/x"}}
checks:
  constraints:
    target: db
    probe: query
    params:
      query: "select count(*) as unvalidated from pg_constraint where not convalidated"
      metrics: [unvalidated]
    warn: {warn}
"""


def test_conditions_are_checked_against_the_declared_metrics(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(CONFIG.format(warn="unvalidated > 0 or elapsed_ms > 500"), encoding="utf-8")
    loaded = load_config(path, environ={})
    assert loaded.checks["constraints"].warn is not None
    path.write_text(CONFIG.format(warn="invalid > 0"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert [str(issue) for issue in caught.value.issues] == [
        f"{path}:10:11: checks.constraints.warn: unknown metric 'invalid' for probe "
        "postgres.query; it returns: unvalidated, elapsed_ms, rows"
    ]


def test_wrong_params_leave_the_condition_names_unchecked(tmp_path: Path) -> None:
    path = tmp_path / "upkeep.yaml"
    path.write_text(
        CONFIG.format(warn="invalid > 0").replace("[unvalidated]", "[unvalidated, rows]"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    issues = [str(issue) for issue in caught.value.issues]
    assert issues == [
        f"{path}:9:7: checks.constraints.params.metrics: metric name 'rows' is reserved: "
        "every query check has it"
    ]


def test_a_metric_name_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be letters, digits and _"):
        QueryParams.model_validate({"query": "select 1 as n", "metrics": ["n\n"]})


@pytest.mark.parametrize(
    ("dialect", "query", "words"),
    [
        ("mysql", "SELECT 1 AS n INTO OUTFILE '/tmp/x'", "outfile"),
        ("mysql", "select 1 as n into/**/dumpfile '/tmp/x'", "dumpfile"),
        ("mysql", "select 1 as n /*! INTO OUTFILE '/tmp/x' */", "outfile"),
        ("postgres", "select lo_export(16400, '/tmp/x') as n", "lo_export"),
        ("postgres", "select 1 as n from \"dblink_exec\"('x', 'delete from t')", "dblink_exec"),
        ("postgres", "COPY (select 1) TO '/tmp/x'", "'copy'"),
        ("postgres", "/* a comment */ copy t to '/tmp/x'", "'copy'"),
        ("mysql", "# comment\n delete from t", "'delete'"),
        ("postgres", "select U&\"\\006co_export\"(1, '/tmp/x') as n", "U&"),
    ],
)
def test_queries_that_may_write_despite_the_read_only_transaction_are_refused(
    dialect: Literal["postgres", "mysql"], query: str, words: str
) -> None:
    problem = writing_problem(query, dialect)
    assert problem is not None
    assert words in problem


@pytest.mark.parametrize(
    ("dialect", "query"),
    [
        ("postgres", "-- leading comment\n(select count(*) as n from pg_constraint)"),
        ("postgres", "with t as (select 1 as n) select n from t"),
        ("mysql", "/* x */ SELECT COUNT(*) AS n FROM information_schema.tables"),
        ("mysql", "show global status like 'Threads_connected'"),
        # '#' is an operator on PostgreSQL, not a comment: the words after it still count.
        ("postgres", "select 1 # 2 as n"),
    ],
)
def test_reading_queries_pass(dialect: Literal["postgres", "mysql"], query: str) -> None:
    assert writing_problem(query, dialect) is None
