"""The tracking REST API (``/v1/track``) and the timeline page (``/track/series/{id}``).

``build_router(tracker_or_url)`` returns an :class:`fastapi.APIRouter` with the API routes under
``/v1/track`` and the page under ``/track`` (mounted by the serving app when
``ServeSettings.track_database_url`` is set); ``create_track_app(tracker)`` is a standalone app
with the same routes and the serving app's guards. Every API request needs the header
``X-API-Key`` (401 when missing or invalid), checked before any of its body is read; a key only
sees its own subjects (403 otherwise). Photo uploads are decoded in the serving app's inference
pool and pixel budget (:class:`~dermsight.serve.api.dependencies.ServeState`) and honour its
``max_upload_bytes`` and ``max_pixels``. Errors have one JSON shape:
``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Header, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from dermsight.track.service import MAX_BYTES, MAX_PIXELS, Tracker, TrackError

STATIC = Path(__file__).with_name("static")

#: Routes that take an image upload (multipart); every other route takes at most a small JSON
#: body (the serving app's body limits, :func:`dermsight.serve.api.app.body_limits`).
UPLOAD_PATHS = ("/v1/track/series/{series_id}/photos",)


class SubjectIn(BaseModel):
    label: str = Field("", max_length=200,
                       description="your own reference; do not put names or identifiers here")


class SeriesIn(BaseModel):
    name: str = Field("", max_length=200)
    body_site: str | None = Field(None, max_length=100)
    kind: str = Field("lesion", description="lesion | face | body_site ('face' crops to the face)")


class SeriesOut(BaseModel):
    id: str
    subject_id: str
    name: str
    body_site: str | None
    kind: str
    created_at: str
    n_photos: int | None = None


class SubjectOut(BaseModel):
    id: str
    label: str
    created_at: str
    series: list[SeriesOut]


class PhotoOut(BaseModel):
    id: str
    series_id: str
    taken_at: str
    uploaded_at: str | None
    content_sha256: str
    width: int
    height: int
    prediction: dict[str, Any] | None
    quality: dict[str, Any] | None
    tone: dict[str, Any] | None
    lesion: dict[str, Any] | None
    severity: float | None
    has_embedding: bool
    flagged: bool
    flag_reason: str | None


class TimelineOut(SeriesOut):
    photos: list[PhotoOut]
    disclaimer: str


class TrendResult(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float]
    method: str
    note: str | None = None
    severity_log_change: float | None = None


class TrendOut(BaseModel):
    series_id: str
    n_photos: int
    n_used: int
    excluded: list[dict[str, Any]]
    classes: list[str]
    trend: TrendResult | None
    baseline: TrendResult | None
    mismatches: list[dict[str, Any]] = Field(
        default_factory=list, description="consecutive photos that do not look like the same "
        "spot (then there is no trend): their ids, capture times and the compared measures")
    message: str | None = None
    disclaimer: str


class DeletedOut(BaseModel):
    subject_id: str
    series_deleted: int
    photos_deleted: int
    files_deleted: int


KeyHeader = Annotated[str | None, Header(alias="X-API-Key", description="your API key")]


def _error(exc: TrackError) -> JSONResponse:
    headers = {"WWW-Authenticate": "X-API-Key"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _keyed_route(tracker: Tracker) -> type[APIRoute]:
    """A route class that checks ``X-API-Key`` before FastAPI reads (and parses) the body: a
    request without a valid key costs a header lookup, whatever it sends. The key id is left in
    ``request.state.track_key``."""

    class KeyedRoute(APIRoute):
        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def checked(request: Request) -> Response:
                try:
                    key = await run_in_threadpool(tracker.authenticate,
                                                  request.headers.get("x-api-key"))
                except TrackError as exc:
                    response = _error(exc)
                    if "content-length" in request.headers or \
                            "transfer-encoding" in request.headers:
                        # the body is left unread: it must not be parsed as the next request
                        response.headers["Connection"] = "close"
                    return response
                request.state.track_key = key
                return await handler(request)

            return checked

    return KeyedRoute


ERRORS = {401: {"description": "missing or invalid API key"},
          403: {"description": "the subject or series belongs to another API key"},
          404: {"description": "unknown subject, series or photo"}}


def build_router(tracker: Tracker | str) -> APIRouter:
    """The ``/v1/track`` API routes and the ``/track`` page over ``tracker`` (a
    :class:`Tracker`, or a database URL: :meth:`Tracker.from_url`).

    Photos get per-photo predictions from the tracker's engine or, when it has none, from the
    serving app's engine (``app.state.dermsight.engine``) when the router is mounted there.
    """
    if isinstance(tracker, str):
        tracker = Tracker.from_url(tracker)
    router = APIRouter(tags=["track"])
    router.include_router(_api_router(tracker))
    router.include_router(build_page_router())
    return router


def _app_engine(request: Request) -> Any:
    state = getattr(request.app.state, "dermsight", None)
    return getattr(state, "engine", None)


def _api_router(tracker: Tracker) -> APIRouter:
    # The X-API-Key parameters only document the header: KeyedRoute has checked it already.
    router = APIRouter(prefix="/v1/track", tags=["track"], responses=ERRORS,
                       route_class=_keyed_route(tracker))

    def run(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrackError as exc:
            return _error(exc)

    @router.post("/subjects", status_code=201, response_model=SubjectOut)
    def create_subject(request: Request, body: SubjectIn, x_api_key: KeyHeader = None):
        return run(tracker.create_subject, request.state.track_key, body.label)

    @router.get("/subjects", response_model=list[SubjectOut])
    def list_subjects(request: Request, x_api_key: KeyHeader = None):
        return run(tracker.list_subjects, request.state.track_key)

    @router.get("/subjects/{subject_id}", response_model=SubjectOut)
    def get_subject(request: Request, subject_id: str, x_api_key: KeyHeader = None):
        return run(tracker.get_subject, request.state.track_key, subject_id)

    @router.delete("/subjects/{subject_id}", response_model=DeletedOut)
    def delete_subject(request: Request, subject_id: str, x_api_key: KeyHeader = None):
        """Erase the subject, its series, photos and stored image files."""
        return run(tracker.delete_subject, request.state.track_key, subject_id)

    @router.post("/subjects/{subject_id}/series", status_code=201, response_model=SeriesOut)
    def create_series(request: Request, subject_id: str, body: SeriesIn,
                      x_api_key: KeyHeader = None):
        return run(tracker.create_series, request.state.track_key, subject_id, body.name,
                   body.body_site, body.kind)

    @router.post("/series/{series_id}/photos", status_code=201, response_model=PhotoOut)
    async def add_photo(request: Request, series_id: str, file: Annotated[UploadFile, File()],
                        taken_at: Annotated[str | None, Form(
                            description="ISO 8601 capture time; default: the photo's EXIF "
                                        "time, else now")] = None,
                        photo_type: Annotated[str | None, Form(
                            description="auto (the photo-type router decides), dermoscopy or "
                                        "clinical")] = None,
                        x_api_key: KeyHeader = None):
        state = getattr(request.app.state, "dermsight", None)
        settings = getattr(state, "settings", None)
        max_bytes = settings.max_upload_bytes if settings is not None else MAX_BYTES
        max_pixels = settings.max_pixels if settings is not None else MAX_PIXELS
        name = file.filename or "upload"
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            return _error(TrackError(413, "file_too_large",
                                     f"'{name}' is over the limit of {max_bytes} bytes", "file"))
        work = functools.partial(
            run, tracker.add_photo, request.state.track_key, series_id, data,
            taken_at=taken_at, filename=name, max_bytes=max_bytes, max_pixels=max_pixels,
            photo_type=photo_type,
            engine=None if tracker.engine is not None else _app_engine(request))
        if state is None:  # mounted in an app without the serving state
            return await run_in_threadpool(work)
        from dermsight.serve.api.limits import image_pixels

        return await state.run(work, pixels=image_pixels(data, max_pixels))

    @router.get("/series/{series_id}/timeline", response_model=TimelineOut)
    def timeline(request: Request, series_id: str, x_api_key: KeyHeader = None):
        return run(tracker.timeline, request.state.track_key, series_id)

    @router.get("/series/{series_id}/trend", response_model=TrendOut)
    def trend(request: Request, series_id: str, x_api_key: KeyHeader = None):
        return run(tracker.trend, request.state.track_key, series_id)

    @router.get("/photos/{photo_id}/image", response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}}})
    def image(request: Request, photo_id: str, x_api_key: KeyHeader = None):
        try:
            data = tracker.image(request.state.track_key, photo_id)
        except TrackError as exc:
            return _error(exc)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    return router


def build_page_router() -> APIRouter:
    """``/track/series/{series_id}``: the timeline page (static HTML + vanilla JS, offline)."""
    router = APIRouter(tags=["track-web"])
    html = (STATIC / "timeline.html").read_text(encoding="utf-8")
    js = (STATIC / "timeline.js").read_text(encoding="utf-8")
    css = (STATIC / "timeline.css").read_text(encoding="utf-8")

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


def create_track_app(tracker: Tracker, settings: Any = None) -> FastAPI:
    """A standalone app with the tracking API and page (tests, ``dermsight track serve``), with
    the serving app's guards: error format, body limits, pixel budget, inference pool, security
    headers and local API docs. ``settings``: a
    :class:`~dermsight.serve.api.settings.ServeSettings` (its defaults when None)."""
    from dermsight.serve.api.app import body_limits, install_guards
    from dermsight.serve.api.dependencies import ServeState
    from dermsight.serve.api.errors import install_error_handlers
    from dermsight.serve.api.settings import ServeSettings

    settings = settings or ServeSettings(web=False)
    app = FastAPI(title="dermsight track", version="1", docs_url=None, redoc_url=None)
    app.state.dermsight = ServeState(settings=settings)
    install_error_handlers(app)
    app.include_router(build_router(tracker))
    install_guards(app, settings, body_limits(settings, UPLOAD_PATHS, predict=False))
    app.state.tracker = tracker
    return app
