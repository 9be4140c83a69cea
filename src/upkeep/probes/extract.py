"""Metrics read from an HTTP answer: JSONPath over a JSON body, a regex over a text body.

An ``http`` check names the numbers it wants from the answer (``params.extract_json`` and
``params.extract_regex``, metric name → expression); each becomes a metric of that name,
which ``warn:`` and ``crit:`` may read like any other. The rules, in one place:

* **JSONPath** (jsonpath-ng's extended grammar, so filters work:
  ``$.services[?(@.name=='api')].latency_ms``) must find exactly one value. No match, or
  several, leaves the metric out and says why in the result's message; a condition that
  reads it is then unknown.
* **Regex** (the ``regex`` module, Python syntax) must have exactly one capturing group;
  the group of the *first* match in the body is the value (text such as Prometheus'
  exposition names a figure once). At most ``MAX_REGEX_TEXT_CHARS`` of the body are
  searched, and one search may take ``REGEX_TIMEOUT_S`` at most, so a pattern that
  backtracks badly costs a bounded time and leaves its metric out.
* **Values** are numbers: a JSON number as is; ``true``/``false`` as 1/0; a text that
  reads as a finite number (``"97.5"``, ``" 12 "``) as that number. Anything else (other
  text, ``null``, an object, a list) leaves the metric out with the reason.
* **The body** is read up to the HTTP seam's cap (``io.http.MAX_BODY_BYTES``); a longer
  one cannot be parsed as JSON and leaves every JSONPath metric out (its regexes search
  the start of what was kept). A body that is not JSON (or not UTF-8) leaves them out too.

* **Threads**: extraction runs on a thread under the check's deadline; a thread that
  outlives it cannot be stopped, so at most ``MAX_RUNNING_EXTRACTIONS`` run at once in the
  process, and a check that finds them all busy leaves its metrics out and says so rather
  than piling more work on the CPU.

Expressions are compiled when the config loads, so a JSONPath that does not parse or a
regex that does not compile (or has no group, or several) is a config error naming its
file, line and key.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jsonpath_ng import JSONPath

MAX_REGEX_TEXT_CHARS = 1024 * 1024
"""How much of a body (in characters, from its start) a regex searches."""
REGEX_TIMEOUT_S = 1.0
"""How long one regex search may take before its metric is left out."""
MAX_EXPRESSION_CHARS = 1024
"""The longest JSONPath or regex accepted in a config."""
MAX_RUNNING_EXTRACTIONS = 2
"""How many extractions may run at once in the process (threads past their check's
deadline included)."""
_RUNNING = threading.BoundedSemaphore(MAX_RUNNING_EXTRACTIONS)


@lru_cache(maxsize=1024)
def compile_jsonpath(expression: str) -> JSONPath:
    """Given a JSONPath expression, return it compiled (cached: checks repeat every round).

    Raise ValueError with the parser's reason if it does not parse.
    """
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext.parser import parse

    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"a JSONPath is at most {MAX_EXPRESSION_CHARS} characters")
    if not expression.strip():
        raise ValueError("empty JSONPath; write one such as $.status.health")
    try:
        return parse(expression)
    except (JsonPathLexerError, JsonPathParserError, ValueError, TypeError) as error:
        raise ValueError(f"not a valid JSONPath: {_first_line(str(error))}") from None
    except Exception as error:  # noqa: BLE001 - the ply parser raises bare Exception on bad input
        raise ValueError(f"not a valid JSONPath: {_first_line(str(error))}") from None


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> Any:
    """Given a regex, return it compiled; raise ValueError if it does not compile or does
    not have exactly one capturing group (the value)."""
    import regex

    if len(pattern) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"a regex is at most {MAX_EXPRESSION_CHARS} characters")
    try:
        compiled = regex.compile(pattern)
    except regex.error as error:
        raise ValueError(f"not a valid regex: {error}") from None
    if compiled.groups != 1:
        raise ValueError(
            f"the regex has {compiled.groups} capturing groups; it needs exactly one, around "
            "the number (write (?:...) for any other group)"
        )
    return compiled


def check_jsonpath(expression: str) -> str:
    """Given a JSONPath from the config, return it; raise ValueError if it does not parse."""
    compile_jsonpath(expression)
    return expression


def check_regex(pattern: str) -> str:
    """Given a regex from the config, return it; raise ValueError if it is not usable."""
    compile_regex(pattern)
    return pattern


@dataclass
class Extracted:
    """What extraction found: metric values, and why each missing one is missing."""

    metrics: dict[str, float | int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def number_of(value: Any) -> float | int | None:
    """Given a value found in an answer, return it as a metric number, or None if it is not
    one: a JSON number as is, true/false as 1/0, a text reading as a finite number."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            return None
        if not math.isfinite(number):
            return None
        try:
            return int(text)
        except ValueError:
            return number
    return None


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no reason given"


def extract(
    body: bytes,
    body_bytes: int,
    json_paths: Mapping[str, str],
    regexes: Mapping[str, str],
) -> Extracted:
    """Given a body as kept (the first bytes of ``body_bytes``) and the metrics to read
    (name → JSONPath, name → regex), return the values found and a reason per metric left
    out; never raise for what the body holds."""
    found = Extracted()
    if not _RUNNING.acquire(blocking=False):
        for name in (*json_paths, *regexes):
            found.problems.append(
                f"{name}: not read, {MAX_RUNNING_EXTRACTIONS} earlier extractions still run"
            )
        return found
    try:
        if json_paths:
            _from_json(body, body_bytes, json_paths, found)
        if regexes:
            _from_text(body, regexes, found)
    finally:
        _RUNNING.release()
    return found


def _from_json(body: bytes, body_bytes: int, paths: Mapping[str, str], found: Extracted) -> None:
    import orjson

    names = ", ".join(paths)
    if body_bytes > len(body):
        found.problems.append(
            f"{names}: the body ({body_bytes:,} bytes) is larger than the {len(body):,} bytes "
            "read, so it cannot be parsed as JSON"
        )
        return
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        found.problems.append(f"{names}: the body is not JSON ({error})")
        return
    for name, expression in paths.items():
        matches = [match.value for match in compile_jsonpath(expression).find(document)]
        if not matches:
            found.problems.append(f"{name}: no match for {expression}")
            continue
        if len(matches) > 1:
            found.problems.append(
                f"{name}: {expression} matched {len(matches)} values, not one; "
                "narrow the path (a filter or an index)"
            )
            continue
        number = number_of(matches[0])
        if number is None:
            found.problems.append(f"{name}: {expression} is {_shown(matches[0])}, not a number")
            continue
        found.metrics[name] = number


def _from_text(body: bytes, regexes: Mapping[str, str], found: Extracted) -> None:
    text = body[: MAX_REGEX_TEXT_CHARS * 4].decode("utf-8", "replace")[:MAX_REGEX_TEXT_CHARS]
    for name, pattern in regexes.items():
        try:
            match = compile_regex(pattern).search(text, timeout=REGEX_TIMEOUT_S)
        except TimeoutError:
            found.problems.append(
                f"{name}: the regex took longer than {REGEX_TIMEOUT_S:g}s over the body; "
                "simplify it (nested repetition backtracks)"
            )
            continue
        if match is None:
            found.problems.append(f"{name}: no match for /{pattern}/")
            continue
        number = number_of(match.group(1))
        if number is None:
            found.problems.append(
                f"{name}: /{pattern}/ captured {_shown(match.group(1))}, not a number"
            )
            continue
        found.metrics[name] = number
