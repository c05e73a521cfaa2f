"""Training augmentation (albumentations), built from the small pydantic ``AugmentConfig``.

Order: random-resized crop to the model input size (so everything after runs on a small image),
horizontal / vertical flip, a turn by a multiple of 90° (square inputs, optional), rotation +
scale (reflect-padded), colour jitter. The result is RGB uint8;
:class:`~dermsight.data.preprocess.Preprocess` is applied afterwards (with the default
``crop_pct=1`` it only normalises the already input-sized image).

Colour jitter changes apparent skin tone: keep ``saturation`` and ``hue`` small (defaults 0.1
and 0.02) so augmentation does not blur the tone buckets the fairness audit reports on.

albumentations (which imports torch) is imported only by :func:`build_train_augment`, so
``AugmentConfig`` can be imported by the config schema at no cost.

Seeding: :class:`TrainAugment` wraps ``albumentations.Compose(seed=...)``;
``set_random_seed(seed)`` re-seeds it, and ``ManifestDataset`` does so for every item from
(seed, epoch, index), so results do not depend on the number of DataLoader workers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class AugmentConfig(BaseModel):
    """Training augmentation. ``AugmentConfig.eval()`` (``enabled: false``) = no augmentation."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: no augmentation at all (evaluation)")
    hflip: float = Field(0.5, ge=0, le=1, description="probability of a horizontal flip")
    vflip: float = Field(0.5, ge=0, le=1, description="probability of a vertical flip")
    rotate90: float = Field(
        0.0, ge=0, le=1, description="probability of a rotation by 90, 180 or 270 degrees "
        "(square inputs only); 1 with the flips draws every orientation equally often")
    rotate_limit: float = Field(
        20.0, ge=0, le=180, description="rotation drawn uniformly in ±rotate_limit degrees")
    scale: tuple[float, float] = Field(
        (0.9, 1.1), description="zoom factor range of the rotate/scale step")
    affine_p: float = Field(0.5, ge=0, le=1, description="probability of the rotate/scale step")
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0), description="random-resized-crop area range (share of the image)")
    crop_ratio: tuple[float, float] = Field(
        (0.75, 4 / 3), description="random-resized-crop aspect-ratio range (w/h)")
    brightness: float = Field(0.2, ge=0, le=1, description="colour jitter: brightness ±")
    contrast: float = Field(0.2, ge=0, le=1, description="colour jitter: contrast ±")
    saturation: float = Field(0.1, ge=0, le=1, description="colour jitter: saturation ±")
    hue: float = Field(0.02, ge=0, le=0.5, description="colour jitter: hue ± (share of a turn)")
    color_p: float = Field(0.8, ge=0, le=1, description="probability of the colour jitter")

    @model_validator(mode="after")
    def _ranges(self) -> AugmentConfig:
        for name in ("scale", "crop_scale", "crop_ratio"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if self.crop_scale[1] > 1:
            raise ValueError(f"crop_scale must be within (0, 1], got {self.crop_scale}")
        return self

    @classmethod
    def eval(cls) -> AugmentConfig:  # noqa: A003 (the evaluation preset)
        """No augmentation."""
        return cls(enabled=False)


class TrainAugment:
    """RGB uint8 (h, w, 3) → augmented RGB uint8; ``set_random_seed`` makes it reproducible."""

    def __init__(self, compose: Any | None):
        self.compose = compose

    def set_random_seed(self, seed: int | None) -> None:
        if self.compose is not None:
            self.compose.set_random_seed(seed)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.compose is None:
            return rgb
        return self.compose(image=rgb)["image"]

    def __repr__(self) -> str:
        return f"TrainAugment({self.compose!r})"


def as_augment_config(cfg: AugmentConfig | BaseModel | dict | None) -> AugmentConfig:
    """``cfg`` as an :class:`AugmentConfig`: None → defaults; a dict or another pydantic model
    with a subset of the fields (e.g. the run config's ``data.augment``) is validated as one."""
    if cfg is None:
        return AugmentConfig()
    if isinstance(cfg, AugmentConfig):
        return cfg
    if isinstance(cfg, BaseModel):
        cfg = cfg.model_dump()
    return AugmentConfig.model_validate(cfg)


def build_train_augment(cfg: AugmentConfig | BaseModel | dict | None,
                        input_size: tuple[int, int], *, seed: int | None = None) -> TrainAugment:
    """The training augmentation for a model input of ``input_size`` ``(H, W)``.

    ``cfg`` goes through :func:`as_augment_config`. With ``enabled`` false it is the identity
    (the image is returned unchanged).
    """
    cfg = as_augment_config(cfg)
    if not cfg.enabled:
        return TrainAugment(None)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network version check
    import albumentations as A
    import cv2

    h, w = (int(s) for s in input_size)
    steps = [
        A.RandomResizedCrop(size=(h, w), scale=tuple(cfg.crop_scale), ratio=tuple(cfg.crop_ratio),
                            area_for_downscale="image", p=1.0),
        A.HorizontalFlip(p=cfg.hflip),
        A.VerticalFlip(p=cfg.vflip),
    ]
    if cfg.rotate90 > 0:
        if h != w:
            raise ValueError(f"augment.rotate90 needs a square input size, got {(h, w)}")
        steps.append(A.RandomRotate90(p=cfg.rotate90))
    if cfg.affine_p > 0 and (cfg.rotate_limit > 0 or tuple(cfg.scale) != (1.0, 1.0)):
        steps.append(A.Affine(scale=tuple(cfg.scale), rotate=(-cfg.rotate_limit, cfg.rotate_limit),
                              border_mode=cv2.BORDER_REFLECT_101, p=cfg.affine_p))
    if cfg.color_p > 0 and max(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue) > 0:
        steps.append(A.ColorJitter(brightness=cfg.brightness, contrast=cfg.contrast,
                                   saturation=cfg.saturation, hue=cfg.hue, p=cfg.color_p))
    return TrainAugment(A.Compose(steps, seed=seed))
