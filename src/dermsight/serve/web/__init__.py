"""The web pages (HTML, CSS, vanilla JS; no build step, no CDN): the web app at '/' and the
tracking timeline at '/track/series/{id}'.

They talk to the same API as any client (GET /v1/model, POST /v1/predict, /v1/track/...).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
TIMELINE_DIR = Path(__file__).parent / "timeline"

#: Everything comes from this origin: the page works offline and loads nothing from elsewhere.
_CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")


def mount_web(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                            headers={"Content-Security-Policy": _CSP,
                                     "X-Content-Type-Options": "nosniff",
                                     "Referrer-Policy": "no-referrer",
                                     "Cache-Control": "no-cache"})


def timeline_router() -> APIRouter:
    """``/track/series/{series_id}``: the tracking timeline page and its script and styles
    (``timeline/``), mounted with the tracking routes."""
    router = APIRouter(tags=["track-web"])
    html = (TIMELINE_DIR / "timeline.html").read_text(encoding="utf-8")
    js = (TIMELINE_DIR / "timeline.js").read_text(encoding="utf-8")
    css = (TIMELINE_DIR / "timeline.css").read_text(encoding="utf-8")

    @router.get("/track/series/{series_id}", response_class=HTMLResponse,
                include_in_schema=False)
    def page(series_id: str):
        return HTMLResponse(html)

    @router.get("/track/static/timeline.js", include_in_schema=False)
    def script():
        return Response(js, media_type="text/javascript")

    @router.get("/track/static/timeline.css", include_in_schema=False)
    def stylesheet():
        return Response(css, media_type="text/css")

    return router
