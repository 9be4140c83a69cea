"""The condition language of ``warn:`` and ``crit:``: safe expressions over metric names.

Grammar (LALR, parsed with Lark — a well-kept parser library whose grammars read like
the spec and whose errors carry columns; no ``eval``, no attribute access, no calls)::

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand (("<" | "<=" | ">" | ">=" | "==" | "!=") operand)*
    operand    := NUMBER | DURATION | STRING | true | false | NAME | `quoted name` | "(" expr ")"

Comparisons chain as in mathematics (``80 < used_percent <= 90``). A duration literal
takes the unit of the metric it is compared with, read from the metric's name:
``*_ms`` → milliseconds, ``*days*`` → days, ``*_s`` and ``seconds`` → seconds. So
``response_time_ms > 1.5s`` means 1500 and ``longest_s > 5m`` means 300.

A size literal is a number of bytes and compares with metrics measured in bytes
(``*bytes``): ``size_bytes > 10GB``. Units are written exactly so (case matters, as a
``b`` is a bit to many people): ``B``; decimal ``kB`` (or ``KB``), ``MB``, ``GB``, ``TB``,
``PB`` (powers of 1000, as disks are sold); binary ``KiB``, ``MiB``, ``GiB``, ``TiB``,
``PiB`` (powers of 1024, as upkeep prints sizes). ``10mb`` or ``10Gb`` is an error, not a
guess.

Once the probe is known, ``Condition.type_problems`` checks every comparison against the
types the probe declares for its metrics: a number never compares with a quoted text
(``status_code != '200'`` would always hold), a duration only with a metric measured in
time, a size only with one measured in bytes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from upkeep.core.durations import parse_duration

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr (_OR and_expr)*      -> any_of
?and_expr: not_expr (_AND not_expr)*    -> all_of
?not_expr: _NOT not_expr                -> negation
         | comparison
?comparison: operand (COMPARATOR operand)*  -> compare
?operand: SIZE                          -> size
        | BAD_SIZE                      -> bad_size
        | DURATION                      -> duration
        | NUMBER                        -> number
        | STRING                        -> string
        | _TRUE                         -> true
        | _FALSE                        -> false
        | NAME                          -> metric
        | QUOTED_NAME                   -> quoted_metric
        | "(" or_expr ")"

_OR: "or"
_AND: "and"
_NOT: "not"
_TRUE: "true"
_FALSE: "false"
COMPARATOR: "<=" | ">=" | "==" | "!=" | "<" | ">"
SIZE.4: /\d+(\.\d+)?(B|[kK]B|MB|GB|TB|PB|KiB|MiB|GiB|TiB|PiB)(?![A-Za-z0-9_])/
BAD_SIZE.3: /\d+(\.\d+)?[kKmMgGtTpP]i?[bB](?![A-Za-z0-9_])/
DURATION.2: /\d+(\.\d+)?(ms|s|m|h|d|w|y)/
NUMBER: /-?\d+(\.\d+)?([eE][+-]?\d+)?/
STRING: /"(?:[^"\\]|\\.)*"/ | /'(?:[^'\\]|\\.)*'/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
QUOTED_NAME: /`[^`]+`/
%ignore /[ \t\r\n]+/
"""

Metrics = Mapping[str, Any]

MAX_CONDITION_LENGTH = 4096
"""The longest condition text accepted, in characters."""
MAX_CONDITION_DEPTH = 32
"""How deeply parentheses and ``not`` may nest: building and evaluating a condition recurse
once per level, and this keeps both far inside Python's recursion limit."""

