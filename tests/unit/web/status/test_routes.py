"""The public status page over HTTP: every format, what it never shows, what it refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest

from tests.helpers import load_text
from tests.unit.web.status.seed import seed_incident, seed_results, seed_state
from upkeep.core.clock import FakeClock
from upkeep.engine.metrics import DaemonMetrics
from upkeep.store.updates import publish_update
from upkeep.web.app import DaemonState, create_app

TOKEN = "t0ken-for-the-api-7f3a"
SECRET = "hunter2-very-secret-Zq9"
NOTE = "internal: restarted the primary by hand"
NOW = datetime(2030, 1, 10, 12, 0, tzinfo=UTC)
BASE = "http://127.0.0.1:9464"
ATOM = "{http://www.w3.org/2005/Atom}"

CONFIG = """\
engine: {api_tokens: {ops: "${API_TOKEN}"}}
targets:
  box: {kind: http, url: "http://127.0.0.1:9/", headers: {Authorization: "${SECRET}"}}
checks:
  web: {target: box}
  api: {target: box}
channels:
  pager: "json://127.0.0.1:9/${SECRET}"
windows:
  upgrade:
    start: "2030-01-12T10:00:00+00:00"
    duration: 2h
    mute: {checks: [api]}
    description: "Database <upgrade> & cleanup"
status_page:
  enabled: true
  title: "Example & Co status"
  description: "What <we> run"
  history_days: 30
  components:
    - {name: website, description: "The public site", checks: [web]}
    - {name: api, checks: ["a*"]}
