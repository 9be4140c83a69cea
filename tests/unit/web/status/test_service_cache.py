"""The status page's rendered answers under a flood of distinct ones (a client sending a
new Host, an IP address of this server, on every request): the answers readers keep
asking for stay rendered; only the least recently asked for are dropped."""

from __future__ import annotations

from tests.unit.web.status.test_service import state
from upkeep.web.app import DaemonState
from upkeep.web.status import routes
from upkeep.web.status.page import StatusSnapshot
from upkeep.web.status.routes import StatusService

__all__ = ["state"]  # the fixture: a daemon's state with a status page and results


def test_a_flood_of_new_answers_does_not_drop_the_one_readers_ask_for(
    state: DaemonState,
) -> None:
    service = StatusService(state)
    renders: dict[tuple[str, ...], int] = {}

    def maker(key: tuple[str, ...]) -> routes.Maker:
        def make(snapshot: StatusSnapshot) -> bytes:
            renders[key] = renders.get(key, 0) + 1
            return repr(key).encode()

        return make

    popular = ("html", "https://status.example.com")
    for number in range(5 * routes.MAX_BODY_CACHE):
        service.body(popular, maker(popular))
        flood = ("html", f"http://10.0.{number // 256}.{number % 256}:9464")
        service.body(flood, maker(flood))
    assert renders[popular] == 1
    assert len(service._bodies) <= routes.MAX_BODY_CACHE
    assert len(service._makers) <= routes.MAX_BODY_CACHE
