"""The tracking routes (``/v1/track``) and the timeline page (``/track/series/{id}``): routers of
the serving app over a :class:`~dermsight.track.service.Tracker`.

Mounted by :func:`dermsight.serve.api.app.create_app` when ``ServeSettings.track_database_url``
is set, or alone by :func:`dermsight.serve.api.app.create_track_app`. They stand on the serving
app's shared pieces: its error type and handlers (:class:`~dermsight.errors.ApiError`, one JSON
shape ``{"error": {"code", "message", "field"}}``), its upload limits (``max_upload_bytes``,
``max_pixels``, and the one-image body limit of :data:`UPLOAD_PATHS`), its inference pool and
pixel budget (:class:`~dermsight.serve.api.dependencies.ServeState`) and its engine when the
tracker has none. Every API request needs the header ``X-API-Key`` (401 when missing or
invalid), checked before any of its body is read; a key only sees its own subjects (403
otherwise).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from fastapi.routing import APIRoute

from dermsight.errors import ApiError
from dermsight.serve.api.dependencies import State
from dermsight.serve.api.errors import api_response
from dermsight.serve.api.limits import image_pixels
from dermsight.serve.api.track_schemas import (
    DeletedOut,
    PhotoOut,
    SeriesIn,
    SeriesOut,
    SubjectIn,
    SubjectOut,
    TimelineOut,
    TrendOut,
)
from dermsight.serve.web import timeline_router
from dermsight.track.service import Tracker

#: Routes that take an image upload (multipart); every other route takes at most a small JSON
#: body (the serving app's body limits, :func:`dermsight.serve.api.app.body_limits`).
UPLOAD_PATHS = ("/v1/track/series/{series_id}/photos",)

KeyHeader = Annotated[str | None, Header(alias="X-API-Key", description="your API key")]

ERRORS = {401: {"description": "missing or invalid API key"},
          403: {"description": "the subject or series belongs to another API key"},
          404: {"description": "unknown subject, series or photo"}}


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
                except ApiError as exc:
                    response = api_response(exc)
                    if "content-length" in request.headers or \
                            "transfer-encoding" in request.headers:
                        # the body is left unread: it must not be parsed as the next request
                        response.headers["Connection"] = "close"
                    return response
                request.state.track_key = key
                return await handler(request)

            return checked

    return KeyedRoute


def build_router(tracker: Tracker | str) -> APIRouter:
    """The ``/v1/track`` API routes and the ``/track`` page over ``tracker`` (a
    :class:`Tracker`, or a database URL: :meth:`Tracker.from_url`).

    Photos get per-photo predictions from the tracker's engine or, when it has none, from the
    serving app's engine (``app.state.dermsight.engine``).
    """
    if isinstance(tracker, str):
        tracker = Tracker.from_url(tracker)
    router = APIRouter(tags=["track"])
    router.include_router(_api_router(tracker))
    router.include_router(timeline_router())
    return router


def _api_router(tracker: Tracker) -> APIRouter:
    # The X-API-Key parameters only document the header: KeyedRoute has checked it already.
    # Errors are ApiErrors, answered by the app's handlers.
    router = APIRouter(prefix="/v1/track", tags=["track"], responses=ERRORS,
                       route_class=_keyed_route(tracker))

    @router.post("/subjects", status_code=201, response_model=SubjectOut)
    def create_subject(request: Request, body: SubjectIn, x_api_key: KeyHeader = None):
        return tracker.create_subject(request.state.track_key, body.label)

    @router.get("/subjects", response_model=list[SubjectOut])
    def list_subjects(request: Request, x_api_key: KeyHeader = None):
        return tracker.list_subjects(request.state.track_key)

    @router.get("/subjects/{subject_id}", response_model=SubjectOut)
    def get_subject(request: Request, subject_id: str, x_api_key: KeyHeader = None):
        return tracker.get_subject(request.state.track_key, subject_id)

    @router.delete("/subjects/{subject_id}", response_model=DeletedOut)
    def delete_subject(request: Request, subject_id: str, x_api_key: KeyHeader = None):
        """Erase the subject, its series, photos and stored image files."""
        return tracker.delete_subject(request.state.track_key, subject_id)

    @router.post("/subjects/{subject_id}/series", status_code=201, response_model=SeriesOut)
    def create_series(request: Request, subject_id: str, body: SeriesIn,
                      x_api_key: KeyHeader = None):
        return tracker.create_series(request.state.track_key, subject_id, body.name,
                                     body.body_site, body.kind)

    @router.post("/series/{series_id}/photos", status_code=201, response_model=PhotoOut)
    async def add_photo(request: Request, state: State, series_id: str,
                        file: Annotated[UploadFile, File()],
                        taken_at: Annotated[str | None, Form(
                            description="ISO 8601 capture time; default: the photo's EXIF "
                                        "time, else now")] = None,
                        photo_type: Annotated[str | None, Form(
                            description="auto (the photo-type router decides), dermoscopy or "
                                        "clinical")] = None,
                        x_api_key: KeyHeader = None):
        max_bytes, max_pixels = state.settings.max_upload_bytes, state.settings.max_pixels
        name = file.filename or "upload"
        data = await file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise ApiError(413, "file_too_large",
                           f"'{name}' is over the limit of {max_bytes} bytes", "file")
        work = functools.partial(
            tracker.add_photo, request.state.track_key, series_id, data,
            taken_at=taken_at, filename=name, max_bytes=max_bytes, max_pixels=max_pixels,
            photo_type=photo_type, engine=None if tracker.engine is not None else state.engine)
        return await state.run(work, pixels=image_pixels(data, max_pixels))

    @router.get("/series/{series_id}/timeline", response_model=TimelineOut)
    def timeline(request: Request, series_id: str, x_api_key: KeyHeader = None):
        return tracker.timeline(request.state.track_key, series_id)

    @router.get("/series/{series_id}/trend", response_model=TrendOut)
    def trend(request: Request, series_id: str, x_api_key: KeyHeader = None):
        return tracker.trend(request.state.track_key, series_id)

    @router.get("/photos/{photo_id}/image", response_class=Response,
                responses={200: {"content": {"image/jpeg": {}}}})
    def image(request: Request, photo_id: str, x_api_key: KeyHeader = None):
        data = tracker.image(request.state.track_key, photo_id)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    return router
