"""Models: ``create_model("dermnet", backbone=..., num_classes=...)`` and friends.

Import is light: torch and timm load only when a model or backbone is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

from dermsight.errors import ConfigError

__all__ = [
    "ColorCalibration", "DermNet", "create_backbone", "create_fusion", "create_model",
    "get_model", "list_backbones", "list_models", "pretrained_cfg",
]

# name -> "module:attribute", imported on first use
_MODELS: dict[str, str] = {"dermnet": "dermsight.models.dermnet:DermNet"}
_LAZY: dict[str, str] = {
    "DermNet": "dermsight.models.dermnet",
    "ColorCalibration": "dermsight.models.color",
    "create_fusion": "dermsight.models.fusion",
    "create_backbone": "dermsight.models.backbones",
    "list_backbones": "dermsight.models.backbones",
    "pretrained_cfg": "dermsight.models.backbones",
}


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_model(name: str) -> type:
    try:
        module, attr = _MODELS[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown model '{name}'; known: {list_models()}") from None
    return getattr(importlib.import_module(module), attr)


def create_model(name: str = "dermnet", **kwargs: Any) -> Any:
    """Build the model registered as ``name`` (e.g. ``backbone=``, ``num_classes=``)."""
    return get_model(name)(**kwargs)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dermsight.models' has no attribute '{name}'")
