"""What the served model is: classes, input, metadata schema, metrics, limits."""

from __future__ import annotations

from fastapi import APIRouter

from dermsight.serve.api.dependencies import LoadedEngine, State
from dermsight.serve.api.schemas import ErrorBody, ModelInfo, RouterInfo, ServedModel

router = APIRouter(tags=["model"])

def _input_size(info: dict) -> list[int] | None:
    size = info.get("input_size")
    if isinstance(size, dict):
        size = [size.get("height"), size.get("width")]
    if isinstance(size, list | tuple) and len(size) >= 2:
        try:
            return [int(s) for s in size[-2:]]
        except (TypeError, ValueError):
            return None
    return None


def _float(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _served_model(kind: str, engine) -> ServedModel:
    info = dict(engine.info)
    conformal = info.get("conformal") if isinstance(info.get("conformal"), dict) else {}
    return ServedModel(
        photo_type=kind, folder=engine.model_dir.name,
        name=None if info.get("name") is None else str(info.get("name")),
        version=None if info.get("version") is None else str(info.get("version")),
        classes=list(engine.classes), display_names=dict(engine.display_names),
        input_size=_input_size(info), precision=getattr(engine, "precision", None),
        metadata_schema=dict(engine.metadata_schema or {}),
        conformal_coverage=_float(info.get("conformal_coverage", conformal.get("coverage"))),
        metrics=info.get("metrics") if isinstance(info.get("metrics"), dict) else {},
        hierarchy=info.get("hierarchy"), info=info)


@router.get("/model", response_model=ModelInfo, summary="The served models and the router",
            responses={503: {"model": ErrorBody, "description": "Model not loaded yet"}})
def model_info(state: State, engine: LoadedEngine) -> ModelInfo:
    served = engine
    models, route_info = {}, None
    if hasattr(served, "engines"):  # ServedModels: every model, the router, then the first
        models = {kind: _served_model(kind, e) for kind, e in served.engines.items()}
        if served.router is not None:
            r = served.router
            route_info = RouterInfo(
                folder=r.folder.name, precision=r.precision, photo_types=r.photo_types,
                refuse_threshold=r.refuse_threshold,
                info={k: v for k, v in r.info.items() if k != "imagenet_classes"})
        engine = served.default_engine
    info = dict(engine.info)
    conformal = info.get("conformal") if isinstance(info.get("conformal"), dict) else {}
    coverage = info.get("conformal_coverage", conformal.get("coverage"))
    s = state.settings
    return ModelInfo(
        routed=route_info is not None, models=models, router=route_info,
        name=None if info.get("name") is None else str(info.get("name")),
        version=None if info.get("version") is None else str(info.get("version")),
        classes=list(engine.classes),
        display_names=dict(engine.display_names),
        input_size=_input_size(info),
        precision=getattr(engine, "precision", None) or info.get("precision"),
        metadata_schema=dict(engine.metadata_schema or {}),
        temperature=_float(info.get("temperature")),
        conformal_coverage=_float(coverage),
        metrics=info.get("metrics") if isinstance(info.get("metrics"), dict) else {},
        limits={"max_upload_bytes": s.max_upload_bytes, "max_pixels": s.max_pixels,
                "max_batch_size": s.max_batch_size,
                "max_top_k": min(s.max_top_k, getattr(served, "max_classes", None)
                                 or len(engine.classes))},
        info=info,
    )
