"""Load ``upkeep.yaml``: parse with positions, expand secrets, validate everything, compile.

Nothing is applied from a config that has any error: ``load_config`` either returns a
fully validated ``LoadedConfig`` or raises ``ConfigError`` listing every problem found,
each with file, line, column, key path and what was expected.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError, ValidatorFunctionWrapHandler

from upkeep.config.conditions import Condition, ConditionSyntaxError, parse_condition
from upkeep.config.cron import validate_cron
from upkeep.config.errors import ConfigError, ConfigIssue, KeyPath
from upkeep.config.files import FileReadError, read_text_file
from upkeep.config.models import NAME_PATTERN
from upkeep.config.secrets import expand_tree
from upkeep.config.yamlpos import Positions, YamlSyntaxError, load_yaml
from upkeep.core.models import Reference
from upkeep.core.redaction import Redactor, SecretMarker

if TYPE_CHECKING:
    from upkeep.config.models import StepConfig, UpkeepConfig
    from upkeep.core.models import StrictModel
    from upkeep.probes.base import Probe, TargetBase
    from upkeep.tasks.base import Task

CONFIG_ENV = "UPKEEP_CONFIG"
DEFAULT_CONFIG = "upkeep.yaml"
MAX_CONFIG_BYTES = 8 * 1024 * 1024
"""The largest config file read: about 50,000 checks; loading time and memory grow with it."""


@dataclass(frozen=True)
class CompiledCheck:
    """A check ready to run: its target and probe resolved, its conditions parsed."""

    name: str
    target_name: str
    target: TargetBase
    probe: type[Probe[Any, Any]]
    params: StrictModel
    warn: Condition | None
    crit: Condition | None
    every: timedelta
    timeout: timedelta
    severity: str
    labels: Mapping[str, str]
    enabled: bool

    @property
    def probe_name(self) -> str:
        """Return ``kind.probe``, e.g. ``postgres.connections``."""
        return f"{self.probe.target_kind}.{self.probe.name}"


@dataclass(frozen=True)
class CompiledTask:
    """A runbook task step ready to run: its task class, target and parsed params."""

    task: type[Task[Any, Any]]
    target_name: str | None
    target: TargetBase | None
    params: StrictModel


@dataclass(frozen=True)
class LoadedConfig:
    """A valid config, its origin, the redactor knowing its secrets, compiled checks and
    compiled task steps (keyed by runbook name and the step's position in a run: steps,
    then rollback, then finally)."""

    path: Path
    config: UpkeepConfig
    redactor: Redactor
    checks: Mapping[str, CompiledCheck]
    tasks: Mapping[tuple[str, int], CompiledTask] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        """Return the directory relative paths in the config are resolved against."""
        return self.path.parent


def find_config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Given ``-c FILE`` (or None), return the path: that, else ``$UPKEEP_CONFIG``, else ``./upkeep.yaml``."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_CONFIG)


class _Collector:
    def __init__(self, file: str, positions: Positions) -> None:
        self.file = file
        self.positions = positions
        self.issues: list[ConfigIssue] = []
        self.rounds: list[KeptIndexes] = []
        """How list indexes of the validated config map back to the file's."""

    def add(
        self, path: KeyPath, message: str, column_offset: int = 0, *, at_key: bool = False
    ) -> None:
        path = _original_path(path, self.rounds)
        line, column = self.positions.find_key(path) if at_key else self.positions.find(path)
        self.issues.append(ConfigIssue(self.file, line, column + column_offset, path, message))


def _target_kind_names() -> tuple[str, ...]:
    from upkeep.probes.registry import TARGET_KINDS

    return tuple(TARGET_KINDS)


def _walk_loc(
    raw: Any, loc: tuple[int | str, ...], tags: Iterable[int] = ()
) -> tuple[KeyPath, tuple[int, ...]]:
    """Given the data, a pydantic error location and the indexes in it known to be union
    member tags, return the key path really present in the data and the indexes of the
    other parts that name no key in the data (so may be union member tags).

    Pydantic puts union member tags (``http``, ``bool``, ``list[...]``), aliases' field
    names and wrapper names into ``loc``; only the keys that exist in the YAML can be found
    in the file. The target union's tag stands only at ``targets.<name>.<tag>`` (index 2);
    anywhere else a part named like a kind (``host``, ``command``) is a real key and is
    named. A part that names no key of a mapping, and is not a known tag, is a missing key.
    """
    skip = frozenset(tags)
    path: list[str | int] = []
    candidates: list[int] = []
    node = raw
    for index, part in enumerate(loc):
        if index in skip or (index == 2 and loc[0] == "targets" and part in _target_kind_names()):
            continue  # a union tag, even when the value has a key of that name
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part.rstrip("_") in node:
            path.append(part.rstrip("_"))
            node = node[part.rstrip("_")]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and part not in node:
            # A missing key (known union tags were skipped above): name it.
            candidates.append(index)
            path.append(part)
            node = None
        elif isinstance(part, str):
            candidates.append(index)
    return tuple(path), tuple(candidates)


def data_path(raw: Any, loc: tuple[int | str, ...], tags: Iterable[int] = ()) -> KeyPath:
    """Given the data, a pydantic error location and the indexes in it that are union
    member tags, return the key path of the error in the data (see ``_walk_loc``)."""
    return _walk_loc(raw, loc, tags)[0]


_SHAPE_MISMATCHES = frozenset(
    {
        "bool_type",
        "bool_parsing",
        "int_type",
        "int_parsing",
        "int_from_float",
        "float_type",
        "float_parsing",
        "string_type",
        "list_type",
        "tuple_type",
        "set_type",
        "dict_type",
        "model_type",
        "model_attributes_type",
        "literal_error",
        "time_delta_type",
        "time_delta_parsing",
        "datetime_type",
        "datetime_parsing",
        "datetime_from_date_parsing",
        "is_instance_of",
        "none_required",
    }
)
"""Error types saying a value is not of a union member's kind at all (rather than of its
kind and wrong inside or against a limit)."""

UNION_TAGS = "upkeep_union_tags"
"""Key of an error (as ``resolve_unions`` returns it) listing its loc's union tags."""


def _union_of(
    raw: Any, errors: Sequence[Mapping[str, Any]], start: Mapping[int, int]
) -> list[int | None]:
    """Given the data, errors and from which loc index on each is still unresolved, return
    for each error the loc index of the first union member tag at or after it, or None.

    A part is a union tag when it names no key of the data and errors of the same value
    (the same loc before it) name at least two different such parts: each member of a
    failed union fails with its own tag.
    """
    candidates: list[tuple[int, ...]] = []
    tags_at: dict[tuple[int | str, ...], set[int | str]] = {}
    for number, error in enumerate(errors):
        loc = tuple(error["loc"])
        found = tuple(
            index
            for index in _walk_loc(raw, loc, error.get(UNION_TAGS, ()))[1]
            if index >= start.get(number, 0)
        )
        candidates.append(found)
        for index in found:
            tags_at.setdefault(loc[:index], set()).add(loc[index])
    unions = {prefix for prefix, tags in tags_at.items() if len(tags) > 1}
    return [
        next((index for index in found if tuple(error["loc"])[:index] in unions), None)
        for error, found in zip(errors, candidates, strict=True)
    ]


