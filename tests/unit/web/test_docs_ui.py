"""``/api/docs``: Swagger UI from the swagger_ui_bundle package's own files, open to
anyone like the schema, loading nothing from elsewhere."""

from __future__ import annotations

import re

from tests.unit.web.test_app import client_for
from upkeep.web.app import DaemonState


async def test_swagger_ui_is_served_from_the_bundle_without_a_token(
    daemon_state: DaemonState,
) -> None:
    anonymous = client_for(daemon_state, token=None)
    page = await anonymous.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/api/docs/") for source in sources), sources
    assert "'/api/openapi.json'" in page.text or '"/api/openapi.json"' in page.text
    script = await anonymous.get("/api/docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert (await anonymous.get("/api/docs/swagger-ui.css")).status_code == 200
    assert (await anonymous.get("/api/docs/index.html")).status_code == 404
    assert (await anonymous.get("/api/docs/..%2Fswagger-ui.css")).status_code == 404
    schema = (await anonymous.get("/api/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert schema["paths"]["/api/checks"]["get"]["security"] == [{"token": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


async def test_the_docs_prefix_opens_no_api_route(daemon_state: DaemonState) -> None:
    anonymous = client_for(daemon_state, token=None)
    assert (await anonymous.get("/api/checks")).status_code == 401
    assert (await anonymous.post("/api/docs", json={})).status_code == 401
