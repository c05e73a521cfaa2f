"""The API docs (``/docs``: Swagger UI, ``/redoc``: ReDoc) served from local files.

FastAPI's own docs pages load Swagger UI and ReDoc from a CDN (only the major version pinned,
no integrity check) on the same origin as the tracking pages, and do not work offline. Here the
bundles come from the ``fastapi-offline`` package (MIT; a dependency of the ``serve`` extra)
and are served under ``/docs/assets``; the pages have no inline script (Swagger UI is started
by ``docs_static/swagger-init.js``), so their CSP allows scripts from this origin only
(:data:`dermsight.serve.api.security.DOCS_CSP`).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse

from dermsight.serve.api.errors import ApiError

log = logging.getLogger("dermsight.serve")

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"
STATIC = Path(__file__).with_name("docs_static")

_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}

_SWAGGER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""

_REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" href="{assets}/favicon.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""


def asset_files() -> dict[str, Path] | None:
    """The files served under ``/docs/assets``, or None when fastapi-offline is missing."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    bundle = Path(fastapi_offline.__file__).parent / "static"
    files = {name: bundle / name for name in
             ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")}
    files["swagger-init.js"] = STATIC / "swagger-init.js"
    missing = [name for name, path in files.items() if not path.is_file()]
    return None if missing else files


def mount_docs(app: FastAPI) -> None:
    """Serve ``/docs``, ``/redoc`` and their assets; create ``app`` with ``docs_url=None,
    redoc_url=None``. Without fastapi-offline the docs are left out (``/openapi.json`` stays)
    and a warning says so: a CDN is never used."""
    files = asset_files()
    if files is None or app.openapi_url is None:
        log.warning("API docs (/docs, /redoc) are off: the fastapi-offline package that ships "
                    "their scripts is not installed (pip install -e '.[serve]'); "
                    "/openapi.json is still served")
        return

    def page(template: str, request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return HTMLResponse(template.format(
            title=html.escape(app.title), assets=html.escape(root + ASSETS_URL),
            openapi=html.escape(root + app.openapi_url)))

    @app.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        return page(_SWAGGER_PAGE, request)

    @app.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        return page(_REDOC_PAGE, request)

    @app.get(ASSETS_URL + "/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise ApiError(404, "not_found", f"no docs asset named {name!r}", None)
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix],
                            headers={"Cache-Control": "public, max-age=86400"})