def resolve_unions(
    raw: Any,
    errors: Sequence[Mapping[str, Any]],
    model_type: type[BaseModel] | None = None,
    start: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Given the data and pydantic's errors of it, return them with one entry per value
    that failed a union: the errors of the member the value clearly meant (the first
    whose kind it has: a list for a list member, a mapping for a model, a whole number
    for an int), which keep their own paths, or else one error naming every member.

    Every returned error lists, under ``UNION_TAGS``, the loc indexes that are union tags.
    """
    start = start or {}
    firsts = _union_of(raw, errors, start)
    resolved: list[dict[str, Any]] = []
    groups: dict[tuple[int | str, ...], dict[int | str, list[int]]] = {}
    for number, (error, first) in enumerate(zip(errors, firsts, strict=True)):
        if first is None:
            resolved.append({**error, UNION_TAGS: tuple(error.get(UNION_TAGS, ()))})
        else:
            loc = tuple(error["loc"])
            groups.setdefault(loc[:first], {}).setdefault(loc[first], []).append(number)
    for prefix, members in groups.items():
        at = len(prefix)

        def shape_mismatch(number: int, at: int = at) -> bool:
            error = errors[number]
            return len(error["loc"]) == at + 1 and error["type"] in _SHAPE_MISMATCHES

        meant = next(
            (numbers for numbers in members.values() if not any(map(shape_mismatch, numbers))),
            None,
        )
        if meant is not None:
            tagged = [
                {**errors[n], UNION_TAGS: (*errors[n].get(UNION_TAGS, ()), at)} for n in meant
            ]
            resolved += resolve_unions(
                raw, tagged, model_type, dict.fromkeys(range(len(tagged)), at + 1)
            )
            continue
        own = [errors[n] for numbers in members.values() for n in numbers if shape_mismatch(n)]
        first_error = own[0]
        tags = tuple(first_error.get(UNION_TAGS, ()))
        path = data_path(raw, prefix, tags)
        resolved.append(
            {
                "type": "union_mismatch",
                "loc": prefix,
                "msg": f"expected {_alternatives(own, path, _list_items(model_type, path))}; got "
                f"{_kind_of(first_error.get('input'))}",
                "input": first_error.get("input"),
                UNION_TAGS: tags,
            }
        )
    return resolved


def _bare(annotation: Any) -> Any:
    """Given an annotation, return it without ``Annotated`` and ``| None``."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, UnionType) and type(None) in get_args(annotation):
            arms = [arm for arm in get_args(annotation) if arm is not type(None)]
            if len(arms) != 1:
                return Union[tuple(arms)]  # noqa: UP007 - built at run time
            annotation = arms[0]
        else:
            return annotation


def _list_items(model_type: type[BaseModel] | None, path: KeyPath) -> str | None:
    """Given the model validated and the key path of a value that failed a union, return
    what the union's list member holds in words (``steps`` for ``list[StepConfig]``), or
    None when that is not known (no list member, no ``...Config`` model in it)."""
    annotation: Any = model_type
    for part in path:
        annotation = _bare(annotation)
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = annotation.model_fields
            named = next(
                (
                    info
                    for name, info in fields.items()
                    if part in (name, info.alias) or name == f"{part}_"
                ),
                None,
            )
            if named is None:
                return None
            annotation = named.annotation
        elif origin is dict and isinstance(part, str):
            annotation = get_args(annotation)[1]
        elif origin is list and isinstance(part, int):
            annotation = get_args(annotation)[0]
        else:
            return None
    for arm in get_args(_bare(annotation)):
        if get_origin(arm) is list:
            item = _bare(get_args(arm)[0])
            if isinstance(item, type) and item.__name__.endswith("Config"):
                words = re.sub(r"(?<!^)(?=[A-Z])", " ", item.__name__.removesuffix("Config"))
                return f"{words.lower()}s" if words else None
    return None


def _alternatives(
    errors: Sequence[Mapping[str, Any]], path: KeyPath, list_of: str | None = None
) -> str:
    """Given each union member's shape error of one value (and what the list member holds,
    if known), return what the members take in one phrase: ``stop or continue, or a list
    of steps``; ``a whole number or a text``."""
    phrases: list[str] = []
    for error in errors:
        if error["type"] in ("list_type", "tuple_type") and list_of:
            expected = f"a list of {list_of}"
        elif error["type"] == "literal_error":
            expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", "")
        else:
            expected = _describe(error, path).removeprefix("expected ").split(", got ")[0]
        if expected not in phrases:
            phrases.append(expected)
    if len(phrases) == 1:
        return phrases[0]
    last = ", or " if " or " in phrases[-2] else " or "
    return ", ".join(phrases[:-1]) + last + phrases[-1]


_KIND_OF_VALUE: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "true or false"),
    ((int, float), "a number"),
    (str, "a text"),
    (list, "a list"),
    (dict, "a mapping (key: value)"),
)


def _kind_of(value: Any) -> str:
    """Given an input value, return what people call its kind (never the value: it may be a
    secret not yet known to the redactor)."""
    if value is None:
        return "nothing (null)"
    for kinds, name in _KIND_OF_VALUE:
        if isinstance(value, kinds):
            return name
    return type(value).__name__


PATTERN_WORDS = {
    NAME_PATTERN: "a name of letters, digits, '_', '.' and '-', starting with a letter or digit",
    r"^https?://": "a URL starting with http:// or https://",
    # The http probe's extracted metric names and the systemd probe's unit (written out:
    # importing the probes here would load them for every config; a test holds them equal).
    r"^[A-Za-z_][A-Za-z0-9_]{0,63}$": "a metric name of at most 64 letters, digits and '_', not starting "
    "with a digit",
    r"^[A-Za-z0-9:_.@\\-]{1,255}$": "a systemd unit name of letters, digits, ':', '_', '.', '@', '-' and '\\' "
    "(no '/' or spaces), such as nginx or backup@daily.timer",
}
"""Plain words for the patterns fields are checked against; others are shown as written."""


def _flow_list(items: list[str]) -> str:
    """Given strings, return them as a YAML flow list, quoting only what needs it."""
    plain = re.compile(r"^[A-Za-z0-9_./=@%+-][A-Za-z0-9_./=@%+:-]*$")
    return "[" + ", ".join(item if plain.match(item) else json.dumps(item) for item in items) + "]"