_COMPARATORS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class ConditionSyntaxError(ValueError):
    """The text is not a valid condition; ``column`` is 1-based within the condition."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(message)
        self.column = column


class ConditionEvaluationError(ValueError):
    """A condition could not be evaluated against a result (missing metric, mixed types)."""


SIZE_FACTORS: dict[str, int] = {
    "B": 1,
    "kB": 1000,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "PB": 1000**5,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "PiB": 1024**5,
}
"""The units of a size literal and their bytes; exactly these spellings."""

OperandKind = Literal["metric", "number", "string", "bool", "duration", "size", "expression"]


@dataclass(frozen=True)
class Operand:
    """One side of a comparison as written: its kind, its text and its 1-based column
    within the condition (None for a parenthesised expression)."""

    kind: OperandKind
    text: str
    column: int | None


@dataclass(frozen=True)
class Comparison:
    """One comparison of a condition (a chain ``a < b < c`` is two)."""

    left: Operand
    symbol: str
    right: Operand


@dataclass(frozen=True)
class MetricType:
    """What a probe declares of a metric: its value type and the unit it is measured in."""

    type: Literal["number", "bool", "string"]
    unit: str | None


@dataclass(frozen=True)
class _Operand:
    evaluate: Callable[[Metrics], Any]
    written: Operand
    metric: str | None = None
    duration_s: float | None = None


def _duration_in_unit_of(seconds: float, metric: str | None) -> float:
    from upkeep.probes.base import metric_unit

    unit = metric_unit(metric) if metric is not None else None
    if unit == "ms":
        return seconds * 1000
    if unit == "days":
        return seconds / 86400
    return seconds


def _size_bytes(text: str) -> int | float:
    """Given a size literal the grammar accepted (``10GB``, ``1.5MiB``), return its bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]+)", text)
    if match is None:  # pragma: no cover - the grammar's token has exactly this form
        raise ValueError(text)
    value = float(match.group(1)) * SIZE_FACTORS[match.group(2)]
    return int(value) if value.is_integer() else value


def _constant(value: Any) -> Callable[[Metrics], Any]:
    return lambda _metrics: value


def _lookup(name: str) -> Callable[[Metrics], Any]:
    def read(metrics: Metrics) -> Any:
        try:
            return metrics[name]
        except KeyError:
            raise ConditionEvaluationError(
                f"metric {name!r} was not returned by the probe"
            ) from None

    return read


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPABLE = frozenset("\\\"'")


def _unescape(body: str) -> str:
    r"""Given the text between a string literal's quotes, return its value.

    Only ``\\``, ``\"`` and ``\'`` are escapes (the ones the grammar needs); a backslash
    before any other character is kept as written, and all other text, non-ASCII
    included, is taken as is.
    """
    return _ESCAPE.sub(
        lambda match: match.group(1) if match.group(1) in _ESCAPABLE else match.group(0), body
    )


@cache
def _parser() -> Any:
    from lark import Lark

    return Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


_EXPRESSION = Operand("expression", "(...)", None)


def _build(tree: Any, names: set[str], comparisons: list[Comparison]) -> _Operand:
    from lark import Token

    if isinstance(tree, Token):  # pragma: no cover - every token is wrapped by an alias rule
        raise ConditionSyntaxError(f"unexpected {tree!s}", tree.column or 1)
    rule = tree.data
    children = tree.children
    if rule in ("any_of", "all_of", "compare") and len(children) == 1:
        # Lark keeps an aliased rule even when it has one child; it is just its child.
        return _build(children[0], names, comparisons)
    token = children[0] if children and isinstance(children[0], Token) else None
    text = str(token) if token is not None else ""
    column = token.column if token is not None else None
    if rule == "number":
        value: float = float(text)
        return _Operand(
            _constant(int(value) if value.is_integer() and "." not in text else value),
            Operand("number", text, column),
        )
    if rule == "duration":
        try:
            seconds = parse_duration(text).total_seconds()
        except ValueError as error:  # longer than the longest duration accepted
            raise ConditionSyntaxError(str(error), column or 1) from None
        return _Operand(_constant(seconds), Operand("duration", text, column), duration_s=seconds)
    if rule == "size":
        return _Operand(_constant(_size_bytes(text)), Operand("size", text, column))
    if rule == "bad_size":
        number = text.rstrip("bBiI").rstrip("kKmMgGtTpP")
        prefix = text[len(number) :][0].upper().replace("K", "k")
        raise ConditionSyntaxError(
            f"{text!r} is not a size; sizes are written {number}{prefix}B (decimal, powers "
            f"of 1000) or {number}{prefix.upper()}iB (binary, powers of 1024)",
            column or 1,
        )
    if rule == "string":
        return _Operand(_constant(_unescape(text[1:-1])), Operand("string", text, column))
    if rule == "true":
        return _Operand(_constant(True), Operand("bool", "true", None))
    if rule == "false":
        return _Operand(_constant(False), Operand("bool", "false", None))
    if rule in ("metric", "quoted_metric"):
        name = text.strip("`")
        names.add(name)
        return _Operand(_lookup(name), Operand("metric", name, column), metric=name)
    if rule == "negation":
        inner = _build(children[0], names, comparisons).evaluate
        return _Operand(lambda metrics: not inner(metrics), _EXPRESSION)
    if rule == "any_of":
        parts = [_build(child, names, comparisons).evaluate for child in children]
        return _Operand(lambda metrics: any(part(metrics) for part in parts), _EXPRESSION)
    if rule == "all_of":
        parts = [_build(child, names, comparisons).evaluate for child in children]
        return _Operand(lambda metrics: all(part(metrics) for part in parts), _EXPRESSION)
    if rule == "compare":
        return _build_comparison(children, names, comparisons)
    raise ConditionSyntaxError(f"unsupported construct {rule!r}", 1)  # pragma: no cover


