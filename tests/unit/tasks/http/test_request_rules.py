"""http.request's pure rules: params, URL display, how a target and a step combine."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from upkeep.probes.http import HttpTarget
from upkeep.tasks.base import TaskFailed
from upkeep.tasks.http.request import HttpRequest, RequestParams, display_url, resolve


def params(**values: Any) -> RequestParams:
    return RequestParams.model_validate(values)


def test_defaults() -> None:
    step = params()
    assert step.url is None
    assert step.method is None
    assert step.headers == {}
    assert step.body is None
    assert step.expect_status == [200]
    assert step.expect_body_contains is None
    assert step.verify_tls is None
    assert step.ca_file is None


def test_expect_status_accepts_one_code_or_a_list() -> None:
    assert params(expect_status=204).expect_status == [204]
    assert params(expect_status=[200, 301]).expect_status == [200, 301]


@pytest.mark.parametrize("value", [True, 99, 600, [], ["ok"]])
def test_expect_status_rejects_what_is_not_a_status(value: Any) -> None:
    with pytest.raises(ValidationError, match="expect_status"):
        params(expect_status=value)


def test_url_must_be_http_and_method_known() -> None:
    with pytest.raises(ValidationError, match="url"):
        params(url="ftp://example.com/")
    with pytest.raises(ValidationError, match="method"):
        params(url="http://example.com/", method="BREW")


def test_display_url_masks_only_the_password() -> None:
    assert display_url("https://u:pw-1234@example.com:8443/x?y=1") == (
        "https://u:***@example.com:8443/x?y=1"
    )
    assert display_url("https://example.com/x") == "https://example.com/x"
    assert display_url("https://u@example.com/") == "https://u@example.com/"


def test_without_target_the_step_alone_decides() -> None:
    request = resolve(None, params(url="http://127.0.0.1/x"))
    assert (request.method, request.verify_tls, request.follow_redirects) == ("GET", True, True)
    with pytest.raises(TaskFailed, match="needs `url`"):
        resolve(None, params())


def test_the_step_overrides_the_target_field_by_field() -> None:
    target = HttpTarget(
        url="https://a.example/",
        method="POST",
        headers={"Authorization": "t", "X-A": "1"},
        verify_tls=False,
        ca_file="/etc/ca.pem",
        follow_redirects=False,
    )
    request = resolve(target, params(headers={"authorization": "s"}, verify_tls=True))
    assert request.url == "https://a.example/"
    assert request.method == "POST"
    assert request.headers == {"X-A": "1", "authorization": "s"}
    assert request.verify_tls is True
    assert request.ca_file == "/etc/ca.pem"
    assert request.follow_redirects is False


def test_validate_reports_no_url_and_a_body_check_on_head() -> None:
    task = HttpRequest()
    assert task.validate(None, params()) == ["http.request needs `url`, or an http target"]
    (problem,) = task.validate(
        None, params(url="http://x.example/", method="HEAD", expect_body_contains="ok")
    )
    assert "HEAD" in problem
    assert task.validate(HttpTarget(url="http://x.example/"), params()) == []
