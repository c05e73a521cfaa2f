"""The FastAPI application: routers, limits, error handlers, the web app, extension hooks.

Routers: health, model and predict, and lesion tracking
(:mod:`dermsight.serve.api.routers.track`) when ``ServeSettings.track_database_url`` is set;
:func:`create_track_app` serves the tracking routers alone. Extension point (anything else with
its own routes): pass routers in ``create_app(..., extra_routers=[router, ...])``; their routes
keep their own prefixes. The routers share this app's error format, body limits, security
headers and ``app.state.dermsight`` (a :class:`~dermsight.serve.api.dependencies.ServeState`
holding the engine, the inference pool and the pixel budget: ``await state.run(fn, pixels=n)``
runs blocking work in it). Routes not listed in :func:`body_limits` take JSON bodies of at most
``settings.max_json_kb``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from dermsight import DISCLAIMER, __version__
from dermsight.serve.api.dependencies import ServeState
from dermsight.serve.api.docs import DOCS_URL, REDOC_URL, mount_docs
from dermsight.serve.api.errors import install_error_handlers
from dermsight.serve.api.limits import BodyLimit, BodyLimitMiddleware
from dermsight.serve.api.routers import health, model, predict
from dermsight.serve.api.security import SecurityHeadersMiddleware
from dermsight.serve.api.settings import ServeSettings

if TYPE_CHECKING:
    from dermsight.serve.engine import Engine
    from dermsight.track.service import Tracker

log = logging.getLogger("dermsight.serve")

API_PREFIX = "/v1"

#: The methods the API uses (CORS allows these for the configured origins).
METHODS = ["GET", "POST", "DELETE"]

_DESCRIPTION = f"""Skin-condition classification from photos, with calibrated probabilities,
conformal prediction sets, photo-quality retake tips, skin-tone estimation and Grad-CAM.

Every error has the body `{{"error": {{"code": ..., "message": ..., "field": ...}}}}`.

**Not medical advice.** {DISCLAIMER}
"""


def _load_engine(settings: ServeSettings) -> Engine:
    from dermsight.serve.served import ServedModels

    return ServedModels.load(settings.model_dir, precision=settings.precision,
                             threads=settings.threads)


def create_app(engine: Engine | None = None, settings: ServeSettings | None = None, *,
               extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    """Build the API (and the web app at ``/`` unless ``settings.web`` is False).

    Args:
        engine: a loaded :class:`~dermsight.serve.served.ServedModels` (or a single
            ``Engine``); None loads ``settings.model_dir`` (a folder of model folders, or one
            model folder; None = the repository's ``models/``) at startup, in a worker thread.
            A model that fails to load stops the startup.
        settings: limits and options (:class:`ServeSettings` defaults when None).
        extra_routers: more routers to mount (see the module docstring).
    """
    settings = settings or ServeSettings()
    # Pillow logs every EXIF tag it parses (GPS included) at DEBUG: never let that through.
    pil_log = logging.getLogger("PIL")
    if pil_log.level < logging.INFO:  # NOTSET (0) included: a DEBUG root would let it through
        pil_log.setLevel(logging.INFO)
    state = ServeState(settings=settings, engine=engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.engine is None:
            try:
                state.engine = await anyio.to_thread.run_sync(_load_engine, settings)
            except Exception as exc:
                state.load_error = str(exc)
                log.error("could not load the model: %s", exc)
                raise
            log.info("model loaded from %s", state.engine.model_dir)
        yield

    app = FastAPI(
        title="dermsight", version=__version__, description=_DESCRIPTION, lifespan=lifespan,
        docs_url=None, redoc_url=None,
        openapi_tags=[
            {"name": "predict", "description": "Classify photos."},
            {"name": "model", "description": "The served model."},
            {"name": "health", "description": "Probes."},
        ],
    )
    app.state.dermsight = state
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(model.router, prefix=API_PREFIX)
    app.include_router(predict.router, prefix=API_PREFIX)
    upload_paths: list[str] = []
    if settings.track_database_url:
        from dermsight.serve.api.routers import track  # needs the tracking extras (SQLAlchemy)

        app.include_router(track.build_router(settings.track_database_url))
        upload_paths += track.UPLOAD_PATHS
    for router in extra_routers:
        app.include_router(router)
    if settings.web:
        from dermsight.serve.web import mount_web

        mount_web(app)

    install_guards(app, settings, body_limits(settings, upload_paths))
    return app


def body_limits(settings: ServeSettings, upload_paths: Iterable[str] = (), *,
                predict: bool = True) -> list[BodyLimit]:
    """The routes that take images, with their body limits: the predictions (unless
    ``predict`` is False), and ``upload_paths`` (route templates of other one-image uploads,
    e.g. tracking photos)."""
    limits = [BodyLimit("POST", path, settings.upload_limit, True, "file")
              for path in upload_paths]
    if predict:
        limits += [
            BodyLimit("POST", f"{API_PREFIX}/predict", settings.upload_limit, True, "file"),
            BodyLimit("POST", f"{API_PREFIX}/predict/batch", settings.request_limit, True,
                      "files")]
    return limits


def install_guards(app: FastAPI, settings: ServeSettings, limits: Sequence[BodyLimit]) -> None:
    """What every dermsight app has, whichever routers it mounts: the API docs from local files,
    body limits (``limits``, else ``settings.json_limit``), CORS when origins are configured, and
    the security headers on every response (outermost, so errors get them too). Call it after
    the routers are included."""
    mount_docs(app)
    app.add_middleware(BodyLimitMiddleware, limits=limits, default=settings.json_limit)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=METHODS, allow_headers=["*"])
    app.add_middleware(SecurityHeadersMiddleware, docs_paths=(DOCS_URL, REDOC_URL))


def create_track_app(tracker: Tracker, settings: ServeSettings | None = None) -> FastAPI:
    """An app with the tracking routers alone (tests, ``dermsight track serve``), with every
    guard of :func:`create_app`: error format, body limits, pixel budget, inference pool,
    security headers and local API docs (``settings``: :class:`ServeSettings` defaults, without
    the web app, when None)."""
    from dermsight.serve.api.routers import track

    settings = settings or ServeSettings(web=False)
    app = FastAPI(title="dermsight track", version="1", docs_url=None, redoc_url=None)
    app.state.dermsight = ServeState(settings=settings)
    install_error_handlers(app)
    app.include_router(track.build_router(tracker))
    install_guards(app, settings, body_limits(settings, track.UPLOAD_PATHS, predict=False))
    app.state.tracker = tracker
    return app


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: settings from the environment."""
    return create_app(settings=ServeSettings.from_env())
