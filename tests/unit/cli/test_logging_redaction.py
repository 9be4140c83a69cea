from __future__ import annotations

import logging

import pytest

from upkeep.cli import common
from upkeep.core.redaction import Redactor


def test_log_records_are_masked_before_any_handler_sees_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    redactor = Redactor()
    redactor.add("hunter2-hunter2")
    monkeypatch.setattr(common, "_active", redactor)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        common.setup_logging()
        logging.getLogger("upkeep.test").warning("connect failed with %s", "pw=hunter2-hunter2")
        logging.getLogger("upkeep.test").warning("inline hunter2-hunter2 too")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "hunter2" not in err
    assert "connect failed with pw=***" in err and "inline *** too" in err


def test_url_passwords_are_masked_in_raw_and_percent_encoded_form() -> None:
    redactor = Redactor()
    redactor.add_url("postgresql://app:p%40ss-word@db/x")
    assert redactor.redact("p%40ss-word and p@ss-word") == "*** and ***"


def test_short_values_are_not_treated_as_secrets() -> None:
    redactor = Redactor()
    redactor.add("abc")
    assert redactor.redact("abc") == "abc"
    assert len(redactor) == 0