def _build_comparison(
    children: list[Any], names: set[str], comparisons: list[Comparison]
) -> _Operand:
    operands = [_build(child, names, comparisons) for child in children[0::2]]
    comparators = [str(token) for token in children[1::2]]
    steps: list[
        tuple[Callable[[Metrics], Any], Callable[[Any, Any], bool], Callable[[Metrics], Any], str]
    ] = []
    for index, symbol in enumerate(comparators):
        left, right = operands[index], operands[index + 1]
        comparisons.append(Comparison(left.written, symbol, right.written))
        # A duration literal takes the unit of the metric on the other side.
        if left.duration_s is not None:
            left = _Operand(
                _constant(_duration_in_unit_of(left.duration_s, right.metric)), left.written
            )
        if right.duration_s is not None:
            right = _Operand(
                _constant(_duration_in_unit_of(right.duration_s, left.metric)), right.written
            )
        steps.append((left.evaluate, _COMPARATORS[symbol], right.evaluate, symbol))

    def evaluate(metrics: Metrics) -> bool:
        for read_left, compare, read_right, symbol in steps:
            left_value, right_value = read_left(metrics), read_right(metrics)
            if isinstance(left_value, str) != isinstance(right_value, str) and symbol not in (
                "==",
                "!=",
            ):
                raise ConditionEvaluationError(
                    f"cannot compare {left_value!r} {symbol} {right_value!r}: a text and a number"
                )
            if not compare(left_value, right_value):
                return False
        return True

    return _Operand(evaluate, _EXPRESSION)


_VALUE_TYPE: dict[OperandKind, str] = {
    "number": "number",
    "duration": "number",
    "size": "number",
    "string": "string",
    "bool": "bool",
    "expression": "bool",
}
_TYPE_WORDS = {"number": "a number", "string": "a text", "bool": "true/false"}
_TIME_UNITS = frozenset({"ms", "s", "days"})


