"""Route ids: a route's name, or a digest of what it matches and notifies."""

from __future__ import annotations

from typing import Any

from upkeep.alerting.routing import DIGEST_PREFIX, AlertFacts, group_key, route_digest, route_ids
from upkeep.config.models import RouteConfig


def route(**fields: Any) -> RouteConfig:
    return RouteConfig.model_validate({"notify": ["ops"], **fields})


def test_a_named_route_is_known_by_its_name_and_an_unnamed_one_by_its_digest() -> None:
    routes = [route(name="urgent", match={"severity": ["P1"]}), route()]
    ids = route_ids(routes)
    assert ids[0] == "urgent"
    assert ids[1].startswith(DIGEST_PREFIX) and len(ids[1]) == len(DIGEST_PREFIX) + 16


def test_the_digest_ignores_order_and_what_is_not_match_or_notify() -> None:
    one = route(
        match={"severity": ["P1", "P2"], "checks": ["a", "b"], "labels": {"x": "1", "y": "2"}},
        notify=["ops", "pager"],
        repeat="1h",
    )
    same = route(
        match={"labels": {"y": "2", "x": "1"}, "checks": ["b", "a"], "severity": ["P2", "P1"]},
        notify=["pager", "ops"],
        escalate={"after": "30m", "notify": ["mail"]},
        group_by=["env"],
        **{"continue": True},
    )
    assert route_digest(one) == route_digest(same)
    assert route_digest(one) != route_digest(route(match=one.match, notify=["ops"]))
    assert route_digest(one) != route_digest(
        route(match={"severity": ["P1"], "checks": ["a", "b"]}, notify=["ops", "pager"])
    )
    # No criterion is not the same as a criterion that matches nothing.
    assert route_digest(route()) != route_digest(route(match={"checks": []}))


def test_unnamed_routes_alike_are_told_apart_by_their_order_among_themselves() -> None:
    ids = route_ids([route(repeat="1h"), route(name="other"), route(group_by=["env"])])
    assert ids[1] == "other"
    assert ids[2] == f"{ids[0]}#2"


def test_the_group_key_follows_the_route_id_not_its_position() -> None:
    facts = AlertFacts("db-up", "db", "P1", "critical", {"env": "prod"})
    grouped = route(group_by=["env", "check"])
    key = group_key("urgent", grouped, facts)
    assert key.startswith("route-") and key.endswith("|env=prod|check=db-up")
    assert key == group_key("urgent", grouped, facts)
    assert key != group_key("other", grouped, facts)
