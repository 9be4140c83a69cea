"""``/api/docs``: Swagger UI over ``/api/openapi.json``, served from the files of the
``swagger_ui_bundle`` package (no CDN: the page works where the daemon has no Internet,
and loads no script from elsewhere). Open to anyone, like the schema: the schema holds no
secret, and every operation tried from the page still needs a token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

from upkeep.web.guard import ACCOUNT_PATHS, PING_PREFIX, is_open_path

DOCS_PATH = "/api/docs"
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
"""The bundle's files the page loads, with their media types (nothing else is served)."""


BEARER_SCHEME = "token"
"""The name of the schema's security scheme: `Authorization: Bearer <token>`."""


def declare_bearer(app: FastAPI) -> None:
    """Given the app, make its schema say that every operation the guard does not answer
    without a credential (``guard.is_open_path`` for GET and HEAD, pings, signing in and
    out) needs a bearer token (Swagger UI's *Authorize* then sends it). The guard, not
    FastAPI, checks it: this only describes what the guard does."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            BEARER_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "an API token of `engine.api_tokens`",
            }
        }
        for path, operations in schema.get("paths", {}).items():
            if path in ACCOUNT_PATHS or path.startswith(PING_PREFIX):
                continue
            for method, operation in operations.items():
                if method in ("get", "head") and is_open_path(path):
                    continue
                operation["security"] = [{BEARER_SCHEME: []}]
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _asset_directory() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


def docs_router() -> APIRouter:
    """Return the routes of the Swagger UI page and its assets (left out of the schema)."""
    router = APIRouter(include_in_schema=False)

    @router.get(DOCS_PATH)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/api/openapi.json",
            title="upkeep API",
            swagger_js_url=f"{DOCS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_PATH}/favicon-32x32.png",
            # Authorize once with the token; it is kept only in the page's memory.
            swagger_ui_parameters={"persistAuthorization": False, "tryItOutEnabled": False},
        )

    @router.get(DOCS_PATH + "/{asset}")
    async def swagger_asset(asset: str) -> FileResponse:
        media_type = ASSETS.get(asset)
        if media_type is None:
            raise HTTPException(status_code=404, detail="no such file")
        return FileResponse(_asset_directory() / asset, media_type=media_type)

    return router
