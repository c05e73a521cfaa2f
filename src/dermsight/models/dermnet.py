"""DermNet: colour calibration → pretrained backbone → (metadata fusion) → task heads.

Surface as in timm: ``forward_features`` (pooled ``[B, F]``), ``forward_head``, ``forward``,
``reset_classifier`` and ``data_config`` (the preprocessing the weights expect). Heads:

* ``"diagnosis"``: logits ``[B, num_classes]`` from the fused vector (use with hard or soft
  targets, e.g. ``F.cross_entropy(logits, probs)``);
* ``"lighting"``: one logit ``[B]`` per image, 1 = poor photo; from the image features only.

Training in phases: ``parameter_groups()`` names ``heads``, ``color``, ``backbone_top`` and
``backbone_rest``; ``set_trainable`` freezes everything outside the chosen groups and keeps
frozen BatchNorm layers in eval mode, so their running statistics do not move.
"""

from __future__ import annotations

import math
from typing import Any

from timm.models import group_parameters
from torch import Tensor, nn

from dermsight.errors import ConfigError
from dermsight.models.backbones import create_backbone, pretrained_cfg
from dermsight.models.color import ColorCalibration
from dermsight.models.fusion import create_fusion

__all__ = ["DermNet", "PARAMETER_GROUPS"]

PARAMETER_GROUPS = ("heads", "color", "backbone_top", "backbone_rest")


class DermNet(nn.Module):
    """Multimodal, multitask skin-lesion classifier.

    Args:
        backbone: timm name (``list_backbones()``), e.g. ``"efficientnet_lite0"``.
        num_classes: diagnosis classes.
        meta_dim: width of the encoded metadata vector; 0 = image only (fusion ignored).
        fusion: ``"concat"``, ``"gated"`` or ``"none"`` (see ``dermsight.models.fusion``).
        color_calibration: learn a 3×3 colour matrix + bias in front of the backbone.
        pretrained: ``True`` (local weights), ``False``, a checkpoint path, or ``"hub"``.
        drop_rate: dropout before the heads and inside the metadata encoder.
        meta_hidden: width of the encoded metadata.
        lighting_head: add the photo-quality ("lighting") head.
        input_size: override ``data_config["input_size"]`` (int or (H, W)).
        meta_dropout: training-time probability of hiding a sample's metadata, which teaches
            the learned "no metadata" embedding used for ``meta=None``.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        *,
        meta_dim: int = 0,
        fusion: str = "concat",
        color_calibration: bool = True,
        pretrained: bool | str = True,
        drop_rate: float = 0.2,
        meta_hidden: int = 64,
        lighting_head: bool = True,
        input_size: int | tuple[int, int] | None = None,
        meta_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        self.backbone_name, self.num_classes, self.meta_dim = backbone, num_classes, meta_dim
        self.color = ColorCalibration() if color_calibration else None
        self.backbone = create_backbone(backbone, pretrained=pretrained)
        self.num_features: int = self.backbone.num_features
        kind = fusion if meta_dim > 0 else "none"
        fusion_kwargs = dict(hidden=meta_hidden, dropout=drop_rate, meta_dropout=meta_dropout)
        self.fusion = create_fusion(
            kind, self.num_features, meta_dim, **(fusion_kwargs if kind != "none" else {})
        )
        self.head_drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(self.fusion.out_dim, num_classes)
        self.lighting = nn.Linear(self.num_features, 1) if lighting_head else None
        self.data_config = self._data_config(pretrained, input_size)

    def _data_config(self, pretrained: bool | str, input_size: Any) -> dict[str, Any]:
        cfg = pretrained_cfg(self.backbone_name, pretrained)
        if input_size is not None:
            h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
            cfg["input_size"] = (3, int(h), int(w))
        return cfg

    # ---- forward -----------------------------------------------------------------------------
    def forward_features(self, image: Tensor) -> Tensor:
        """``[B, 3, H, W]`` normalised images -> pooled backbone features ``[B, F]``."""
        if self.color is not None:
            image = self.color(image)
        return self.backbone(image)

    def forward_head(
        self, features: Tensor, meta: Tensor | None = None, pre_logits: bool = False
    ) -> dict[str, Tensor] | Tensor:
        """``[B, F]`` features (+ ``[B, meta_dim]`` metadata) -> ``{"diagnosis": [B, C],
        "lighting": [B]}`` logits; ``pre_logits=True``: the fused vector ``[B, fusion.out_dim]``."""
        fused = self.fusion(features, meta)
        if pre_logits:
            return fused
        out = {"diagnosis": self.classifier(self.head_drop(fused))}
        if self.lighting is not None:
            out["lighting"] = self.lighting(self.head_drop(features)).squeeze(1)
        return out

    def forward(self, image: Tensor, meta: Tensor | None = None) -> dict[str, Tensor]:
        return self.forward_head(self.forward_features(image), meta)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the diagnosis classifier with a fresh one for ``num_classes`` classes."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.fusion.out_dim, num_classes)

    # ---- phases ------------------------------------------------------------------------------
    def backbone_top_names(self, top_fraction: float = 0.3) -> set[str]:
        """Backbone parameter names in the last ``ceil(top_fraction × blocks)`` blocks, plus the
        final conv/norm head (timm groups it with the last block)."""
        if not 0.0 <= top_fraction <= 1.0:
            raise ConfigError(f"top_fraction must be in [0, 1], got {top_fraction}")
        groups = list(group_parameters(self.backbone, self.backbone.group_matcher()).values())
        blocks = groups[1:]  # groups[0] is the stem
        n_top = max(1, math.ceil(top_fraction * len(blocks)))
        return {name for group in blocks[-n_top:] for name in group}

    def parameter_groups(self, top_fraction: float = 0.3) -> dict[str, list[nn.Parameter]]:
        """Parameters by group: ``heads`` (classifier, lighting, fusion incl. metadata encoder),
        ``color``, ``backbone_top`` and ``backbone_rest``; every parameter is in exactly one."""
        top = self.backbone_top_names(top_fraction)
        groups: dict[str, list[nn.Parameter]] = {g: [] for g in PARAMETER_GROUPS}
        for name, param in self.backbone.named_parameters():
            groups["backbone_top" if name in top else "backbone_rest"].append(param)
        groups["color"] = list(self.color.parameters()) if self.color is not None else []
        for module in (self.fusion, self.classifier, self.lighting):
            if module is not None:
                groups["heads"] += list(module.parameters())
        return groups

    def set_trainable(self, groups: set[str] | list[str], top_fraction: float = 0.3) -> None:
        """Train only ``groups`` (names from ``PARAMETER_GROUPS``); freeze the rest.

        Frozen BatchNorm layers stay in eval mode (also after later ``train()`` calls)."""
        unknown = set(groups) - set(PARAMETER_GROUPS)
        if unknown:
            raise ConfigError(
                f"unknown parameter groups {sorted(unknown)}; known: {PARAMETER_GROUPS}"
            )
        for name, params in self.parameter_groups(top_fraction).items():
            for param in params:
                param.requires_grad_(name in groups)
        self.train(self.training)

    def train(self, mode: bool = True) -> DermNet:
        """As ``nn.Module.train``, but BatchNorm layers whose parameters are all frozen stay
        in eval mode, so their running statistics do not move."""
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters(recurse=False))
                    if params and not any(p.requires_grad for p in params):
                        module.eval()
        return self