def _list_hint(key: str | int | None, value: Any) -> str:
    """Given a key whose value should be a list and the value written, return how to write it."""
    if not isinstance(value, str):
        return f"expected a list, got {_kind_of(value)}"
    try:
        items = shlex.split(value)
    except ValueError:
        items = [value]
    items = items or [value]
    name = key if isinstance(key, str) else "it"
    # An argv is never run through a shell: a string would promise pipes, globs and
    # $VARIABLES that do not happen, and splitting it here would guess at quoting.
    return (
        f"expected a list, got a text; write {name}: {_flow_list(items)} "
        "(one item per argument; no shell is involved)"
        if len(items) > 1
        else f"expected a list, got a text; write {name}: {_flow_list(items)}"
    )


def _describe(error: Mapping[str, Any], path: KeyPath = ()) -> str:
    """Given one pydantic error and where it is, return what is wrong in plain words: what
    is expected, and what was found where that helps."""
    kind = error.get("type", "")
    context = error.get("ctx") or {}
    value = error.get("input")
    message = str(error.get("msg", "invalid value"))
    key = path[-1] if path else None
    described = {
        "extra_forbidden": "unknown key (not part of this section; check the spelling)",
        "missing": "required key is missing",
        "union_tag_invalid": f"unknown target kind {context.get('tag')!r}; expected one of "
        f"{context.get('expected_tags', '')}",
        "union_tag_not_found": f"a target needs a kind: one of {', '.join(_target_kind_names())}",
        "list_type": _list_hint(key, value),
        "tuple_type": _list_hint(key, value),
        "dict_type": f"expected a mapping (key: value), got {_kind_of(value)}",
        "model_type": f"expected a mapping (key: value), got {_kind_of(value)}",
        "model_attributes_type": f"expected a mapping (key: value), got {_kind_of(value)}",
        "string_type": f"expected a text, got {_kind_of(value)}",
        "int_type": f"expected a whole number, got {_kind_of(value)}",
        "int_parsing": f"expected a whole number, got {_kind_of(value)}",
        "int_from_float": "expected a whole number, got a fraction",
        "float_type": f"expected a number, got {_kind_of(value)}",
        "float_parsing": f"expected a number, got {_kind_of(value)}",
        "bool_type": f"expected true or false, got {_kind_of(value)}",
        "bool_parsing": f"expected true or false, got {_kind_of(value)}",
        "literal_error": "expected one of "
        + str(context.get("expected", "")).replace("'", "").replace(" or ", ", "),
        "greater_than_equal": f"must be at least {context.get('ge')}",
        "greater_than": f"must be more than {context.get('gt')}",
        "less_than_equal": f"must be at most {context.get('le')}",
        "less_than": f"must be less than {context.get('lt')}",
        "too_short": f"needs at least {context.get('min_length')} item(s)",
        "too_long": f"takes at most {context.get('max_length')} item(s)",
        "string_too_short": f"needs at least {context.get('min_length')} character(s)",
        "string_too_long": f"takes at most {context.get('max_length')} characters",
        "string_pattern_mismatch": "expected "
        + PATTERN_WORDS.get(
            str(context.get("pattern")), f"text of the form {context.get('pattern')}"
        ),
        "time_delta_type": f"expected a duration such as 30s, 5m or 2h, got {_kind_of(value)}",
        "time_delta_parsing": "expected a duration such as 30s, 5m or 2h",
        "datetime_type": "expected a date and time such as 2025-06-01T02:00:00+02:00",
        "datetime_parsing": "expected a date and time such as 2025-06-01T02:00:00+02:00",
        "datetime_from_date_parsing": "expected a date and time such as 2025-06-01T02:00:00+02:00",
    }
    return described.get(kind, message.removeprefix("Value error, "))


def _markers(annotation: Any) -> list[SecretMarker]:
    """Return the SecretMarkers in an annotation, including inside ``dict[str, Annotated[...]]``."""
    found = [
        meta for meta in getattr(annotation, "__metadata__", ()) if isinstance(meta, SecretMarker)
    ]
    for argument in get_args(annotation):
        found.extend(_markers(argument))
    return found


@functools.cache
def _field_markers(model_type: type[BaseModel]) -> tuple[tuple[str, tuple[SecretMarker, ...]], ...]:
    """Return each field of a model class with its secret markers (cached: a config with
    thousands of targets walks the same few classes thousands of times)."""
    fields = []
    for name, model_field in model_type.model_fields.items():
        markers = [meta for meta in model_field.metadata if isinstance(meta, SecretMarker)]
        markers += _markers(model_field.annotation)
        fields.append((name, tuple(markers)))
    return tuple(fields)


def _collect_secrets(model: BaseModel, redactor: Redactor) -> None:
    """Walk a model and hand every secret-marked field value to the redactor."""
    for name, markers in _field_markers(type(model)):
        value = getattr(model, name)
        if markers and value is not None:
            for text in _strings(value):
                if "${" in text:
                    # Still holds an unresolved reference (its error is listed): the name is
                    # no secret, and masking it would hide which variable is missing. Values
                    # that came from references are in the redactor already.
                    continue
                if markers[0].part == "password":
                    redactor.add_url(text)
                else:
                    redactor.add(text)
            continue
        children = (
            value.values()
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else [value]
        )
        for child in children:
            if isinstance(child, BaseModel):
                _collect_secrets(child, redactor)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list | tuple):
        return [text for item in value for text in _strings(item)]
    return []


_REMOVE = object()
"""Marks a key or item to drop in the tree ``remove_paths`` builds."""

KeptIndexes = dict[KeyPath, list[int]]
"""For each list ``remove_paths`` shortened (by its path in the result): the original index
of each item it kept."""


def remove_paths(
    data: Any, paths: Iterable[KeyPath], kept_indexes: KeptIndexes | None = None
) -> Any:
    """Return a copy of ``data`` without the keys or list items at ``paths``, in one pass.

    All paths are taken in the original's terms (removing item 1 of a list does not make
    its item 2 the new 1), and each container is copied at most once, so thousands of
    failing entries cost one walk of the data, not one walk each. Given ``kept_indexes``,
    record there how the items of each shortened list map back to the original's.
    """
    tree: dict[Any, Any] = {}
    for path in paths:
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if child is _REMOVE:
                break  # a parent goes already
            node = child
        else:
            node[path[-1]] = _REMOVE
    return _prune(data, tree, (), kept_indexes)


def _prune(data: Any, tree: dict[Any, Any], at: KeyPath, kept_indexes: KeptIndexes | None) -> Any:
    # The recursion follows the paths, which the YAML loader's depth bound limits.
    if isinstance(data, dict):
        kept: dict[str, Any] = {}
        for key, value in data.items():
            below = tree.get(key)
            if below is _REMOVE:
                continue
            kept[key] = _prune(value, below, (*at, key), kept_indexes) if below else value
        return kept
    if isinstance(data, list):
        items: list[Any] = []
        originals: list[int] = []
        for index, item in enumerate(data):
            below = tree.get(index)
            if below is _REMOVE:
                continue
            position = (*at, len(items))
            items.append(_prune(item, below, position, kept_indexes) if below else item)
            originals.append(index)
        if kept_indexes is not None and len(items) != len(data):
            kept_indexes[at] = originals
        return items
    return data


