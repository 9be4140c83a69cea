"""service.restart's params and the problems validate reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.tasks.service.restart import RestartParams, ServiceRestart

START = ["/usr/sbin/service-ctl", "start"]


def params(**values: Any) -> RestartParams:
    return RestartParams.model_validate({"start": START, **values})


def test_defaults() -> None:
    step = params(pidfile="/run/app.pid")
    assert step.stop is None
    assert step.signal is None
    assert step.stop_timeout == timedelta(seconds=30)
    assert step.kill_after_timeout is True
    assert step.start_timeout == timedelta(seconds=30)
    assert step.verify is None
    assert step.verify_retries == 3
    assert step.verify_interval == timedelta(seconds=2)
    assert step.env == {}


def test_start_is_required_and_argv_must_not_be_empty() -> None:
    with pytest.raises(ValidationError, match="start"):
        RestartParams.model_validate({"pidfile": "/run/app.pid"})
    with pytest.raises(ValidationError, match="start"):
        params(start=[])
    with pytest.raises(ValidationError, match="stop"):
        params(stop=[""])
    with pytest.raises(ValidationError, match="start"):
        params(start="systemctl start app")


@pytest.mark.parametrize(
    ("given", "name"), [("term", "SIGTERM"), ("SIGQUIT", "SIGQUIT"), (" hup ", "SIGHUP")]
)
def test_signal_names_are_normalised(given: str, name: str) -> None:
    assert params(pidfile="/run/app.pid", signal=given).signal == name


def test_unknown_signals_and_non_positive_timeouts_are_rejected() -> None:
    with pytest.raises(ValidationError, match="not a signal name"):
        params(pidfile="/run/app.pid", signal="SIGNOPE")
    with pytest.raises(ValidationError, match="longer than zero"):
        params(pidfile="/run/app.pid", stop_timeout="0s")
    with pytest.raises(ValidationError, match="verify_retries"):
        params(pidfile="/run/app.pid", verify_retries=-1)


def test_the_params_need_a_stop_command_or_a_pidfile() -> None:
    # A rule of the params themselves (checked with their fields' errors, not after them).
    with pytest.raises(ValidationError) as caught:
        params()
    (problem,) = [item["msg"] for item in caught.value.errors()]
    assert "needs `stop` (a command) or `pidfile`" in problem
    assert "never matches processes by name" in problem
    assert params(pidfile="/run/app.pid").pidfile == "/run/app.pid"
    assert params(stop=["/usr/sbin/service-ctl", "stop"]).stop is not None
    both = params(stop=["app-ctl", "stop"], pidfile="/run/app.pid")
    assert ServiceRestart().validate(None, both) == []


def test_the_params_refuse_a_signal_beside_a_stop_command_and_a_relative_pidfile() -> None:
    with pytest.raises(ValidationError, match="`signal` applies only without `stop`"):
        params(stop=["app-ctl", "stop"], signal="HUP")
    with pytest.raises(ValidationError, match="must be an absolute path"):
        params(pidfile="run/app.pid")


def test_the_rule_is_listed_with_the_errors_of_the_fields() -> None:
    with pytest.raises(ValidationError) as caught:
        RestartParams.model_validate({"signal": "BOGUS"})
    found = {item["loc"]: item["msg"] for item in caught.value.errors()}
    assert set(found) == {("start",), ("signal",), ()}, found
    assert "needs `stop`" in found[()]


def test_commands_are_shown_with_secrets_masked_even_when_quoting_would_split_them() -> None:
    from upkeep.core.redaction import Redactor
    from upkeep.tasks.service.restart import shown_command

    secret = "Xy'9kLmQ#2"
    redactor = Redactor()
    redactor.add(secret)
    shown = shown_command(["svc", "--password", secret, "--name", "it's"], redactor)
    assert "9kLmQ" not in shown and "Xy" not in shown
    assert shown == "svc --password '***' --name 'it'\"'\"'s'"
