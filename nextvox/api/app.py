"""The app factory: one FastAPI app serving one library's API and web page.

Run it with ``nextvox serve LIBRARY`` (uvicorn, 127.0.0.1:8000 by default), or in Python:
``uvicorn.run(create_app(library, data_dir))``. The OpenAPI schema is at ``/openapi.json``,
its browsable form at ``/docs`` (Swagger UI 5 served from the files the fastapi-offline
package ships: it works offline, where FastAPI's default page loads it from a CDN).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from nextvox import __version__
from nextvox.api.errors import install_error_handlers
from nextvox.api.routers import audio, embedding_map, health, radio, recommend, tracks, voice_path, web
from nextvox.api.service import DEFAULT_MAX_UPLOAD_BYTES, LibraryService

if TYPE_CHECKING:  # analysis loads torch: only an uploaded query needs it, so the server starts without it
    from nextvox.analysis import AnalysisSettings

__all__ = ["create_app"]

SWAGGER_ASSETS = "/docs-assets"  # Swagger UI's script and styles, from the installed fastapi-offline
SWAGGER_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"


def create_app(
    library: Path,
    data_dir: Path,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    settings: AnalysisSettings | None = None,
    allowed_hosts: list[str] | None = None,
) -> FastAPI:
    """The app for ``library``, whose catalogue is in ``data_dir`` (see :class:`LibraryService`).

    ``allowed_hosts``: the only ``Host`` headers answered (others get 400); None answers any.
    A server on a loopback address names its own: a web page elsewhere that points a name of
    its own at 127.0.0.1 (DNS rebinding) then reaches nothing, and playlist URLs, which echo
    the Host header, can only name this machine.
    """
    service = LibraryService(library, data_dir, max_upload_bytes=max_upload_bytes, settings=settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(title="nextvox", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Recommend songs by the singer's voice: tracks, voice-alike recommendations, radio, map.")
    app.state.service = service
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    install_error_handlers(app)
    for concern in (health, tracks, audio, recommend, radio, voice_path, embedding_map):
        app.include_router(concern.router, prefix="/api")
    app.include_router(web.router)
    app.mount("/static", StaticFiles(directory=web.WEB_DIR), name="static")
    app.mount(SWAGGER_ASSETS, StaticFiles(directory=SWAGGER_DIR), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url, title="nextvox API", swagger_favicon_url=f"{SWAGGER_ASSETS}/favicon.png",
            swagger_js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        )

    return app
