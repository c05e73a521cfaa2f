"""Every served model and the photo-type router in front of them (torch-free).

:meth:`ServedModels.load` reads a folder of model folders (the repository's ``models/`` by
default). What is served comes from the folders, never from a list in code:
- a folder with ``model.json`` is a diagnosis model; its ``photo_type`` (``dermoscopy`` or
  ``clinical``) says which photos it answers; two models for one kind are an error;
- a folder with ``router.json`` is the photo-type router (at most one);
- a folder with ``trend.json`` is the tracking trend model (not a diagnosis model: skipped here);
- hidden folders (``.``-prefixed: staging, caches) are skipped; any other folder stops start-up
  with an error that names it, as does a missing, corrupt or unknown-kind model.

:meth:`ServedModels.predict` routes each photo (or takes the kind the caller forces), answers it
with the model made for its kind, and refuses a photo that is not of skin: no diagnosis, no
probabilities, no prediction set, only a message and what to do instead. A single model folder
can still be served alone (``ServedModels.load("models/ham10000")``): it then answers every
photo, as before routing existed, and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.errors import ConfigError, DataError
from dermsight.io import project_folder
from dermsight.phototype import DESCRIPTIONS, PHOTO_TYPES, REFUSAL, REFUSAL_ADVICE, SKIN_TYPES
from dermsight.phototype import check_photo_type as _check_kind
from dermsight.serve.engine import LOW_SKIN_FRACTION, MODEL_JSON, Engine, Prediction
from dermsight.serve.router import ROUTER_JSON, Route, Router

ENV_MODELS_DIR = "DERMSIGHT_MODELS_DIR"
TREND_JSON = "trend.json"
#: the ImageNet label is named in a refusal only when the backbone is at least this sure of it
LOOKS_LIKE_MIN = 0.3


def default_models_root() -> Path:
    """``$DERMSIGHT_MODELS_DIR`` when set; else ``models/`` of the source checkout this package
    runs from (editable installs); else ``./models``."""
    return project_folder("models", env_var=ENV_MODELS_DIR, is_valid=lambda p: p.is_dir() and any(
        (m / MODEL_JSON).is_file() for m in p.iterdir() if m.is_dir()))


def model_photo_type(folder: Path, info: Mapping) -> str:
    """The kind of photo a model folder answers (``photo_type`` in its model.json)."""
    kind = info.get("photo_type")
    if kind not in SKIN_TYPES:
        raise ConfigError(f"{folder / MODEL_JSON}: 'photo_type' must be one of "
                          f"{list(SKIN_TYPES)} (the kind of photo the model answers), got "
                          f"{kind!r}; add it, or export the model again")
    return str(kind)


def refusal(route: Route, *, reason: str = "not_skin") -> Prediction:
    """The answer to a photo that gets no diagnosis."""
    if reason == "not_skin":
        message = REFUSAL
        looks = [c for c, p in route.looks_like[:1] if p >= LOOKS_LIKE_MIN]
        if looks:
            message += f" It looks more like: {looks[0]}."
        advice = REFUSAL_ADVICE
    else:  # routed to a kind no installed model answers
        message = (f"This looks like {DESCRIPTIONS[route.photo_type]}, and no model for that "
                   "kind of photo is installed here, so dermsight gives no assessment of it.")
        advice = "Choose another kind of photo if this one was misjudged."
    return Prediction(
        probabilities={}, top_k=[], conformal_set=[], conformal_text="", conformal_coverage=None,
        lighting={}, skin_tone={}, embedding=np.zeros(0, np.float32),
        photo_type=route.photo_type, model=None, route=route.to_dict(), refused=True,
        message=f"{message} {advice}")


class ServedModels:
    """Diagnosis models by photo kind, and the router (see the module docstring)."""

    #: images per call to the models (as :attr:`Engine.batch_size`)
    batch_size: int = 32

    def __init__(self, engines: Mapping[str, Engine], router: Router | None,
                 root: Path | None = None) -> None:
        if not engines:
            raise ConfigError(f"{root or 'the models folder'} holds no diagnosis model "
                              "(a folder with model.json)")
        if router is None and len(engines) > 1:
            raise ConfigError(f"{root}: several models ({', '.join(sorted(engines))}) but no "
                              "photo-type router folder (router.json) to choose between them")
        self.engines = dict(engines)
        self.router = router
        self.root = root

    # ---- loading ----------------------------------------------------------------------------
    @classmethod
    def load(cls, root: str | Path | None = None, *, precision: str = "auto",
             threads: int | None = None, verify: bool = True) -> ServedModels:
        """Load a folder of model folders, or one model folder (served alone, unrouted)."""
        root = Path(root) if root is not None else default_models_root()
        if (root / MODEL_JSON).is_file():
            engine = Engine.load(root, precision=precision, threads=threads, verify=verify)
            kind = engine.info.get("photo_type")
            return cls({kind if kind in SKIN_TYPES else "any": engine}, None, root)
        if not root.is_dir():
            raise ConfigError(f"models folder {root} does not exist (set --model or "
                              f"${ENV_MODELS_DIR})")
        engines: dict[str, Engine] = {}
        router = None
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            if folder.name.startswith((".", "_")):
                continue
            if (folder / MODEL_JSON).is_file():
                engine = Engine.load(folder, precision=precision, threads=threads,
                                     verify=verify)
                kind = model_photo_type(folder, engine.info)
                if kind in engines:
                    raise ConfigError(f"two models answer {kind} photos: "
                                      f"{engines[kind].model_dir} and {folder}; keep one")
                engines[kind] = engine
            elif (folder / ROUTER_JSON).is_file():
                if router is not None:
                    raise ConfigError(f"two router folders: {router.folder} and {folder}")
                router = Router.load(folder, precision=precision, threads=threads,
                                     verify=verify)
            elif (folder / TREND_JSON).is_file():
                continue
            else:
                raise ConfigError(f"{folder} is not a model folder: it has no {MODEL_JSON}, "
                                  f"{ROUTER_JSON} or {TREND_JSON}")
        return cls(engines, router, root)

    # ---- description ------------------------------------------------------------------------
    @property
    def routed(self) -> bool:
        return self.router is not None

    @property
    def photo_types(self) -> list[str]:
        return [k for k in SKIN_TYPES if k in self.engines] + \
            [k for k in self.engines if k not in SKIN_TYPES]

    @property
    def default_engine(self) -> Engine:
        """The first model (dermoscopy first): what a caller that needs one model sees."""
        return self.engines[self.photo_types[0]]

    @property
    def metadata_schema(self) -> dict:
        """Every model's metadata schema merged (a field is checked as its models define it)."""
        merged: dict[str, dict] = {}
        for engine in self.engines.values():
            for kind, fields in (engine.metadata_schema or {}).items():
                if isinstance(fields, Mapping):
                    merged.setdefault(kind, {}).update(fields)
        return merged

    @property
    def metadata_fields(self) -> tuple[str, ...]:
        out: dict[str, None] = {}
        for engine in self.engines.values():
            out.update(dict.fromkeys(engine.metadata_fields))
        return tuple(out)

    @property
    def max_classes(self) -> int:
        return max(len(e.classes) for e in self.engines.values())

    @property
    def classes(self) -> list[str]:
        """Every model's classes, in model order (a caller that lists classes sees them all)."""
        out: dict[str, None] = {}
        for kind in self.photo_types:
            out.update(dict.fromkeys(self.engines[kind].classes))
        return list(out)

    @property
    def model_dir(self) -> Path:
        return self.root if self.root is not None else self.default_engine.model_dir

    @property
    def precision(self) -> str:
        return self.default_engine.precision

    @property
    def supports_cam(self) -> bool:
        return any(e.supports_cam for e in self.engines.values())

    @property
    def info(self) -> dict[str, Any]:
        """A model.json-like summary: ``version`` joins every model's version by kind."""
        versions = [f"{k}:{self.engines[k].info.get('version')}" for k in self.photo_types]
        return {"name": "+".join(self.engines[k].model_dir.name for k in self.photo_types),
                "version": " ".join(versions) if len(versions) > 1 else
                self.default_engine.info.get("version"), **self.describe()}

    def version_of(self, pred: Prediction) -> str | None:
        """The version of the model that answered ``pred`` (None when refused)."""
        for engine in self.engines.values():
            if engine.model_dir.name == pred.model:
                return engine.info.get("version")
        return None

    def describe(self) -> dict[str, Any]:
        """What is served: the router and each model with the kind it answers."""
        out: dict[str, Any] = {
            "routed": self.routed,
            "router": None if self.router is None else {
                "folder": self.router.folder.name, "precision": self.router.precision,
                "photo_types": self.router.photo_types,
                "refuse_threshold": self.router.refuse_threshold,
                "created": self.router.info.get("created")},
            "models": {kind: {"folder": e.model_dir.name, "name": e.info.get("name"),
                              "version": e.info.get("version"), "classes": list(e.classes)}
                       for kind, e in self.engines.items()},
        }
        return out

    # ---- prediction -------------------------------------------------------------------------
    def route(self, images: Sequence[np.ndarray],
              forced: Sequence[str | None] | None = None) -> list[Route]:
        """The kind of each photo: forced where the caller says so, else the router's; without
        a router, the one model's kind."""
        forced = list(forced) if forced is not None else [None] * len(images)
        if len(forced) != len(images):
            raise DataError(f"photo_type has {len(forced)} entries for {len(images)} images")
        kinds = [_check_kind(f, where="photo_type") for f in forced]
        routes: list[Route | None] = [None] * len(images)
        if self.router is not None and images:  # forced photos too: the skin-type estimate
            routes = list(self.router.classify(list(images)))
        only = self.photo_types[0]
        for i, kind in enumerate(kinds):
            if kind is not None:
                seen = routes[i]
                routes[i] = Route(kind, seen.probabilities if seen else {}, forced=True,
                                  looks_like=seen.looks_like if seen else [],
                                  skin_type=seen.skin_type if seen else None)
            elif routes[i] is None:  # one model served alone
                routes[i] = Route(only, {}, forced=False)
        return routes  # type: ignore[return-value]

    def predict(self, images: Sequence[np.ndarray],
                metadata: Sequence[dict | None] | None = None, *,
                photo_types: Sequence[str | None] | str | None = None, top_k: int = 3,
                cam: bool = False, strict: bool = True) -> list[Prediction]:
        """Route, then predict each photo with the model for its kind (see the module
        docstring). ``photo_types``: one kind for every photo, or one per photo (None or
        "auto" = let the router decide)."""
        images = list(images)
        metadata = list(metadata) if metadata is not None else [None] * len(images)
        if isinstance(photo_types, str) or photo_types is None:
            photo_types = [photo_types] * len(images)
        routes = self.route(images, photo_types)
        out: list[Prediction | None] = [None] * len(images)
        for kind in dict.fromkeys(r.photo_type for r in routes):
            idx = [i for i, r in enumerate(routes) if r.photo_type == kind]
            if kind == "not_skin":
                for i in idx:
                    out[i] = refusal(routes[i])
                continue
            engine = self.engines.get(kind) or self.engines.get("any")
            if engine is None:
                for i in idx:
                    out[i] = refusal(routes[i], reason="no_model")
                continue
            metas, notes = [], []
            for i in idx:
                meta, dropped = _for_engine(metadata[i], engine)
                metas.append(meta)
                notes.append(dropped)
            preds = engine.predict([images[i] for i in idx], metas, top_k=top_k,
                                   cam=cam and engine.supports_cam, strict=strict)
            for i, pred, dropped in zip(idx, preds, notes):
                _add_skin_type(pred, routes[i], kind, None if self.router is None
                               else self.router.skin_type_withheld)
                pred.photo_type = kind if kind in PHOTO_TYPES else None
                pred.model = engine.model_dir.name
                pred.model_id = engine.model_id
                pred.route = routes[i].to_dict()
                pred.warnings = dropped + pred.warnings
                out[i] = pred
        return out  # type: ignore[return-value]


