"""The one image preprocessing, shared by training, evaluation, export and serving.

numpy + OpenCV only: serving runs without torch, so this module must never import it.

Steps (:meth:`Preprocess.__call__`):

1. resize, keeping the aspect ratio, so the image just covers ``input_size / crop_pct``
   (``floor`` per side, as timm does);
2. centre-crop to ``input_size``;
3. scale to [0, 1] and normalise per channel: ``(x / 255 - mean) / std``;
4. return channels first, float32 ``(3, H, W)``.

``interpolation="area"`` uses ``cv2.INTER_AREA`` when shrinking and ``cv2.INTER_LINEAR`` when
enlarging; ``"bilinear"`` and ``"bicubic"`` use ``INTER_LINEAR`` / ``INTER_CUBIC`` throughout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("area", "bilinear", "bicubic")


@dataclass(frozen=True)
class Preprocess:
    """Resize-to-cover, centre crop, normalise.

    Args:
        input_size: model input ``(height, width)`` in pixels.
        mean: per-channel (R, G, B) mean on the 0-1 scale.
        std: per-channel (R, G, B) standard deviation on the 0-1 scale (all > 0).
        crop_pct: share of the resized image kept by the centre crop, in (0, 1].
        interpolation: ``"area"`` (default), ``"bilinear"`` or ``"bicubic"``.

    Raises:
        ValueError: any argument out of range (the message names it).
    """

    input_size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 1.0
    interpolation: str = "area"

    def __post_init__(self) -> None:
        try:
            size = tuple(int(s) for s in self.input_size)
            exact = all(s == float(v) for s, v in zip(size, self.input_size, strict=True))
        except (TypeError, ValueError):
            size, exact = (), False
        if len(size) != 2 or min(size) < 1 or not exact:
            raise ValueError(f"input_size must be two positive ints (H, W), got {self.input_size}")
        mean = tuple(float(m) for m in self.mean)
        std = tuple(float(s) for s in self.std)
        if len(mean) != 3:
            raise ValueError(f"mean must have 3 values (R, G, B), got {self.mean}")
        if len(std) != 3 or min(std) <= 0:
            raise ValueError(f"std must have 3 positive values (R, G, B), got {self.std}")
        if not 0.0 < float(self.crop_pct) <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, "
                             f"got {self.interpolation!r}")
        # normalise types (lists from JSON / YAML → tuples) on the frozen instance
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "crop_pct", float(self.crop_pct))

    # ---- geometry ---------------------------------------------------------------------------
    @property
    def cover_size(self) -> tuple[int, int]:
        """``(H, W)`` the image is resized to cover before the centre crop."""
        h, w = self.input_size
        return max(h, math.floor(h / self.crop_pct)), max(w, math.floor(w / self.crop_pct))

    def resize_crop(self, rgb: np.ndarray) -> np.ndarray:
        """Steps 1-2: RGB uint8 (h, w, 3) → RGB uint8 ``(H, W, 3)`` (``input_size``)."""
        _check_rgb(rgb)
        h, w = rgb.shape[:2]
        ch, cw = self.cover_size
        scale = max(ch / h, cw / w)
        nh, nw = max(ch, round(h * scale)), max(cw, round(w * scale))
        if (nh, nw) != (h, w):
            if self.interpolation == "area":
                flag = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            elif self.interpolation == "bilinear":
                flag = cv2.INTER_LINEAR
            else:
                flag = cv2.INTER_CUBIC
            rgb = cv2.resize(rgb, (nw, nh), interpolation=flag)
        th, tw = self.input_size
        top, left = (nh - th) // 2, (nw - tw) // 2
        return np.ascontiguousarray(rgb[top:top + th, left:left + tw])

    def normalize(self, rgb: np.ndarray) -> np.ndarray:
        """Steps 3-4: RGB uint8 (h, w, 3) → float32 (3, h, w), ``(x / 255 - mean) / std``."""
        _check_rgb(rgb)
        x = rgb.astype(np.float32) / np.float32(255.0)
        x -= np.asarray(self.mean, np.float32)
        x /= np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """RGB uint8 (h, w, 3), any size → float32 ``(3, H, W)`` model input."""
        return self.normalize(self.resize_crop(rgb))

    def batch(self, images: list[np.ndarray]) -> np.ndarray:
        """A list of RGB uint8 images (any sizes) → float32 ``(N, 3, H, W)``."""
        h, w = self.input_size
        if len(images) == 0:
            return np.zeros((0, 3, h, w), np.float32)
        return np.stack([self(img) for img in images])

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`normalize` (for figures): float (3, H, W) → RGB uint8 (H, W, 3)."""
        x = np.asarray(x, np.float32).transpose(1, 2, 0)
        x = x * np.asarray(self.std, np.float32) + np.asarray(self.mean, np.float32)
        return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)

    # ---- storage ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-serialisable form (lists, floats, str), for the model folder."""
        out = asdict(self)
        out["input_size"] = list(self.input_size)
        out["mean"] = list(self.mean)
        out["std"] = list(self.std)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        """Inverse of :meth:`to_dict`. Unknown keys are an error (ValueError naming them)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Preprocess: unknown key(s) {unknown}; expected {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_timm(cls, data_config: dict) -> Preprocess:
        """From timm's ``resolve_data_config(model=...)`` dict (timm itself is not imported).

        ``input_size`` is timm's ``(C, H, W)``; timm's ``"bicubic"``/``"bilinear"`` are kept,
        anything else becomes ``"bilinear"``.
        """
        size = tuple(data_config["input_size"])[-2:]
        interp = data_config.get("interpolation", "bilinear")
        return cls(input_size=size, mean=tuple(data_config.get("mean", IMAGENET_MEAN)),
                   std=tuple(data_config.get("std", IMAGENET_STD)),
                   crop_pct=float(data_config.get("crop_pct", 1.0)),
                   interpolation=interp if interp in INTERPOLATIONS else "bilinear")


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 \
            or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {got}")
