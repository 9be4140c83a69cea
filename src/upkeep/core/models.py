"""The base of every config model, the one way a model states a rule over which keys are
given, and the marker of a field that names an entry of another section."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidatorFunctionWrapHandler
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError


class StrictModel(BaseModel):
    """Base for every config model: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


ModelT = TypeVar("ModelT", bound=BaseModel)


def given_keys(data: Any, keys: Iterable[str]) -> list[str]:
    """Given a model's raw input and key names, return those written with a value (not
    null), in the order of ``keys``; none if the input is no mapping."""
    if not isinstance(data, dict):
        return []
    return [key for key in keys if data.get(key) is not None]


def exactly_one_of(keys: Sequence[str], problem: str) -> Callable[[Any], str | None]:
    """Given key names and what to say otherwise, return a key rule (for
    ``validate_with_key_rule``) that holds when exactly one of them is written."""
    return lambda data: None if len(given_keys(data, keys)) == 1 else problem


def some_of(keys: Sequence[str], problem: str) -> Callable[[Any], str | None]:
    """Given key names and what to say otherwise, return a key rule that holds when at
    least one of them is written."""
    return lambda data: None if given_keys(data, keys) else problem


def validate_with_key_rule(
    model_type: type[ModelT],
    data: Any,
    handler: ValidatorFunctionWrapHandler,
    rule: Callable[[Any], str | None],
) -> ModelT:
    """Given a model class, its raw input, pydantic's wrap handler and a rule over the keys
    written (``"exactly one of a, b"``; None when it holds), return the validated model.

    Raise one ``ValidationError`` holding the fields' own errors *and* the rule's problem.
    A rule checked after the fields (``mode="after"``) is silent while any field fails, so
    fixing a field would reveal it in the next run; a rule about which keys are present
    needs no valid values, so it is checked on the input, in the same run.
    """
    problem = rule(data) if isinstance(data, dict) else None
    if problem is None:
        result: ModelT = handler(data)
        return result
    details: list[InitErrorDetails] = []
    try:
        handler(data)
    except ValidationError as error:
        details = [_same_error(item) for item in error.errors()]
    details.append(
        InitErrorDetails(
            # The problem is the context, not the template: braces in it stay text.
            type=PydanticCustomError("value_error", "{problem}", {"problem": problem}),
            loc=(),
            input=data,
        )
    )
    raise ValidationError.from_exception_data(model_type.__name__, details)


_MESSAGE_KEY = "upkeep_message"
"""The context key holding a re-raised error's message as pydantic wrote it."""


def _same_error(item: ErrorDetails) -> InitErrorDetails:
    """Given an error pydantic reported, return it to raise again unchanged: its type, where
    it is, its input, its context and its message as written.

    Rebuilding an error from its type name alone needs the context pydantic requires of that
    type, which a custom error of the same name lacks (a rule's ``value_error`` from a nested
    model holds no ``error``); a custom error of the same type carries any context. Its
    message is the last context entry, so nothing in it is taken for a placeholder.
    """
    context = {**dict(item.get("ctx") or {}), _MESSAGE_KEY: item["msg"]}
    return InitErrorDetails(
        type=PydanticCustomError(item["type"], "{" + _MESSAGE_KEY + "}", context),
        loc=item["loc"],
        input=item["input"],
    )


@dataclass(frozen=True)
class Reference:
    """Marks a field whose value names an entry of another section of the config.

    ``Annotated[str, Reference(("checks",), "check")]`` on any config, target, probe or
    task model is enough: the loader finds every marked field (in lists, optional fields
    and nested models too) and lists each name that is not there, so ``upkeep validate``
    (and every dry run) catches it, never the run. ``section`` is the section's key path
    from the top (``("backups", "sources")``); ``extra`` holds names valid without an
    entry (``upkeep:store``); ``families`` holds name prefixes followed by an entry of
    another section (``upkeep:drill:`` and a backup source's name).
    """

    section: tuple[str, ...]
    what: str
    extra: frozenset[str] = frozenset()
    families: tuple[tuple[str, tuple[str, ...]], ...] = ()