"""
PUBLIC_PATHS = (
    "/status",
    "/status.json",
    "/status/feed.atom",
    "/status/feed.rss",
    "/status/badge/website/status.svg",
    "/status/badge/website/uptime.svg?period=30d",
    "/status/badge/api/uptime.svg?period=365d",
    "/status/badge/website/response.svg?period=24h",
)


def make_state(tmp_path: Path, text: str = CONFIG) -> DaemonState:
    loaded = load_text(tmp_path, text, {"API_TOKEN": TOKEN, "SECRET": SECRET})
    store = loaded.config.store.open(loaded.base_dir)
    return DaemonState(
        instance_id="host:1:abc",
        loaded=loaded,
        store=store,
        metrics=DaemonMetrics(),
        clock=FakeClock(NOW),
    )


@pytest.fixture
def state(tmp_path: Path) -> Iterator[DaemonState]:
    """A daemon over a store with results for both checks, an incident of web (resolved,
    its message and a note holding a secret and an internal remark, one published update)
    and an open one of api."""
    daemon = make_state(tmp_path)
    store = daemon.store
    for name in ("web", "api"):
        seed_results(
            store,
            name,
            NOW - timedelta(days=5),
            NOW,
            duration_ms=120.0 if name == "web" else 80.0,
            message=f"connection failed: Authorization {SECRET}",
        )
        seed_state(store, name, NOW - timedelta(minutes=1))
    web = seed_incident(
        store,
        "web",
        NOW - timedelta(days=1, hours=3),
        NOW - timedelta(days=1, hours=2),
        message=f"crit: token {SECRET} refused",
    )
    store.alerts.add_note(web, f"{NOTE} {SECRET}", "user:alice", NOW - timedelta(days=1))
    publish_update(
        store.engine,
        web,
        "We are <investigating> slow pages",
        "user:alice",
        NOW - timedelta(days=1),
    )
    seed_incident(store, "api", NOW - timedelta(minutes=30), None, message="crit: boom")
    yield daemon
    store.close()


@pytest.fixture
async def client(state: DaemonState) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(state))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        yield http


async def test_every_public_part_answers_without_a_credential(client: httpx.AsyncClient) -> None:
    for path in PUBLIC_PATHS:
        answer = await client.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert "max-age=" in answer.headers["cache-control"]
        assert answer.headers["etag"]
        head = await client.head(path)
        assert head.status_code == 200 and head.content == b""
    # The API still needs one.
    assert (await client.get("/api/alerts")).status_code == 401


async def test_nothing_internal_reaches_any_public_part(
    client: httpx.AsyncClient, state: DaemonState
) -> None:
    await client.post(
        "/api/incidents/1/updates",
        json={"text": f"Fixed; the old token {SECRET} was rotated"},
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    for path in PUBLIC_PATHS:
        text = (await client.get(path)).text
        assert SECRET not in text, path
        assert NOTE not in text, path
        assert "crit:" not in text and "connection failed" not in text, path
        assert "user:alice" not in text and "api:ops" not in text, path
    page = (await client.get("/status")).text
    assert "We are &lt;investigating&gt; slow pages" in page
    assert "Fixed; the old token *** was rotated" in page


async def test_page_needs_no_javascript_and_is_escaped(client: httpx.AsyncClient) -> None:
    answer = await client.get("/status")
    page = answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert "<script" not in page.lower()
    assert "Example &amp; Co status" in page and "What &lt;we&gt; run" in page
    assert "Database &lt;upgrade&gt; &amp; cleanup" in page  # the upcoming window
    # State as words and as class (colour and icon come from it), and per-bar titles.
    assert 'class="st outage"' in page and ">Outage<" in page
    assert 'class="st operational"' in page
    assert 'role="img" aria-label="website:' in page and 'title="2030-01-09:' in page
    assert "time inside a maintenance window is counted apart and never against uptime" in page


async def test_json_shape_is_stable(client: httpx.AsyncClient) -> None:
    document = (await client.get("/status.json")).json()
    assert set(document) == {
        "schema",
        "title",
        "description",
        "url",
        "generated_at",
        "timezone",
        "state",
        "policy",
        "components",
        "incidents",
        "maintenance",
    }
    assert document["schema"] == 1 and document["state"] == "outage"
    assert document["policy"] == {
        "unknown": "excluded",
        "maintenance": "excluded",
        "response_time": "mean",
    }
    website, api = document["components"]
    assert set(website) == {"name", "description", "state", "history_days", "overall", "days"}
    assert (website["name"], website["state"], api["state"]) == ("website", "operational", "outage")
    assert len(website["days"]) == 30
    assert set(website["days"][-1]) == {
        "date",
        "uptime_percent",
        "observed_s",
        "downtime_s",
        "maintenance_s",
        "unknown_s",
        "incidents",
    }
    yesterday = website["days"][-2]
    assert yesterday["date"] == "2030-01-09" and yesterday["downtime_s"] == 3600.0
    incidents = document["incidents"]
    assert [(item["components"], item["ongoing"]) for item in incidents] == [
        (["api"], True),
        (["website"], False),
    ]
    assert set(incidents[1]) == {
        "id",
        "components",
        "started_at",
        "resolved_at",
        "ongoing",
        "updates",
    }
    assert [update["text"] for update in incidents[1]["updates"]] == [
        "We are <investigating> slow pages"
    ]
    assert document["maintenance"][0]["phase"] == "upcoming"
    assert document["url"] == f"{BASE}/status"


async def test_feeds_parse_and_use_base_url(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "  enabled: true\n", "  enabled: true\n  base_url: https://status.example.com/\n"
    )
    daemon = make_state(tmp_path, text)
    try:
        incident = seed_incident(
            daemon.store, "web", NOW - timedelta(hours=5), NOW - timedelta(hours=4)
        )
        publish_update(
            daemon.store.engine, incident, "Back & <well>", "user:bob", NOW - timedelta(hours=4)
        )
        transport = httpx.ASGITransport(app=create_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            # Our own answers, parsed to prove they are well-formed XML.
            atom = ElementTree.fromstring((await http.get("/status/feed.atom")).content)  # noqa: S314
            rss = ElementTree.fromstring((await http.get("/status/feed.rss")).content)  # noqa: S314
            page = (await http.get("/status")).text
    finally:
        daemon.store.close()
    assert atom.tag == f"{ATOM}feed"
    assert atom.findtext(f"{ATOM}title") == "Example & Co status"
    links = [link.get("href") for link in atom.iter(f"{ATOM}link")]
    assert all(str(link).startswith("https://status.example.com/status") for link in links)
    entries = atom.findall(f"{ATOM}entry")
    titles = [entry.findtext(f"{ATOM}title") for entry in entries]
    assert "Incident: website" in titles and "Planned maintenance: upgrade" in titles
    summary = next(
        entry.findtext(f"{ATOM}summary") or ""
        for entry in entries
        if entry.findtext(f"{ATOM}title") == "Incident: website"
    )
    assert "Back & <well>" in summary
    assert rss.tag == "rss" and rss.get("version") == "2.0"
    items = rss.findall("./channel/item")
    assert items and all(
        (item.findtext("link") or "").startswith("https://status.example.com/") for item in items
    )
    assert 'href="https://status.example.com/status/feed.atom"' in page


async def test_badges_are_svg_with_their_text(client: httpx.AsyncClient) -> None:
    def texts(content: bytes) -> list[str]:
        root = ElementTree.fromstring(content)  # noqa: S314 - our own answer
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        return [element.text or "" for element in root.iter("{http://www.w3.org/2000/svg}text")]

    status = await client.get("/status/badge/api/status.svg")
    assert status.headers["content-type"].startswith("image/svg+xml")
    assert texts(status.content) == ["api", "outage"]
    uptime = await client.get("/status/badge/website/uptime.svg?period=2d")
    # One hour of incident over two days of results: 47/48.
    assert texts(uptime.content) == ["uptime 2d", "97.916%"]
    response = await client.get("/status/badge/website/response.svg?period=24h")
    assert texts(response.content) == ["response 24h", "120 ms"]
    api_response = await client.get("/status/badge/api/response.svg?period=1h")
    assert texts(api_response.content) == ["response 1h", "80 ms"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/status/badge/nope/status.svg", 404),
        ("/status/badge/nope/uptime.svg", 404),
        ("/status/badge/..%2Fapi/status.svg", 404),
        ("/status/badge/a%20b/status.svg", 422),
        ("/status/badge/website/uptime.svg?period=12h", 422),
        ("/status/badge/website/uptime.svg?period=366d", 422),
        ("/status/badge/website/uptime.svg?period=banana", 422),
        ("/status/badge/website/uptime.svg?period=" + "9" * 30, 422),
        ("/status/badge/website/response.svg?period=1s", 422),
        ("/status/badge/website/other.svg", 404),
        ("/status/nothing", 404),
    ],
)
async def test_bad_requests_are_4xx(client: httpx.AsyncClient, path: str, status: int) -> None:
    assert (await client.get(path)).status_code == status


async def test_etag_gzip_and_disabled(client: httpx.AsyncClient, tmp_path: Path) -> None:
    first = await client.get("/status")
    again = await client.get("/status", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    zipped = await client.get("/status", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.text == first.text  # httpx decodes it
    (tmp_path / "off").mkdir()
    daemon = make_state(tmp_path / "off", CONFIG.replace("enabled: true", "enabled: false"))
    try:
        transport = httpx.ASGITransport(app=create_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            for path in PUBLIC_PATHS:
                assert (await http.get(path)).status_code == 404, path
    finally:
        daemon.store.close()


async def test_a_forged_host_never_reaches_the_links(client: httpx.AsyncClient) -> None:
    document = (await client.get("/status.json", headers={"host": "evil.example"})).json()
    assert "evil" not in json.dumps(document)
    assert document["url"] == "http://127.0.0.1:9464/status"


async def test_publishing_an_update_through_the_api(
    client: httpx.AsyncClient, state: DaemonState
) -> None:
    auth = {"authorization": f"Bearer {TOKEN}"}
    refused = await client.post("/api/incidents/1/updates", json={"text": "hello"})
    assert refused.status_code == 401
    created = await client.post(
        "/api/incidents/1/updates", json={"text": f"Rotated {SECRET}"}, headers=auth
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert SECRET not in body["text"] and body["incident"] == 1
    for bad in ({"text": ""}, {"text": "   "}, {"text": "x" * 4001}, {"text": "a\x00b"}, {}):
        assert (
            await client.post("/api/incidents/1/updates", json=bad, headers=auth)
        ).status_code == 422
    missing = await client.post("/api/incidents/999/updates", json={"text": "hi"}, headers=auth)
    assert missing.status_code == 404
    stored = state.store.alerts.events(1)
    assert all(SECRET not in event.detail or event.kind == "note" for event in stored)
