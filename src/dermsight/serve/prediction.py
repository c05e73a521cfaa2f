"""What the engine answers for one photo: :class:`Prediction` and its JSON form."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Prediction:
    """One image's result (see the module docstring)."""

    probabilities: dict[str, float]
    top_k: list[tuple[str, float]]
    conformal_set: list[str]
    conformal_text: str
    conformal_coverage: float | None
    lighting: dict
    skin_tone: dict
    embedding: np.ndarray
    cam: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    #: the kind of photo (see :mod:`dermsight.phototype`), the model folder that answered
    #: (None when refused), the router's decision, and for a refused photo the message
    photo_type: str | None = None
    model: str | None = None
    route: dict | None = None
    refused: bool = False
    message: str | None = None
    #: identity of the answering model's weights (embeddings of different models differ)
    model_id: str | None = None
    #: the coarser levels of the diagnosis (model.json's ``hierarchy``): level → [(group, p)],
    #: most probable first, and one sentence that answers at the level the model is sure of
    groups: dict[str, list[tuple[str, float]]] | None = None
    summary: str | None = None

    def to_dict(self, *, embedding: bool = False, cam: bool = False) -> dict:
        """JSON-safe dict; the embedding (list of floats) and the CAM (nested lists) only when
        asked for."""
        out = {
            "photo_type": self.photo_type,
            "model": self.model,
            "refused": self.refused,
            "message": self.message,
            "model_id": self.model_id,
            "route": _json_safe(self.route) if self.route is not None else None,
            "summary": self.summary,
            "groups": None if self.groups is None else {
                level: [{"label": g, "probability": float(p)} for g, p in ranked]
                for level, ranked in self.groups.items()},
            "probabilities": {k: float(v) for k, v in self.probabilities.items()},
            "top_k": [{"label": c, "probability": float(p)} for c, p in self.top_k],
            "conformal_set": list(self.conformal_set),
            "conformal_text": self.conformal_text,
            "conformal_coverage": self.conformal_coverage,
            "lighting": _json_safe(self.lighting),
            "skin_tone": _json_safe(self.skin_tone),
            "warnings": list(self.warnings),
        }
        if embedding:
            out["embedding"] = [float(v) for v in self.embedding]
        if cam and self.cam is not None:
            out["cam"] = np.round(self.cam, 4).tolist()
        return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