def _comparison_problem(
    comparison: Comparison, metric_types: Mapping[str, MetricType]
) -> str | None:
    """Given one comparison and the declared metric types, return why it is wrong, or None.

    A metric the probe does not declare (a Nagios plugin's perfdata label) has no known
    type, and nothing is said about a comparison with it.
    """
    sides = (comparison.left, comparison.right)
    declared: list[MetricType | None] = []
    for side in sides:
        if side.kind == "metric":
            if side.text not in metric_types:
                return None
            declared.append(metric_types[side.text])
        else:
            declared.append(None)
    types = [
        metric.type if metric is not None else _VALUE_TYPE[side.kind]
        for side, metric in zip(sides, declared, strict=True)
    ]
    shown = f"{comparison.left.text} {comparison.symbol} {comparison.right.text}"
    for side, other, other_metric in (
        (sides[0], sides[1], declared[1]),
        (sides[1], sides[0], declared[0]),
    ):
        unit = other_metric.unit if other_metric is not None else None
        if side.kind == "duration" and unit not in _TIME_UNITS:
            return (
                f"in {shown!r}: a duration ({side.text}) compares only with a metric measured "
                f"in time (*_ms, *_s, *days*); {other.text} is not"
            )
        if side.kind == "size" and unit != "bytes":
            return (
                f"in {shown!r}: a size ({side.text}) compares only with a metric measured in "
                f"bytes (*bytes); {other.text} is not"
            )
    if types[0] == types[1]:
        return None
    if sorted(types) == ["bool", "number"]:
        problem = _truth_number_problem(comparison, shown)
        if problem != "":
            return problem
    words = [
        f"{side.text} is {_TYPE_WORDS[value_type]}"
        for side, value_type in zip(sides, types, strict=True)
    ]
    always = {"!=": " (so it would always hold)", "==": " (so it would never hold)"}.get(
        comparison.symbol, ""
    )
    hint = ""
    for side in sides:
        if side.kind == "string" and "number" in types and _NUMBER.fullmatch(side.text[1:-1]):
            hint = f"; write {side.text[1:-1]} without quotes"
        if side.kind == "number" and "bool" in types:
            hint = "; true/false equals only 0 (false) and 1 (true), with == or !="
    return f"in {shown!r}: {' and '.join(words)}, which never compare{always}{hint}"


_NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
_TRUTH_NUMBERS = {0.0: "false", 1.0: "true"}
"""The numbers a true/false value equals when evaluated (false == 0, true == 1)."""


def _truth_number_problem(comparison: Comparison, shown: str) -> str | None:
    """Given a comparison of a true/false side with a number side, return None if it is
    ``==`` or ``!=`` against the number 0 or 1 (as configs wrote ``passed == 0``: it holds
    exactly when the value is false, 0 and false being equal when evaluated), why an
    ordering is refused (with the equality meant), or "" for the general type message.

    An ordering of true and false (``passed > 0``) is refused although it evaluates: it
    reads as a count ("more than zero passed"), which the metric is not, and one written
    with another bound always or never holds (``passed >= 0``); the equality is plain.
    """
    number = next(
        (side for side in (comparison.left, comparison.right) if side.kind == "number"), None
    )
    truth = next(
        (side for side in (comparison.left, comparison.right) if side.kind != "number"), None
    )
    if number is None or truth is None:
        return ""  # a number metric against a true/false value: the general message
    value = _TRUTH_NUMBERS.get(float(number.text))
    if value is None:
        return ""
    if comparison.symbol in ("==", "!="):
        return None
    holds = _ordering_truth(comparison, number is comparison.right, float(number.text))
    meant = {
        frozenset(): f"it never holds; {truth.text} is true/false",
        frozenset({"true", "false"}): f"it always holds; {truth.text} is true/false",
        frozenset({"true"}): f"{truth.text} is true/false: write {truth.text} == true",
        frozenset({"false"}): f"{truth.text} is true/false: write {truth.text} == false",
    }[holds]
    return f"in {shown!r}: true/false has no order; {meant}"


def _ordering_truth(comparison: Comparison, number_right: bool, number: float) -> frozenset[str]:
    """Given an ordering of a true/false side and a number, return the truth values it
    holds for (each evaluated as 0 or 1, as the evaluator does)."""
    compare = _COMPARATORS[comparison.symbol]
    return frozenset(
        name
        for value, name in ((0.0, "false"), (1.0, "true"))
        if (compare(value, number) if number_right else compare(number, value))
    )


