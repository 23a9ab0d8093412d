"""``/docs`` (Swagger UI) and ``/redoc`` without a CDN: their JavaScript, CSS and icon come from the
installed package ``fastapi-offline`` (Swagger UI 5, which reads the OpenAPI 3.1 documents FastAPI
writes), served under :data:`ASSETS_URL`, so the docs work on a network with no way out."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: the folder of swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png
ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


async def swagger_ui(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the online validator
    )


async def redoc(request: Request) -> HTMLResponse:
    root, app = _root(request), request.app
    return get_redoc_html(
        openapi_url=f"{root}{app.openapi_url}",
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """Serve the docs pages and their assets (build the app with ``docs_url=None, redoc_url=None``)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route("/redoc", redoc, methods=["GET"], include_in_schema=False)
