"""An alert's per-route state as stored: by route id, and the format before it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upkeep.store.alerts import ROUTING_VERSION, RouteState, Routing

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_column_round_trips_keyed_by_route_id() -> None:
    routing = Routing(routes={"urgent": RouteState(slot=0, notices=3, sent=2, steps=1, last=T0)})
    stored = routing.to_column()
    assert stored == {
        "version": ROUTING_VERSION,
        "routes": {
            "urgent": {"slot": 0, "notices": 3, "sent": 2, "steps": 1, "last": T0.isoformat()}
        },
    }
    assert Routing.from_column(stored) == routing
    assert Routing.from_column(None) == Routing() == Routing.from_column({})


def test_state_by_position_is_read_and_adopted_under_the_routes_now_there() -> None:
    legacy = Routing.from_column(
        {
            "0": {"steps": 1, "sent": 2, "n": 2, "last": T0.isoformat()},
            "1": {"steps": 0, "sent": 0, "n": 0},
            "5": {"steps": 0, "sent": 1, "n": 1, "last": T0.isoformat()},
        }
    )
    assert legacy.routes == {} and legacy.any_sent
    adopted = legacy.adopt(["urgent", "match:abc"])
    # Each keeps its position as its slot, so its keys go on as before (a<id>-r0-n3-…);
    # position 5 names no route now: its state stays, holding its slot.
    assert adopted == Routing(
        routes={
            "urgent": RouteState(slot=0, notices=2, sent=2, steps=1, last=T0),
            "match:abc": RouteState(slot=1),
            "position:5": RouteState(slot=5, notices=1, sent=1, last=T0),
        }
    )
    assert adopted.state("new", 5).slot == 6
    assert adopted.adopt(["x", "y"]) is adopted
    assert Routing.from_column(adopted.to_column()) == adopted


def test_a_new_route_takes_its_position_as_slot_unless_another_route_holds_it() -> None:
    routing = Routing(routes={"old": RouteState(slot=0), "other": RouteState(slot=1)})
    assert routing.state("old", 3) == RouteState(slot=0)
    assert routing.state("new", 2).slot == 2
    assert routing.state("new", 0).slot == 2


def test_restarting_sets_every_route_back_to_its_first_escalation_step() -> None:
    routing = Routing(routes={"a": RouteState(slot=0, steps=2, notices=4), "b": RouteState(slot=1)})
    restarted = routing.restarted()
    assert [state.steps for state in restarted.routes.values()] == [0, 0]
    assert restarted.routes["a"].notices == 4


def test_a_format_from_a_later_version_is_refused() -> None:
    with pytest.raises(ValueError, match="format 3"):
        Routing.from_column({"version": 3, "routes": {}})
