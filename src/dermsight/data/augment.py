"""Training augmentation (albumentations), built from the small pydantic ``AugmentConfig``.

Order: random-resized crop to the model input size (so everything after runs on a small image),
horizontal / vertical flip, a turn by a multiple of 90° (square inputs, optional), rotation +
scale (reflect-padded), colour jitter. The result is RGB uint8;
:class:`~dermsight.data.preprocess.Preprocess` is applied afterwards (with the default
``crop_pct=1`` it only normalises the already input-sized image).

Colour jitter changes apparent skin tone: keep ``saturation`` and ``hue`` small (defaults 0.1
and 0.02) so augmentation does not blur the tone buckets the fairness audit reports on.

albumentations (which imports torch) is imported only by :func:`build_train_augment`.
``AugmentConfig`` is part of the configuration schema (:mod:`dermsight.config`), which this module
reads and never the other way round.

Seeding: :class:`TrainAugment` wraps ``albumentations.Compose(seed=...)``;
``set_random_seed(seed)`` re-seeds it, and ``ManifestDataset`` does so for every item from
(seed, epoch, index), so results do not depend on the number of DataLoader workers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from pydantic import BaseModel

from dermsight.config import AugmentConfig


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