def _original_path(path: KeyPath, rounds: list[KeptIndexes]) -> KeyPath:
    """Given a path in the data after some rounds of removal, return it in the original's
    terms (each round's list indexes mapped back through the rounds before it)."""
    for kept_indexes in reversed(rounds):
        if not kept_indexes:
            continue
        mapped: list[str | int] = []
        for depth, part in enumerate(path):
            originals = kept_indexes.get(path[:depth])
            if isinstance(part, int) and originals is not None and part < len(originals):
                mapped.append(originals[part])
            else:
                mapped.append(part)
        path = tuple(mapped)
    return path


_MAX_ROUNDS = 16
"""Validation rounds at most: each sets aside what failed, so errors nested inside one
another are all found; a config's nesting is far shallower than this."""


@dataclass
class _Validated:
    """What ``_validate_all`` made of some data: the model (None if even the data without
    its failing parts did not validate) and the paths it had to set aside, in the data's
    original terms."""

    model: Any
    removed: set[KeyPath]
    rounds: list[KeptIndexes] = field(default_factory=list)


def _exists(data: Any, path: KeyPath) -> bool:
    node = data
    for part in path:
        in_mapping = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if not (in_mapping or in_list):
            return False
        node = node[part]
    return True


def _validate_all(
    model_type: type[BaseModel],
    data: Any,
    collector: _Collector,
    prefix: KeyPath = (),
    already_reported: frozenset[KeyPath] = frozenset(),
) -> _Validated:
    """Given a model class and data, validate, list every error under ``prefix`` and return
    the model of the data without its failing parts.

    Each round reports what failed and sets it aside (a bad value goes, so its default
    applies; a key that is missing takes its entry with it), then validates again, so an
    error that only shows once its neighbours are valid (a rule of the whole entry) is
    listed in the same run. An error caused by setting something aside (the key just
    removed is now missing; an entry's rule about the key removed) is not listed: it is
    not in the file.
    """
    rounds: list[KeptIndexes] = []
    removed: set[KeyPath] = set()
    reported: set[tuple[KeyPath, str]] = set()
    current = data
    for _ in range(_MAX_ROUNDS):
        try:
            return _Validated(model_type.model_validate(current), removed, rounds)
        except ValidationError as error:
            cut: set[KeyPath] = set()
            for item in resolve_unions(current, error.errors(), model_type):
                here = data_path(current, tuple(item["loc"]), item[UNION_TAGS])
                path = _original_path(here, rounds)
                caused_by_us = any(
                    gone[: len(path)] == path
                    and (len(gone) > len(path) or item["type"] == "missing")
                    for gone in removed
                )
                if not caused_by_us and path not in already_reported:
                    message = _describe(item, path)
                    if (path, message) not in reported:
                        reported.add((path, message))
                        collector.add(
                            (*prefix, *path), message, at_key=item["type"] == "extra_forbidden"
                        )
                # What goes: the failing value, or the entry that lacks a required key.
                if item["type"] == "missing" or not _exists(current, here):
                    here = here[:-1]
                if here:
                    cut.add(here)
            if not cut:
                break
            kept_indexes: KeptIndexes = {}
            removed |= {_original_path(path, rounds) for path in cut}
            current = remove_paths(current, cut, kept_indexes)
            rounds.append(kept_indexes)
    return _Validated(None, removed, rounds)


def _compile_checks(
    config: UpkeepConfig, collector: _Collector, set_aside: set[KeyPath]
) -> dict[str, CompiledCheck]:
    """Given a config, return its checks compiled and list every problem of each: its
    probe, its params (their own errors and the probe's rules), the syntax of its
    conditions, their metric names and types; add to ``set_aside`` each params value set
    aside for its own errors (in the file's terms).

    Each part is checked whatever the others hold (conditions are parsed even when the
    target is unknown, params are checked even when a condition is wrong, the probe's
    rules run on the params that are valid), so fixing one problem never reveals another.
    A missing target is the reference check's to report.
    """
    from upkeep.probes.registry import TARGET_KINDS

    compiled: dict[str, CompiledCheck] = {}
    for name, check in config.checks.items():
        path: KeyPath = ("checks", name)
        target = config.targets.get(check.target)
        probe_class = None
        if target is not None:
            kind = TARGET_KINDS[target.kind]
            probe_name = check.probe or kind.default_probe
            probe_class = kind.probe(probe_name)
            if probe_class is None:
                choices = ", ".join(probe.name for probe in kind.probes)
                collector.add(
                    (*path, "probe"),
                    f"{target.kind} targets have no probe {probe_name!r}; "
                    f"expected one of {choices}",
                )
        params = None
        if target is not None and probe_class is not None:
            checked = _check_params(probe_class.Params, check.params, collector, (*path, "params"))
            set_aside |= {(*path, "params", *gone) for gone in checked.removed}
            if checked.model is not None:
                problems = probe_class().validate(target, checked.model)
                for problem in _unaffected(problems, checked.set_aside):
                    collector.add((*path, "params"), problem)
                if checked.complete:
                    params = checked.model
        conditions = {
            key: _compile_condition(check, key, path, probe_class, params, collector)
            for key in ("warn", "crit")
        }
        if target is None or probe_class is None or params is None:
            continue
        compiled[name] = CompiledCheck(
            name=name,
            target_name=check.target,
            target=target,
            probe=probe_class,
            params=params,
            warn=conditions["warn"],
            crit=conditions["crit"],
            every=(
                probe_class.default_every
                if probe_class.default_every is not None and "every" not in check.model_fields_set
                else check.every
            ),
            timeout=check.timeout,
            severity=check.severity,
            labels={**target.labels, **check.labels},
            enabled=check.enabled,
        )
    return compiled


def _compile_condition(
    check: Any,
    key: str,
    path: KeyPath,
    probe_class: type[Probe[Any, Any]] | None,
    params: StrictModel | None,
    collector: _Collector,
) -> Condition | None:
    """Given a check, ``warn`` or ``crit``, its probe (None if unknown) and its params
    (None if wrong), return the parsed condition, or None if there is none or it is wrong
    (each problem listed). The metric names are those the probe returns with these params
    (a ``query`` check's declared ``metrics``); they go unchecked while the params that
    declare them are wrong, which is reported already."""
    from upkeep.config.conditions import MetricType

    source = getattr(check, key)
    if source is None:
        return None
    # The recorded position of a quoted scalar is its opening quote, one column before
    # the text; a column within the condition is counted from there.
    offset = collector.positions.value_offset((*path, key)) - 1
    try:
        condition = parse_condition(source)
    except ConditionSyntaxError as error:
        collector.add((*path, key), str(error), column_offset=offset + error.column)
        return None
    if probe_class is None:
        return condition  # its metrics are checked once the probe is known
    described = f"{probe_class.target_kind}.{probe_class.name}"
    specs = probe_class.metrics_for(params)
    if specs is None:
        return condition
    if not probe_class.dynamic_metrics:
        unknown = sorted(condition.metric_names - {spec.name for spec in specs})
        if unknown:
            returns = ", ".join(spec.name for spec in specs)
            collector.add(
                (*path, key),
                f"unknown metric {', '.join(map(repr, unknown))} for probe "
                f"{described}; it returns: {returns}",
            )
            return None
    types = {spec.name: MetricType(spec.type, spec.unit) for spec in specs}
    problems = condition.type_problems(types)
    for column, problem in problems:
        collector.add((*path, key), problem, column_offset=offset + (column or 1))
    return None if problems else condition


