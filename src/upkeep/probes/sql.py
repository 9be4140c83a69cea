"""The ``query`` probe shared by PostgreSQL and MySQL/MariaDB targets: a read-only SQL
query whose named numeric columns are the check's metrics.

The check declares the metric names in its params (``metrics: [unvalidated]``) so that
its conditions are validated against them when the config loads. Each driver module
(``probes/postgres.py``, ``probes/mysql.py``) runs the query its own way, read-only and
under a statement and a lock timeout, and hands the rows here; everything that does not
depend on the server lives in this module:

* **one row** (no ``key_column``): the first row's declared columns are the metrics; more
  rows are not an error (``rows`` says how many came back, up to ``max_rows``);
* **per-key rows** (``key_column``): each row gives ``<metric>.<key>`` metrics (``size_bytes.
  public.users``) for history and display, and each declared name is the aggregate
  (``max`` by default, or ``min`` / ``sum``) over the rows, which is what conditions see;
* **zero rows and NULL**: no value is not zero (``max(lag)`` over nothing), so the check
  becomes ``unknown`` saying which column was empty, unless ``null_as`` gives the value to
  use instead (``null_as: 0`` for "nothing found means none");
* **types**: integers, floats, ``Decimal`` (an integral one becomes an int), booleans (0/1)
  and intervals (seconds) are numbers; text, dates and bytes are refused with a message
  telling to cast in the query, never guessed at;
* two metrics are always there: ``elapsed_ms``, the query's own time (run and fetch, not
  the connection), and ``rows``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from upkeep.core.durations import Duration
from upkeep.core.models import StrictModel
from upkeep.core.results import MetricValue
from upkeep.probes.base import MetricSpec, metrics_from

METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""A declared metric name: what a condition can name without quoting."""

FIXED_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("elapsed_ms", "number", "time to run the query and fetch its rows"),
    MetricSpec("rows", "number", "rows the query returned (at most `max_rows`)"),
)
"""The metrics every ``query`` check returns besides the declared ones."""

DEFAULT_STATEMENT_SHARE = 0.9
"""The share of the check's timeout a query may run for at most (and by default)."""
MAX_KEY_LENGTH = 200
"""The longest key (``key_column`` value) kept in a metric name; longer ones are cut."""


class QueryFailed(Exception):  # noqa: N818 - reads as an outcome, like TimeoutError
    """The query could not run or its result is not metrics; the message is for people
    (the check becomes ``unknown``)."""


class QueryParams(StrictModel):
    """Params of the ``query`` probe of ``postgres`` and ``mysql`` targets."""

    query: str = Field(
        min_length=1,
        description="one SELECT statement; its columns named in `metrics` are the metrics",
    )
    metrics: list[str] = Field(
        min_length=1,
        description="the column names (aliases) that are metrics; conditions may use these",
    )
    key_column: str | None = Field(
        default=None,
        description=(
            "a column whose value names each row: each row gives `<metric>.<key>` metrics "
            "and each declared metric is the `aggregate` over the rows"
        ),
    )
    aggregate: Literal["max", "min", "sum"] = Field(
        default="max", description="how per-key rows make each declared metric (key_column)"
    )
    null_as: float | None = Field(
        default=None,
        ge=-1e15,
        le=1e15,
        description=(
            "the value of a metric whose column is NULL or when no row comes back; "
            "unset, either makes the check unknown"
        ),
    )
    max_rows: int = Field(
        default=100, ge=1, le=1000, description="more rows than this make the check unknown"
    )
    statement_timeout: Duration | None = Field(
        default=None,
        description=(
            "the server cancels the query after this (at most, and by default, 90 % of "
            "the check's timeout)"
        ),
    )
    lock_timeout: Duration = Field(
        default=timedelta(seconds=2),
        description="the longest the query waits for a lock before giving up",
    )

    @field_validator("metrics")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        reserved = {spec.name for spec in FIXED_METRICS}
        seen: set[str] = set()
        for name in value:
            if not METRIC_NAME.fullmatch(name):
                raise ValueError(
                    f"metric name {name!r} must be letters, digits and _ "
                    "(not starting with a digit); alias the column in the query"
                )
            if name in reserved:
                raise ValueError(f"metric name {name!r} is reserved: every query check has it")
            if name.lower() in seen:
                raise ValueError(f"metric name {name!r} is listed twice")
            seen.add(name.lower())
        return value

    @field_validator("statement_timeout", "lock_timeout")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be longer than 0s")
        return value