def _add_skin_type(pred: Prediction, route: Route, kind: str, withheld: str | None) -> None:
    """Put the router's learned skin-type estimate into ``pred.skin_tone`` (``skin_type``
    1-6, and ``monk`` derived from it; ITA's Monk tone moves to ``monk_from_ita``), or say why
    there is none (``skin_type_reason``)."""
    tone = pred.skin_tone
    if tone is None:
        return
    tone.setdefault("monk_from_ita", tone.get("monk"))
    estimate = route.skin_type
    reason = None
    if estimate is None:
        reason = f"the learned skin-type estimate is {withheld}" if withheld else \
            "no learned skin-type estimate is installed (router without a skin-type head)"
    elif kind != "clinical":
        reason = ("the learned estimate is trained on clinical photos only; for dermoscopy "
                  "photos see ITA")
    elif tone.get("skin_fraction") is None or tone["skin_fraction"] < LOW_SKIN_FRACTION:
        reason = "too little clear skin is visible to estimate a skin type"
    if reason is not None:
        tone.update(skin_type=None, skin_type_expected=None, skin_type_reason=reason)
        return
    tone.update(skin_type=estimate["fitzpatrick"], skin_type_expected=estimate["expected"],
                skin_type_reason=None, monk=estimate["monk"])


def _for_engine(meta: dict | None, engine: Engine) -> tuple[dict | None, list[str]]:
    """The metadata fields ``engine`` knows; a note for each field it does not use."""
    if not meta:
        return meta, []
    known = set(engine.metadata_fields)
    kept = {k: v for k, v in meta.items() if k in known}
    dropped = [k for k in meta if k not in known]
    notes = [f"metadata field '{k}' is not used by the {engine.model_dir.name} model"
             for k in dropped]
    return (kept or None), notes
