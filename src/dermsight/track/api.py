"""The tracking REST API (``/v1/track``) and the timeline page (``/track/series/{id}``).

``build_router(tracker_or_url)`` returns an :class:`fastapi.APIRouter` with the API routes under
``/v1/track`` and the page under ``/track`` (mounted by the serving app when
``ServeSettings.track_database_url`` is set); ``create_track_app(tracker)`` is a standalone app
with the same routes. Every request needs the header
``X-API-Key`` (401 when missing or invalid); a key only sees its own subjects (403 otherwise).
Errors have one JSON shape: ``{"error": {"code", "message", "field"}}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, File, Form, Header, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from dermsight.track.service import Tracker, TrackError

STATIC = Path(__file__).with_name("static")


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
    router = APIRouter(prefix="/v1/track", tags=["track"], responses=ERRORS)

    def run(fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TrackError as exc:
            return _error(exc)

    def authed(x_api_key: str | None):
        try:
            return tracker.authenticate(x_api_key), None
        except TrackError as exc:
            return None, _error(exc)

    @router.post("/subjects", status_code=201, response_model=SubjectOut)
    def create_subject(body: SubjectIn, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.create_subject, key, body.label)

    @router.get("/subjects", response_model=list[SubjectOut])
    def list_subjects(x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.list_subjects, key)

    @router.get("/subjects/{subject_id}", response_model=SubjectOut)
    def get_subject(subject_id: str, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.get_subject, key, subject_id)

    @router.delete("/subjects/{subject_id}", response_model=DeletedOut)
    def delete_subject(subject_id: str, x_api_key: KeyHeader = None):
        """Erase the subject, its series, photos and stored image files."""
        key, err = authed(x_api_key)
        return err or run(tracker.delete_subject, key, subject_id)

    @router.post("/subjects/{subject_id}/series", status_code=201, response_model=SeriesOut)
    def create_series(subject_id: str, body: SeriesIn, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.create_series, key, subject_id, body.name, body.body_site,
                          body.kind)

    @router.post("/series/{series_id}/photos", status_code=201, response_model=PhotoOut)
    def add_photo(request: Request, series_id: str, file: Annotated[UploadFile, File()],
                  taken_at: Annotated[str | None, Form(
                      description="ISO 8601 capture time; default: the photo's EXIF time, "
                                  "else now")] = None,
                  x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        if err:
            return err
        data = file.file.read()
        return run(tracker.add_photo, key, series_id, data, taken_at=taken_at,
                   filename=file.filename or "upload",
                   engine=None if tracker.engine is not None else _app_engine(request))

    @router.get("/series/{series_id}/timeline", response_model=TimelineOut)
    def timeline(series_id: str, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.timeline, key, series_id)

    @router.get("/series/{series_id}/trend", response_model=TrendOut)
    def trend(series_id: str, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        return err or run(tracker.trend, key, series_id)

    @router.get("/photos/{photo_id}/image", response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}}})
    def image(photo_id: str, x_api_key: KeyHeader = None):
        key, err = authed(x_api_key)
        if err:
            return err
        try:
            data = tracker.image(key, photo_id)
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

    @router.get("/track/series/{series_id}", response_class=HTMLResponse,
                include_in_schema=False)
    def page(series_id: str):
        return HTMLResponse(html)

    @router.get("/track/static/timeline.js", include_in_schema=False)
    def script():
        return Response(js, media_type="text/javascript")

    return router


def create_track_app(tracker: Tracker) -> FastAPI:
    """A standalone app with the tracking API and page (tests, ``dermsight track serve``)."""
    app = FastAPI(title="dermsight track", version="1")
    app.include_router(build_router(tracker))
    app.state.tracker = tracker
    return app