Dialect = Literal["postgres", "mysql"]

READING_STATEMENTS = frozenset({"select", "with", "values", "table", "show"})
"""The first words of a statement a ``query`` check may run: statements that only read."""
WRITING_WORDS: dict[Dialect, frozenset[str]] = {
    # A read-only transaction does not stop these: they write files on the server
    # (INTO OUTFILE/DUMPFILE; lo_export, adminpack's pg_file_*) or act through another
    # connection (dblink), which has its own transaction.
    "mysql": frozenset({"outfile", "dumpfile"}),
    "postgres": frozenset(
        {"lo_export", "pg_file_write", "pg_file_rename", "pg_file_unlink", "dblink_exec", "dblink"}
    ),
}
_LEADING = {
    # Whitespace, opening parentheses and comments before the first word.
    "postgres": re.compile(r"(?:\s+|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S),
    "mysql": re.compile(r"(?:\s+|\(|--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S),
}
_WORD = re.compile(r"[a-z_][a-z0-9_$]*")


def writing_problem(query: str, dialect: Dialect) -> str | None:
    """Given a query's text and the server's dialect, return why it may write despite the
    read-only transaction it runs in, or None if it reads only as far as can be told.

    Deliberately coarse: every word counts, including those inside string literals,
    quoted identifiers and comments, so no quoting or comment hides one (a literal holding
    such a word is refused too; the message says which word). A database role without
    file or superuser privileges is the other half of this guard (docs/probes.md).
    """
    lowered = query.lower()
    leading = _LEADING[dialect].match(lowered)
    first = _WORD.match(lowered, leading.end() if leading else 0)
    if first is None or first.group() not in READING_STATEMENTS:
        shown = first.group() if first else lowered.lstrip()[:20]
        return (
            f"the query must be one statement that reads (SELECT, WITH, VALUES, TABLE or "
            f"SHOW), not {shown!r}"
        )
    if dialect == "postgres" and re.search(r"\bu&\s*[\"']", lowered):
        # Unicode escapes could spell a function name no word search would see.
        return "the query may not use U&'...' or U&\"...\" escapes"
    words = set(_WORD.findall(lowered))
    found = sorted(words & WRITING_WORDS[dialect])
    if found:
        return (
            f"the query names {', '.join(found)}, which can write outside the read-only "
            "transaction; query checks only read"
        )
    return None


def validate_params(params: QueryParams, dialect: Dialect) -> list[str]:
    """Given query params and the server's dialect, return the problems the model alone
    cannot express: a query that may write (``writing_problem``), a key column that is
    also a metric, an aggregate without a key column."""
    problems: list[str] = []
    writing = writing_problem(params.query, dialect)
    if writing is not None:
        problems.append(writing)
    if params.key_column is not None and params.key_column.lower() in {
        name.lower() for name in params.metrics
    }:
        problems.append(f"key_column {params.key_column!r} cannot also be one of metrics")
    if params.key_column is None and "aggregate" in params.model_fields_set:
        problems.append("aggregate applies only with key_column")
    return problems


def declared_metrics(params: QueryParams) -> tuple[MetricSpec, ...]:
    """Given query params, return every metric a check with them returns (declared first)."""
    declared = tuple(
        MetricSpec(
            name,
            "number",
            f"{params.aggregate} of column {name} over the rows"
            if params.key_column
            else f"column {name} of the first row",
        )
        for name in params.metrics
    )
    return declared + FIXED_METRICS


def statement_timeout_s(params: QueryParams, check_timeout_s: float) -> float:
    """Given params and the check's timeout, return the server-side statement timeout in
    seconds: the param, never longer than ``DEFAULT_STATEMENT_SHARE`` of the check's own
    timeout (the default), so the server's cancel, which names the limit, arrives before
    the check gives up on an unanswering server."""
    ceiling = check_timeout_s * DEFAULT_STATEMENT_SHARE
    if params.statement_timeout is None:
        return ceiling
    return min(params.statement_timeout.total_seconds(), ceiling)


@dataclass(frozen=True)
class QueryResult:
    """What a driver fetched: the column names, up to ``max_rows + 1`` rows, and the
    query's time in milliseconds."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    elapsed_ms: float


def to_number(value: Any, column: str) -> int | float | None:
    """Given a value from a column, return it as a metric number (None for NULL).

    Raise QueryFailed for a value that is not a number (text, a date, bytes, NaN): the
    message names the column and its type, never the value, which is data.
    """
    match value:
        case None:
            return None
        case bool():
            return int(value)
        case int():
            return value
        case float() if math.isfinite(value):
            return value
        case Decimal() if value.is_finite():
            return int(value) if value == value.to_integral_value() else float(value)
        case timedelta():
            return value.total_seconds()
    kind = type(value).__name__
    if isinstance(value, float | Decimal):
        kind = "non-finite number"
    raise QueryFailed(
        f"column {column!r} holds {kind} values, not numbers; cast it in the query "
        "(::bigint, ::float8 on PostgreSQL; CAST(... AS SIGNED) or + 0 on MySQL)"
    )


def _column_index(columns: Sequence[str], name: str) -> int:
    """Given the result's column names and a declared name, return its column's index
    (matched ignoring case, as unquoted SQL names are); raise QueryFailed if it is missing
    or ambiguous."""
    matches = [index for index, column in enumerate(columns) if column.lower() == name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        returned = ", ".join(columns) or "none"
        raise QueryFailed(
            f"the query returns no column {name!r} (columns: {returned}); alias it: ... AS {name}"
        )
    raise QueryFailed(f"the query returns {len(matches)} columns named {name!r}")


def _value(
    number: int | float | None,
    column: str,
    params: QueryParams,
    key: str | None = None,
    *,
    no_row: bool = False,
) -> int | float:
    """Given a column's number (None for NULL, or for no row with ``no_row``) and its row's
    key, return the number, or ``null_as`` for NULL; raise QueryFailed for NULL (or no
    row) without ``null_as``, saying which of the two it was."""
    if number is not None:
        return number
    if params.null_as is None:
        if no_row:
            raise QueryFailed(
                f"the query returned no row, so {column!r} has no value; set null_as "
                "(e.g. 0) if that means a value, or aggregate in the query (count(*), "
                "coalesce(max(...), 0))"
            )
        where = f" in the row of key {key!r}" if key is not None else ""
        raise QueryFailed(
            f"column {column!r} is NULL{where}; set null_as (e.g. 0) if that means a "
            "value, or coalesce() it in the query"
        )
    return int(params.null_as) if params.null_as.is_integer() else params.null_as


def _aggregate(values: list[int | float], how: str) -> int | float:
    """Given numbers and ``max``/``min``/``sum``, return the aggregate."""
    if how == "sum":
        return sum(values)
    return max(values) if how == "max" else min(values)


def result_metrics(result: QueryResult, params: QueryParams) -> tuple[dict[str, MetricValue], str]:
    """Given what a driver fetched and the params, return the metrics and a message.

    Raise QueryFailed if more than ``max_rows`` rows came back, a declared (or key)
    column is missing or not numeric, or a value is NULL (or no row came back) without
    ``null_as``.
    """
    if len(result.rows) > params.max_rows:
        raise QueryFailed(
            f"the query returned more than max_rows ({params.max_rows}) rows; "
            "add a LIMIT or raise max_rows"
        )
    indexes = {name: _column_index(result.columns, name) for name in params.metrics}
    metrics: dict[str, MetricValue] = {}
    if params.key_column is None:
        if result.rows:
            row = result.rows[0]
            for name, index in indexes.items():
                metrics[name] = _value(to_number(row[index], name), name, params)
        else:
            for name in params.metrics:
                metrics[name] = _value(None, name, params, no_row=True)
    else:
        key_index = _column_index(result.columns, params.key_column)
        per_name: dict[str, list[int | float]] = {name: [] for name in params.metrics}
        for row in result.rows:
            key = _key_text(row[key_index])
            for name, index in indexes.items():
                value = _value(to_number(row[index], name), name, params, key)
                metrics[f"{name}.{key}"] = value
                per_name[name].append(value)
        for name, values in per_name.items():
            metrics[name] = (
                _aggregate(values, params.aggregate)
                if values
                else _value(None, name, params, no_row=True)
            )
    metrics["elapsed_ms"] = result.elapsed_ms
    metrics["rows"] = len(result.rows)
    return metrics_from(metrics), _message(metrics, params, len(result.rows), result.elapsed_ms)


def _key_text(value: Any) -> str:
    """Given a key column's value, return it as the text in a metric name."""
    text = "null" if value is None else str(value)
    return text[:MAX_KEY_LENGTH]


def _message(
    metrics: dict[str, MetricValue], params: QueryParams, rows: int, elapsed_ms: float
) -> str:
    """Return one line for people: the declared metrics, the rows and the time."""
    shown = ", ".join(f"{name}={_short(metrics[name])}" for name in params.metrics)
    over = f" ({params.aggregate} over keys)" if params.key_column else ""
    return f"{shown}{over}; {rows} row(s) in {elapsed_ms:.1f} ms"


def _short(value: MetricValue) -> str:
    """Return a number as people read it (floats to 3 significant decimals)."""
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


class QueryProbeMixin:
    """What the ``query`` probes of both servers declare alike."""

    dialect: ClassVar[Dialect]
    name: ClassVar[str] = "query"
    summary: ClassVar[str] = (
        "Run one SQL statement in a read-only transaction under `statement_timeout` and "
        "`lock_timeout` (a write fails: 'the query tried to write'); the columns named in "
        "`metrics` are the metrics. One row: the first row's values (`rows` counts all, "
        "more than `max_rows` is an error). With `key_column`: per-key metrics and their "
        "`aggregate`. Integers, decimals, booleans (0/1) and intervals (seconds) are "
        "numbers; text or dates are an error (cast in the query); NULL or no row makes "
        "the check unknown unless `null_as` gives the value. The config is refused if "
        "the statement does not start with SELECT, WITH, VALUES, TABLE or SHOW, or names "
        "what writes outside the transaction (`INTO OUTFILE`/`DUMPFILE`; `lo_export`, "
        "`pg_file_*`, `dblink`), even in a literal. Still give the check a database role "
        "without file, superuser or write privileges: that is the guard no text check "
        "replaces."
    )
    Params: ClassVar[type[StrictModel]] = QueryParams
    metrics: ClassVar[tuple[MetricSpec, ...]] = FIXED_METRICS
    params_metrics: ClassVar[str | None] = (
        "each name in `metrics`: the column of the first row, or the `aggregate` over "
        "rows with `key_column` (which adds `<name>.<key>` per row)"
    )

    @classmethod
    def metrics_for(cls, params: StrictModel | None) -> tuple[MetricSpec, ...] | None:
        """Given a check's params, return the declared metrics and the fixed ones; None
        when the params are wrong (the names they declare are not known)."""
        return declared_metrics(params) if isinstance(params, QueryParams) else None

    def validate(self, target: object, params: QueryParams) -> list[str]:
        """Given a target and params, return the rules the params model cannot express
        (``validate_params`` in this server's dialect)."""
        del target
        return validate_params(params, self.dialect)

    def refuse_writing(self, params: QueryParams) -> None:
        """Given params, raise QueryFailed if the query may write (``writing_problem``):
        validated at load, checked again before running, as params may come from elsewhere."""
        writing = writing_problem(params.query, self.dialect)
        if writing is not None:
            raise QueryFailed(writing)
