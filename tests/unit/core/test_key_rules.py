"""``validate_with_key_rule``: a rule over the keys written is reported with the fields'
own errors, whatever nests it."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError, ValidatorFunctionWrapHandler, model_validator

from upkeep.core.models import StrictModel, given_keys, validate_with_key_rule


def _exactly_one(keys: tuple[str, str]) -> Any:
    def rule(data: Any) -> str | None:
        # Braces in a rule's text are text, not placeholders.
        return None if len(given_keys(data, keys)) == 1 else f"exactly one of {{{', '.join(keys)}}}"

    return rule


class Inner(StrictModel):
    a: int | None = None
    b: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Inner:
        return validate_with_key_rule(cls, data, handler, _exactly_one(("a", "b")))


class Outer(StrictModel):
    inner: Inner
    items: list[Inner] = []
    c: int | None = None
    d: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Outer:
        return validate_with_key_rule(cls, data, handler, _exactly_one(("c", "d")))


class Outermost(StrictModel):
    outer: Outer
    e: int | None = None
    f: int | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _one(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Outermost:
        return validate_with_key_rule(cls, data, handler, _exactly_one(("e", "f")))


def test_a_model_with_a_key_rule_nested_in_another_reports_every_error() -> None:
    data = {
        "outer": {
            "inner": {"a": "x", "b": 2},
            "items": [{"a": 1}, {}, {"b": "y", "a": 1}],
            "c": 1,
            "d": 2,
        },
        "e": 1,
        "f": 2,
    }
    with pytest.raises(ValidationError) as caught:
        Outermost.model_validate(data)
    found = {(item["loc"], item["type"]): item["msg"] for item in caught.value.errors()}
    assert set(found) == {
        (("outer", "inner", "a"), "int_parsing"),
        (("outer", "inner"), "value_error"),
        (("outer", "items", 1), "value_error"),
        (("outer", "items", 2, "b"), "int_parsing"),
        (("outer", "items", 2), "value_error"),
        (("outer",), "value_error"),
        ((), "value_error"),
    }, found
    assert found[(("outer", "items", 1), "value_error")] == "exactly one of {a, b}"
    assert found[(("outer",), "value_error")] == "exactly one of {c, d}"
    assert found[((), "value_error")] == "exactly one of {e, f}"


def test_errors_raised_again_keep_their_type_context_and_message() -> None:
    class Bounded(StrictModel):
        n: int = 0
        m: int | None = None

        @model_validator(mode="wrap")
        @classmethod
        def _one(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Bounded:
            return validate_with_key_rule(cls, data, handler, _exactly_one(("m", "n")))

    class Holder(StrictModel):
        bounded: Bounded
        x: int | None = None
        y: int | None = None

        @model_validator(mode="wrap")
        @classmethod
        def _one(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Holder:
            return validate_with_key_rule(cls, data, handler, _exactly_one(("x", "y")))

    with pytest.raises(ValidationError) as caught:
        Holder.model_validate({"bounded": {"n": "many"}})
    errors = {item["loc"]: item for item in caught.value.errors()}
    assert errors[("bounded", "n")]["type"] == "int_parsing"
    assert errors[("bounded", "n")]["msg"].startswith("Input should be a valid integer")
    assert errors[()]["msg"] == "exactly one of {x, y}"
    assert errors[()]["ctx"]["problem"] == "exactly one of {x, y}"
