"""Grad-CAM for the multimodal model, and how well it points at the lesion.

- :class:`ImageOnly` wraps a ``DermNet``-like model (``forward(image, meta) -> {"diagnosis"}``)
  so ``pytorch_grad_cam`` sees one input: the metadata of the current batch is bound in the
  wrapper (:meth:`ImageOnly.bind`).
- :func:`cam_target_layer` picks the last convolutional block of the timm backbone
  (``blocks[-1]`` for EfficientNet / MobileNet, ``stages[-1]`` for ConvNeXt-like, ``layer4`` for
  ResNets, else the last ``Conv2d``).
- :func:`grad_cam` returns one heat map per image, (n, H, W) in [0, 1] at the input size.
- :func:`pointing_game` / :func:`energy_in_mask`: localisation scores against lesion masks
  (pure numpy). A pointing-game *hit* is an image whose CAM maximum lies inside the mask (no
  tolerance margin); the energy is the share of the CAM's sum inside the mask.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class ImageOnly(nn.Module):
    """``image -> diagnosis logits`` of a multimodal model, with the metadata bound."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.meta: torch.Tensor | None = None

    def bind(self, meta: torch.Tensor | None) -> ImageOnly:
        """Use ``meta`` ([B, M], or None / [B, 0] for none) for the next forward pass."""
        self.meta = meta if meta is not None and meta.shape[-1] else None
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        meta = self.meta
        if meta is not None and len(meta) != len(image):
            raise ValueError(f"bound metadata has {len(meta)} rows for {len(image)} images")
        return self.model(image, meta)["diagnosis"]


def cam_target_layer(model: nn.Module) -> nn.Module:
    """The last convolutional block of ``model.backbone`` (or of ``model`` itself)."""
    net = getattr(model, "backbone", model)
    for name in ("blocks", "stages", "layer4", "features"):
        part = getattr(net, name, None)
        if part is None:
            continue
        if isinstance(part, (nn.Sequential, nn.ModuleList)) and len(part):
            return part[-1]
        if isinstance(part, nn.Module):
            return part
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(net).__name__} has no convolutional layer for Grad-CAM")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor, meta: torch.Tensor | None,
             targets, *, target_layer: nn.Module | None = None,
             batch_size: int = 16) -> np.ndarray:
    """Grad-CAM heat maps (n, H, W) in [0, 1] of class ``targets`` (n,) for ``images``
    [n, 3, H, W] (+ ``meta`` [n, M] or None), with ``pytorch_grad_cam.GradCAM``."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [int(t) for t in np.asarray(targets).reshape(-1)]
    if len(targets) != len(images):
        raise ValueError(f"targets has {len(targets)} entries for {len(images)} images")
    wrapper = ImageOnly(model).eval()
    layer = target_layer if target_layer is not None else cam_target_layer(model)
    grads = {p: p.requires_grad for p in model.parameters()}
    out = []
    try:
        for p in model.parameters():  # gradients must flow to the target layer's activations
            p.requires_grad_(True)
        with GradCAM(model=wrapper, target_layers=[layer]) as cam, torch.enable_grad():
            for s in range(0, len(images), batch_size):
                sl = slice(s, s + batch_size)
                wrapper.bind(meta[sl] if meta is not None else None)
                maps = cam(input_tensor=images[sl],
                           targets=[ClassifierOutputTarget(t) for t in targets[sl]])
                out.append(np.asarray(maps, np.float32))
    finally:
        for p, flag in grads.items():
            p.requires_grad_(flag)
        model.zero_grad(set_to_none=True)
    if not out:
        h, w = images.shape[-2:]
        return np.zeros((0, h, w), np.float32)
    return np.concatenate(out)


def _check(cam, mask) -> tuple[np.ndarray, np.ndarray]:
    cam = np.asarray(cam, np.float64)
    mask = np.asarray(mask).astype(bool)
    if cam.shape != mask.shape or cam.ndim != 2:
        raise ValueError(f"cam and mask must be 2-D arrays of one shape; got {cam.shape} and "
                         f"{mask.shape}")
    return cam, mask


def pointing_hit(cam, mask) -> bool:
    """True when the maximum of ``cam`` (H, W) lies inside ``mask`` (H, W) (ties: any maximum
    inside counts)."""
    cam, mask = _check(cam, mask)
    peak = cam >= cam.max() - 1e-12 * max(1.0, abs(cam.max()))
    return bool((peak & mask).any())


def energy_share(cam, mask) -> float:
    """Share of the (non-negative) CAM mass inside ``mask``; NaN for an all-zero CAM."""
    cam, mask = _check(cam, mask)
    cam = np.clip(cam, 0, None)
    total = cam.sum()
    return float(cam[mask].sum() / total) if total > 0 else float("nan")


def pointing_game(cams, masks) -> float:
    """Hit rate of :func:`pointing_hit` over (n, H, W) CAMs and masks; NaN when n = 0."""
    hits = [pointing_hit(c, m) for c, m in zip(cams, masks)]
    return float(np.mean(hits)) if hits else float("nan")


def energy_in_mask(cams, masks) -> float:
    """Mean :func:`energy_share` over (n, H, W) CAMs and masks (NaN CAMs skipped)."""
    vals = np.array([energy_share(c, m) for c, m in zip(cams, masks)], np.float64)
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if len(vals) else float("nan")


def overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``rgb`` uint8 (H, W, 3) with ``cam`` (H, W, [0, 1]) as a jet heat map on top, uint8."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    return show_cam_on_image(rgb.astype(np.float32) / 255.0, cam.astype(np.float32),
                             use_rgb=True, image_weight=1.0 - alpha)
