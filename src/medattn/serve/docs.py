"""``/docs`` (Swagger UI) and ``/redoc`` served from local files, so they render offline.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and stay blank on an offline
hospital network. The JavaScript and CSS come from the ``fastapi-offline`` package (part of the
``serve`` extra) and are served by the app itself under :data:`ASSETS_URL`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "docs_assets_dir", "add_offline_docs"]

ASSETS_URL = "/docs-assets"
_NEEDED = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js")


def docs_assets_dir() -> Path | None:
    """Folder holding the Swagger UI and ReDoc files, or ``None`` when the package is missing."""
    try:
        folder = Path(str(files("fastapi_offline") / "static"))
    except ModuleNotFoundError:
        return None
    return folder if all((folder / n).is_file() for n in _NEEDED) else None


def add_offline_docs(app: FastAPI, assets: Path) -> None:
    """Add ``/docs``, its OAuth2 redirect and ``/redoc`` to ``app`` (created with
    ``docs_url=None, redoc_url=None``), all pointing at the files in ``assets``."""
    app.mount(ASSETS_URL, StaticFiles(directory=str(assets)), name="docs-assets")
    favicon = "favicon.png" if (assets / "favicon.png").is_file() else None

    def _url(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=_url(request, "swagger-ui-bundle.js"), swagger_css_url=_url(request, "swagger-ui.css"),
            swagger_favicon_url=_url(request, favicon) if favicon else "",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                              redoc_js_url=_url(request, "redoc.standalone.js"), with_google_fonts=False,
                              redoc_favicon_url=_url(request, favicon) if favicon else "")
