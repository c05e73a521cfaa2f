"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from dermsight.serve.api.dependencies import State
from dermsight.serve.api.schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
def healthz() -> Health:
    return Health()


@router.get("/readyz", response_model=Ready, summary="Readiness: the model is loaded",
            responses={503: {"model": Ready, "description": "The model is not loaded yet"}})
def readyz(state: State) -> Ready | JSONResponse:
    if not state.ready:
        return JSONResponse(Ready(status="loading").model_dump(), status_code=503)
    version = state.engine.info.get("version")
    return Ready(status="ready", model_version=None if version is None else str(version))