def _compile_tasks(
    config: UpkeepConfig, collector: _Collector, redactor: Redactor, set_aside: set[KeyPath]
) -> dict[tuple[str, int], CompiledTask]:
    """Given a config, return its task steps compiled and list every problem of each: the
    task, the kind of its target, its params' own errors and the task's rules; add to
    ``set_aside`` each params value set aside for its own errors (in the file's terms).

    The task's rules (``Task.validate``) run whatever the target and the other params
    hold: on the params that are valid, with the target only when it is one the task
    takes (else None), leaving out what they say about a key that is itself wrong.
    """
    from upkeep.tasks.registry import TASK_KINDS

    compiled: dict[tuple[str, int], CompiledTask] = {}
    for name, runbook in config.runbooks.items():
        # Keyed by the step's position in the run (steps, then rollback, then finally).
        for index, (_phase, key, step) in enumerate(runbook.flow()):
            if step.task is None:
                continue
            path: KeyPath = ("runbooks", name, *key)
            task_class = TASK_KINDS.get(step.task)
            if task_class is None:
                choices = ", ".join(sorted(TASK_KINDS))
                collector.add(
                    (*path, "task"), f"unknown task {step.task!r}; expected one of {choices}"
                )
                continue
            target = config.targets.get(step.target) if step.target is not None else None
            # A missing target is the reference check's to report.
            target_ok = step.target is None or target is not None
            if target is not None and target.kind not in task_class.target_kinds:
                accepted = ", ".join(task_class.target_kinds) or "no target"
                collector.add(
                    (*path, "target"),
                    f"task {step.task} takes {accepted}, not a {target.kind} target",
                )
                target_ok = False
            if step.target is None and task_class.target_required:
                accepted = ", ".join(task_class.target_kinds)
                collector.add(path, f"task {step.task} needs a target ({accepted})")
                target_ok = False
            checked = _check_params(task_class.Params, step.with_, collector, (*path, "with"))
            set_aside |= {
                _original_path((*path, "with", *gone), collector.rounds) for gone in checked.removed
            }
            if checked.model is None:
                continue
            params = checked.model
            _collect_secrets(params, redactor)
            # With a wrong target the task's rules still judge the params; what they say
            # about the target waits for one the task takes.
            problems = task_class().validate(target if target_ok else None, params)
            unknown = checked.set_aside if target_ok else checked.set_aside | {"target"}
            for problem in _unaffected(problems, unknown):
                collector.add((*path, "with"), problem)
            if checked.complete and target_ok:
                compiled[(name, index)] = CompiledTask(task_class, step.target, target, params)
    return compiled


@dataclass(frozen=True)
class _CheckedParams:
    """A probe's or task's params as far as they are valid.

    ``model`` holds every valid value, a default for each value set aside and None for a
    required key that is missing or set aside (None if even that cannot be built);
    ``complete`` says nothing was set aside; ``set_aside`` names the keys (at the top of
    the params) that were; ``removed`` holds the paths set aside, in the params' terms.
    """

    model: Any
    complete: bool
    set_aside: frozenset[str]
    removed: frozenset[KeyPath]


def _check_params(
    model_type: type[StrictModel], data: Any, collector: _Collector, prefix: KeyPath
) -> _CheckedParams:
    """Given a probe's or task's Params class, the params as written and where they are,
    list their errors and return them as far as they are valid (``_CheckedParams``), so
    the probe's or task's own rules can judge the rest in the same run."""
    validated = _validate_all(model_type, data, collector, prefix)
    removed = frozenset(validated.removed)
    set_aside = {str(path[0]) for path in removed if path}
    if validated.model is not None:
        return _CheckedParams(validated.model, not removed, frozenset(set_aside), removed)
    if not isinstance(data, dict):
        return _CheckedParams(None, False, frozenset(set_aside), removed)
    # A required key is missing, or a rule of the whole params failed: their errors are
    # listed; this pass only builds what the probe's or task's own rules judge.
    rest = remove_paths(data, removed)
    missing = tuple(
        name
        for name, model_field in model_type.model_fields.items()
        if model_field.is_required() and (model_field.alias or name) not in rest
    )
    again = _validate_all(
        _stand_in(model_type, missing), rest, _Collector(collector.file, collector.positions)
    )
    if again.model is None:
        return _CheckedParams(None, False, frozenset(set_aside), removed)
    return _CheckedParams(again.model, False, frozenset(set_aside | set(missing)), removed)