@dataclass(frozen=True)
class Condition:
    """A parsed condition: its source text, the metric names it reads, and its evaluator."""

    source: str
    metric_names: frozenset[str]
    _evaluate: Callable[[Metrics], Any]
    comparisons: tuple[Comparison, ...] = ()

    def type_problems(self, metric_types: Mapping[str, MetricType]) -> list[tuple[int | None, str]]:
        """Given the types a probe declares for its metrics, return each comparison that
        cannot be right (a number against a quoted text, a duration against a metric not
        measured in time, a size against one not measured in bytes), as the 1-based column
        of its left side (None if unknown) and what is wrong."""
        found = []
        for comparison in self.comparisons:
            problem = _comparison_problem(comparison, metric_types)
            if problem is not None:
                found.append((comparison.left.column or comparison.right.column, problem))
        return found

    def holds(self, metrics: Metrics) -> bool:
        """Given a probe's metrics, return whether the condition holds.

        Raise ``ConditionEvaluationError`` if a metric it reads is missing or the values
        cannot be compared.
        """
        return bool(self._evaluate(metrics))

    def explain(self, metrics: Metrics) -> str:
        """Given metrics, return the condition with the values it read, for messages."""
        values = ", ".join(
            f"{name}={metrics[name]!r}" for name in sorted(self.metric_names) if name in metrics
        )
        return f"{self.source} ({values})" if values else self.source


def _check_depth(source: str) -> None:
    """Given condition text, raise ``ConditionSyntaxError`` at the first token that nests
    deeper than ``MAX_CONDITION_DEPTH`` (parentheses plus the ``not``s in force).

    Counted on the token stream, before parsing, so no recursion depends on the input;
    text the lexer refuses is left for the parser to report.
    """
    from lark.exceptions import UnexpectedInput

    nots = [0]  # per open parenthesis: how many "not" apply to what follows
    try:
        for token in _parser().lex(source):
            if token.type == "LPAR":
                nots.append(0)
            elif token.type == "RPAR":
                if len(nots) > 1:
                    nots.pop()
            elif token.type == "_NOT":
                nots[-1] += 1
            elif token.type in ("_AND", "_OR"):
                nots[-1] = 0  # a "not" binds tighter than and/or: it ends here
            if len(nots) - 1 + sum(nots) > MAX_CONDITION_DEPTH:
                raise ConditionSyntaxError(
                    f"the condition nests deeper than {MAX_CONDITION_DEPTH} levels of "
                    "parentheses and 'not'",
                    token.column or 1,
                )
    except UnexpectedInput:
        return


@lru_cache(maxsize=4096)
def parse_condition(source: str) -> Condition:
    """Given condition text, return the parsed ``Condition``.

    Raise ``ConditionSyntaxError`` (with a 1-based column) if it is not valid. Cached by
    text: a ``Condition`` is immutable and large configs repeat the same few conditions.
    """
    from lark.exceptions import (
        UnexpectedCharacters,
        UnexpectedEOF,
        UnexpectedInput,
        UnexpectedToken,
    )

    if not source.strip():
        raise ConditionSyntaxError("empty condition", 1)
    if len(source) > MAX_CONDITION_LENGTH:
        raise ConditionSyntaxError(
            f"a condition is at most {MAX_CONDITION_LENGTH:,} characters; this one has "
            f"{len(source):,}",
            1,
        )
    _check_depth(source)
    try:
        tree = _parser().parse(source)
    except UnexpectedToken as error:
        found = "end of condition" if error.token.type == "$END" else repr(str(error.token))
        raise ConditionSyntaxError(
            f"unexpected {found} in condition {source!r}",
            error.column if error.column > 0 else len(source),
        ) from None
    except UnexpectedCharacters as error:
        raise ConditionSyntaxError(
            f"unexpected character {source[error.pos_in_stream or 0]!r} in condition {source!r}",
            error.column,
        ) from None
    except (UnexpectedEOF, UnexpectedInput) as error:
        raise ConditionSyntaxError(f"incomplete condition {source!r}", len(source)) from error
    names: set[str] = set()
    comparisons: list[Comparison] = []
    operand = _build(tree, names, comparisons)
    return Condition(
        source=source,
        metric_names=frozenset(names),
        _evaluate=operand.evaluate,
        comparisons=tuple(comparisons),
    )