def _pass_through(cls: type[BaseModel], data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    del cls
    return handler(data)


@functools.cache
def _stand_in(model_type: type[StrictModel], missing: tuple[str, ...]) -> type[StrictModel]:
    """Given a Params class and its required fields that are missing, return a subclass
    for the params as far as they are valid: each missing field None unless given, and
    the rules of the whole params (reported already) not applied.

    ``Task.validate`` and ``Probe.validate`` must judge such params without failing: a
    test holds every task and probe to it.
    """
    from pydantic import create_model, model_validator

    fields: dict[str, Any] = {
        name: (Union[model_type.model_fields[name].annotation, None], None)  # noqa: UP007 - built at run time
        for name in missing
    }
    rules: dict[str, Any] = {
        name: model_validator(mode="wrap")(_pass_through)
        for name, rule in model_type.__pydantic_decorators__.model_validators.items()
        if rule.info.mode != "before"
    }
    stand_in: type[StrictModel] = create_model(
        model_type.__name__, __base__=model_type, __validators__=rules, **fields
    )
    return stand_in


def _unaffected(problems: Iterable[str], set_aside: frozenset[str]) -> list[str]:
    """Given what a probe's or task's rules found and the keys whose values were set aside,
    return the problems that name none of them.

    A default stands in for each value set aside, and a problem about that key may be the
    default's, not the file's (``needs stop or pidfile`` when ``stop`` was written wrong);
    its own error is listed, and the rule judges the real value once it is valid. Rules
    name every key they are about (``Task.validate``'s contract).
    """
    if not set_aside:
        return list(problems)
    names = "|".join(re.escape(name) for name in sorted(set_aside))
    named = re.compile(rf"(?<![\w-])(?:{names})(?![\w-])")
    return [problem for problem in problems if not named.search(problem)]


_NAMES_SHOWN = 20


def _some(names: Iterable[str]) -> str:
    """Given names, return them sorted and comma-separated, the first ``_NAMES_SHOWN`` only:
    an error per check must not each list all of ten thousand targets."""
    ordered = sorted(set(names))
    if len(ordered) <= _NAMES_SHOWN:
        return ", ".join(ordered)
    return f"{', '.join(ordered[:_NAMES_SHOWN])}, ... ({len(ordered)} in all)"


def _resolve_path(text: str, base_dir: Path) -> str:
    """Given a path as written and the config's directory, return it absolute."""
    path = Path(text)
    if path.is_absolute():
        return text
    with contextlib.suppress(RuntimeError):  # no home to expand "~" to: keep it as written
        path = path.expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _resolve_target_paths(
    config: UpkeepConfig, base_dir: Path, collector: _Collector
) -> UpkeepConfig:
    """Given a valid config, return it with each target's ``path_fields`` resolved against
    ``base_dir`` (the config file's directory) and its ``zone_fields`` left out set to the
    config's timezone; list every missing ``required_files`` and every ``cron_fields``
    value the cron grammar refuses.

    Relative paths must not depend on where upkeep was started from, just as the store
    path and ``${file:}`` do not. Targets are frozen, so a changed one is a copy, and so
    is the config that holds it.
    """
    changed: dict[str, TargetBase] = {}
    for name, target in config.targets.items():
        update: dict[str, Any] = {}
        for field_name in target.path_fields:
            value = getattr(target, field_name)
            if isinstance(value, str):
                resolved = _resolve_path(value, base_dir)
                if field_name in target.required_files and not Path(resolved).is_file():
                    problem = "not a file" if Path(resolved).exists() else "file not found"
                    collector.add(("targets", name, field_name), f"{problem}: {resolved}")
                if resolved != value:
                    update[field_name] = resolved
            elif isinstance(value, list) and value and "/" in value[0]:
                # An argv: only its program is a path, and a bare name is found on PATH.
                program = _resolve_path(value[0], base_dir)
                if program != value[0]:
                    update[field_name] = [program, *value[1:]]
        for field_name in target.cron_fields:
            expression = getattr(target, field_name)
            if isinstance(expression, str):
                try:
                    validate_cron(expression)
                except ValueError as error:
                    collector.add(("targets", name, field_name), str(error))
        for field_name in target.zone_fields:
            if getattr(target, field_name) is None:
                update[field_name] = config.timezone
        if update:
            changed[name] = target.model_copy(update=update)
    if not changed:
        return config
    return config.model_copy(update={"targets": {**config.targets, **changed}})


def _review_sections(config: UpkeepConfig, base_dir: Path, collector: _Collector) -> UpkeepConfig:
    """Let every section that checks itself (``SelfCheckingSection``: a slice's section,
    such as ``backups:``) check itself against the rest of the config; list its problems
    and return the config with what each section resolved and completed."""
    from upkeep.tasks.base import SectionContext, SelfCheckingSection

    for name in type(config).model_fields:
        section = getattr(config, name)
        if not isinstance(section, SelfCheckingSection):
            continue
        context = SectionContext(
            targets=config.targets,
            resolve_path=lambda text: _resolve_path(text, base_dir),
            some_names=_some,
        )
        review = section.review(context)
        for path, problem in review.problems:
            collector.add(path, problem)
        config = config.model_copy(update={name: review.section, "targets": dict(review.targets)})
    return config


def _check_channel_urls(config: UpkeepConfig, collector: _Collector) -> None:
    """List every channel whose URL Apprise cannot use."""
    if not config.channels:
        return
    # Apprise costs ~0.4 s to import; only the commands that send or judge a config whole
    # (validate, serve, notify) pay for checking the URLs with it.
    from upkeep.notify.channels import validate_channel_url

    for name, url in config.channels.items():
        problem = validate_channel_url(url)
        if problem is not None:
            collector.add(("channels", name), problem)


def _type_annotations(annotation: Any) -> list[Any]:
    """Given an annotation, return it and every annotation nested in it."""
    found = [annotation]
    for argument in get_args(annotation):
        found.extend(_type_annotations(argument))
    return found


@functools.cache
def _reference_fields(
    model_type: type[BaseModel],
) -> tuple[tuple[str, str, Reference | None], ...]:
    """Return each field of a model class that names another section's entry or may hold
    a model that does: (attribute, key as written, its ``Reference`` or None to look
    inside). Cached: thousands of entries share a few classes."""
    fields = []
    for name, model_field in model_type.model_fields.items():
        nested = _type_annotations(model_field.annotation)
        references = [meta for meta in model_field.metadata if isinstance(meta, Reference)]
        references += [
            meta
            for annotation in nested
            for meta in getattr(annotation, "__metadata__", ())
            if isinstance(meta, Reference)
        ]
        holds_models = any(
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and _reference_fields(annotation)
            for annotation in nested
        )
        if references or holds_models:
            fields.append((name, model_field.alias or name, references[0] if references else None))
    return tuple(fields)


_ParamsOf = Callable[[type[BaseModel], Mapping[str, Any]], tuple[str, type[BaseModel]] | None]
"""Given a model class and an entry of it as written, return the key of its probe's or
task's params and their Params class, or None (not such an entry, or its probe or task is
not known)."""


def _params_of(config: UpkeepConfig) -> _ParamsOf:
    """Given the validated config, return how to find the Params class of a check's
    ``params`` (by its target's kind and its probe) and a step's ``with`` (by its task)."""
    from upkeep.config.models import CheckConfig, StepConfig
    from upkeep.probes.registry import TARGET_KINDS
    from upkeep.tasks.registry import TASK_KINDS

    def params_of(
        model_type: type[BaseModel], entry: Mapping[str, Any]
    ) -> tuple[str, type[BaseModel]] | None:
        if model_type is StepConfig:
            task = entry.get("task")
            task_class = TASK_KINDS.get(task) if isinstance(task, str) else None
            return ("with", task_class.Params) if task_class is not None else None
        if model_type is CheckConfig:
            name = entry.get("target")
            target = config.targets.get(name) if isinstance(name, str) else None
            if target is None:
                return None
            kind = TARGET_KINDS[target.kind]
            probe_name = entry.get("probe") or kind.default_probe
            probe = kind.probe(probe_name) if isinstance(probe_name, str) else None
            return ("params", probe.Params) if probe is not None else None
        return None

    return params_of


def _model_arms(arms: tuple[Any, ...], data: Any) -> list[Any]:
    """Given the arms of a union and a value as written, return the arms it may be: the
    models whose ``kind`` it names, if any does (a target), else every arm."""
    if isinstance(data, dict) and isinstance(data.get("kind"), str):
        named = [
            arm
            for arm in arms
            if isinstance(arm, type)
            and issubclass(arm, BaseModel)
            and "kind" in arm.model_fields
            and data["kind"] in get_args(arm.model_fields["kind"].annotation)
        ]
        if named:
            return named
    return list(arms)


def _references(
    model_type: type[BaseModel], data: Any, params_of: _ParamsOf
) -> dict[KeyPath, tuple[Reference, str]]:
    """Given a model class and data as written, return every name in it that refers to
    another section: where it is written, the field's ``Reference`` and the name.

    The data as written is walked, not the validated model, so the names in an entry set
    aside for its own errors (a check missing its target, a step with two actions, params
    with one wrong value) are checked in the same run; only names of the right type are.
    """
    found: dict[KeyPath, tuple[Reference, str]] = {}
    pending: list[tuple[Any, Any, KeyPath]] = [(model_type, data, ())]
    while pending:
        annotation, value, at = pending.pop()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if not isinstance(value, dict):
                continue
            for name, key, reference in _reference_fields(annotation):
                if key not in value:
                    continue
                here = (*at, key)
                item = value[key]
                if reference is None:
                    pending.append((annotation.model_fields[name].annotation, item, here))
                elif isinstance(item, str):
                    found[here] = (reference, item)
                elif isinstance(item, list):
                    for index, part in enumerate(item):
                        if isinstance(part, str):
                            found[(*here, index)] = (reference, part)
            params = params_of(annotation, value)
            if params is not None and params[0] in value:
                pending.append((params[1], value[params[0]], (*at, params[0])))
            continue
        origin = get_origin(annotation)
        arguments = get_args(annotation)
        if origin is Annotated:
            pending.append((arguments[0], value, at))
        elif origin in (list, tuple, Sequence) and isinstance(value, list) and arguments:
            pending.extend((arguments[0], item, (*at, index)) for index, item in enumerate(value))
        elif origin in (dict, Mapping) and isinstance(value, dict) and len(arguments) == 2:
            pending.extend((arguments[1], item, (*at, key)) for key, item in value.items())
        elif origin in (Union, UnionType):
            pending.extend((arm, value, at) for arm in _model_arms(arguments, value))
    return found


def _check_references(
    config: UpkeepConfig,
    written: Any,
    collector: _Collector,
    removed: set[KeyPath],
    set_aside: set[KeyPath],
) -> None:
    """Given the validated config, the config as written, the entries set aside whole and
    every value set aside for its own errors (all in the file's terms), list every name
    that should name an entry of another section and does not.

    Every field marked with ``Reference`` is checked, in the config's own models and in
    each probe's and task's params, so a new task or probe cannot forget; the names in
    an entry set aside are checked too. A name whose entry was set aside for its own
    errors counts as known (its error is listed); so does every name into a section that
    was set aside whole, and a value set aside has its own error instead.
    """
    sections: dict[tuple[str, ...], set[str] | None] = {}

    def known(section: tuple[str, ...]) -> set[str] | None:
        if section not in sections:
            if any(path == section[: len(path)] for path in removed):
                sections[section] = None  # the section itself is broken: nothing to say
            else:
                node: Any = config
                for part in section:
                    node = getattr(node, part)
                names = {str(name) for name in node}
                names |= {
                    str(path[-1])
                    for path in removed
                    if len(path) == len(section) + 1 and path[:-1] == section
                }
                sections[section] = names
        return sections[section]

    from upkeep.config.models import UpkeepConfig

    # The names are found in the file's terms: no list index to map back.
    found = _Collector(collector.file, collector.positions)
    references = _references(UpkeepConfig, written, _params_of(config))
    for path, (reference, name) in references.items():
        if path in set_aside or path in removed:
            continue
        names = known(reference.section)
        if names is None or name in names or name in reference.extra:
            continue
        if any(
            name.startswith(prefix)
            and ((members := known(section)) is None or name.removeprefix(prefix) in members)
            for prefix, section in reference.families
        ):
            continue
        found.add(
            path,
            f"no {reference.what} named {name!r} "
            f"({reference.what}s: {_some(names) or 'none defined'})",
        )
    collector.issues += found.issues


def _check_routes(config: UpkeepConfig, collector: _Collector) -> None:
    """List every route name used twice."""
    route_names: set[str] = set()
    for index, route in enumerate(config.routes):
        if route.name is not None:
            if route.name in route_names:
                collector.add(
                    ("routes", index, "name"), f"another route is named {route.name!r} already"
                )
            route_names.add(route.name)


def _check_dependencies(config: UpkeepConfig, collector: _Collector) -> None:
    """Report ``depends_on`` names that are the check itself or part of a cycle (unknown
    names are the reference check's)."""
    for name, check in config.checks.items():
        for parent in check.depends_on:
            if parent == name:
                collector.add(("checks", name, "depends_on"), "a check cannot depend on itself")
    _report_cycles(config, collector)


_CYCLE_SHOWN = 6  # names shown at each end of a long cycle


def _report_cycles(config: UpkeepConfig, collector: _Collector) -> None:
    """Report every dependency cycle once, at the check where the walk found it.

    One depth-first walk over all checks (iterative, each check and each edge visited
    once): walking from each check anew took minutes for a chain of a few thousand.
    """
    done: set[str] = set()
    for root in config.checks:
        if root in done:
            continue
        path: list[str] = [root]  # the checks being walked, each depending on the next
        position = {root: 0}
        pending = [iter(_parents(config, root))]
        while pending:
            parent = next(pending[-1], None)
            if parent is None:
                finished = path.pop()
                del position[finished]
                done.add(finished)
                pending.pop()
            elif parent in position:
                # Only the ends of a long cycle are copied: back edges may be many.
                start = position[parent]
                length = len(path) - start
                shown = (
                    [
                        *path[start : start + _CYCLE_SHOWN],
                        f"... ({length} checks) ...",
                        *path[-_CYCLE_SHOWN:],
                    ]
                    if length > 2 * _CYCLE_SHOWN
                    else path[start:]
                )
                collector.add(
                    ("checks", parent, "depends_on"),
                    f"dependency cycle: {' -> '.join([*shown, parent])}",
                )
            elif parent not in done:
                position[parent] = len(path)
                path.append(parent)
                pending.append(iter(_parents(config, parent)))


def _parents(config: UpkeepConfig, name: str) -> list[str]:
    check = config.checks.get(name)
    if check is None:
        return []
    return [parent for parent in check.depends_on if parent != name and parent in config.checks]


def _check_step_selections(
    config: UpkeepConfig, compiled: Mapping[str, CompiledCheck], collector: _Collector
) -> None:
    """List every ``checks`` or ``watch`` step of a runbook (rollback and ``finally``
    included) whose ``labels`` select no check, as the run selects them: a typo in a
    label would otherwise pass validation and fail the step at run time (or leave a
    rollout unwatched). Said only when every check compiled; a check that did not has its
    own error, and unknown names are the reference check's."""
    if len(compiled) != len(config.checks):
        return
    for name, runbook in config.runbooks.items():
        phases: list[tuple[str, list[StepConfig]]] = [("steps", runbook.steps)]
        if isinstance(runbook.on_failure, list):
            phases.append(("on_failure", runbook.on_failure))
        phases.append(("finally", runbook.finally_))
        for key, steps in phases:
            for index, step in enumerate(steps):
                where: tuple[str, ...] = ("checks",)
                selector = step.checks
                if step.watch is not None:
                    selector, where = step.watch.checks, ("watch", "checks")
                if selector is None or not selector.labels:
                    continue
                if any(wanted not in compiled for wanted in selector.names):
                    continue
                if any(
                    (check.name in selector.names if selector.names else check.enabled)
                    and all(check.labels.get(k) == v for k, v in selector.labels.items())
                    for check in compiled.values()
                ):
                    continue
                wanted = ", ".join(f"{k}={v}" for k, v in selector.labels.items())
                which = "none of the checks named" if selector.names else "no enabled check"
                collector.add(
                    ("runbooks", name, key, index, *where, "labels"),
                    f"{which} carries all of {wanted}",
                )


def _check_status_components(
    config: UpkeepConfig, compiled: Mapping[str, CompiledCheck], collector: _Collector
) -> None:
    """List every status page component named twice (its name is its badges' URL), each
    check name that names no check, each pattern that matches none, and labels that no
    enabled check carries: a component that silently groups nothing would show a service
    as up that nobody watches."""
    names = set(config.checks)
    enabled = {name for name, check in config.checks.items() if check.enabled}
    seen: set[str] = set()
    for index, component in enumerate(config.status_page.components):
        at: KeyPath = ("status_page", "components", index)
        if component.name in seen:
            collector.add((*at, "name"), f"another component is named {component.name!r} already")
        seen.add(component.name)
        for position, pattern in enumerate(component.checks):
            if not any(character in pattern for character in "*?["):
                if pattern not in names:
                    collector.add(
                        (*at, "checks", position),
                        f"no check named {pattern!r} (checks: {_some(names) or 'none defined'})",
                    )
            elif not any(fnmatch.fnmatchcase(name, pattern) for name in enabled):
                collector.add(
                    (*at, "checks", position), f"the pattern {pattern!r} matches no enabled check"
                )
        if component.labels and not any(
            check.enabled
            and all(check.labels.get(key) == value for key, value in component.labels.items())
            for check in compiled.values()
        ):
            # A check whose target or probe is wrong is not compiled; its own error says so.
            wanted = ", ".join(f"{key}={value}" for key, value in component.labels.items())
            collector.add((*at, "labels"), f"no enabled check carries all of {wanted}")


def _bind_checks(
    config: UpkeepConfig, compiled: Mapping[str, CompiledCheck], collector: _Collector
) -> None:
    """Given the compiled checks, let each probe that reads other checks' results (a
    group's health) bind its target to them (``Probe.bind_checks``), once per target, and
    list what it finds wrong under that target's keys."""
    from upkeep.probes.base import CheckInfo

    infos = [
        CheckInfo(check.name, check.target.kind, check.labels, check.every, check.enabled)
        for check in compiled.values()
    ]
    bound: set[str] = set()
    for check in compiled.values():
        if check.target_name in bound:
            continue
        bound.add(check.target_name)
        for subpath, problem in check.probe().bind_checks(check.target, infos):
            collector.add(("targets", check.target_name, *subpath), problem)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    check_channels: bool = False,
) -> LoadedConfig:
    """Given a config path (or None for the default lookup), return the validated config.

    With ``check_channels``, also parse every channel's Apprise URL (what ``validate`` and
    ``serve`` do; other commands skip Apprise's import cost). Raise ``ConfigError`` listing
    every problem if the file is missing, is not YAML, or fails validation anywhere;
    secrets never appear in the error text.
    """
    from upkeep.config.models import UpkeepConfig

    config_path = find_config_path(path)
    file = str(config_path)
    try:
        text = read_text_file(config_path, MAX_CONFIG_BYTES)
    except FileReadError as error:
        raise ConfigError(
            [ConfigIssue(file, error.line, error.column, (), f"cannot read config: {error}")]
        ) from None
    try:
        raw, positions = load_yaml(text, file)
    except YamlSyntaxError as error:
        raise ConfigError(
            [ConfigIssue(file, error.line, error.column, error.path, str(error))]
        ) from None
    collector = _Collector(file, positions)
    if not isinstance(raw, dict):
        collector.add((), "the config must be a mapping of sections (targets:, checks:, ...)")
        raise ConfigError(collector.issues)

    secrets: list[str] = []
    reference_errors: list[Any] = []
    expanded = expand_tree(
        raw,
        environ=os.environ if environ is None else environ,
        base_dir=config_path.parent.resolve(),
        secrets=secrets,
        errors=reference_errors,
    )
    for reference_error in reference_errors:
        collector.add(reference_error.path, str(reference_error))
    redactor = Redactor()
    redactor.extend(secrets)

    # Keep going without the broken parts, so errors elsewhere (a check naming a missing
    # target, an unknown metric, a channel that is no Apprise URL) are listed in the same
    # run, not the next one.
    unresolved = frozenset(tuple(item.path) for item in reference_errors)
    validated = _validate_all(UpkeepConfig, expanded, collector, already_reported=unresolved)
    if validated.model is None:
        raise ConfigError(_redacted(collector.issues, redactor))
    config: UpkeepConfig = validated.model
    # From here on paths are the validated config's: list items set aside shifted the
    # items after them, and the collector maps their indexes back to the file's.
    collector.rounds = validated.rounds

    config = _resolve_target_paths(config, config_path.parent.resolve(), collector)
    config = _review_sections(config, config_path.parent.resolve(), collector)
    _collect_secrets(config, redactor)
    set_aside = set(unresolved)
    compiled = _compile_checks(config, collector, set_aside)
    tasks = _compile_tasks(config, collector, redactor, set_aside)
    _check_references(config, expanded, collector, validated.removed, set_aside)
    _check_routes(config, collector)
    _check_dependencies(config, collector)
    _bind_checks(config, compiled, collector)
    _check_status_components(config, compiled, collector)
    _check_step_selections(config, compiled, collector)
    if check_channels:
        _check_channel_urls(config, collector)
    if collector.issues:
        raise ConfigError(_redacted(collector.issues, redactor))
    return LoadedConfig(
        path=config_path, config=config, redactor=redactor, checks=compiled, tasks=tasks
    )


def _redacted(issues: list[ConfigIssue], redactor: Redactor) -> list[ConfigIssue]:
    return [
        ConfigIssue(
            issue.file, issue.line, issue.column, issue.path, redactor.redact(issue.message)
        )
        for issue in issues
    ]
