"""Open, validate and measure one image: the unit of work `prepare` runs in parallel.

``measure_image`` never raises for a bad image: it returns ``{"ok": False, "reason": ...}`` so
one bad file never stops a run. Results are small dicts (no pixels), so memory stays bounded.
Decoding is :mod:`dermsight.imaging`'s, as everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
from PIL import Image

from dermsight.features.quality import QualityThresholds, assess_quality, compute_quality
from dermsight.features.skintone import compute_skin_tone
from dermsight.imaging import ImageRejected, decode_image, downscale, load_mask
from dermsight.io import read_bytes


@dataclass(frozen=True)
class MeasureSettings:
    min_side: int
    max_pixels: int
    feature_size: int
    quality: QualityThresholds


THUMB_SIZE = 16


def thumbnail(rgb: np.ndarray) -> bytes:
    """16×16 RGB thumbnail (area-averaged), 768 bytes: the near-duplicate check compares these."""
    small = cv2.resize(rgb, (THUMB_SIZE, THUMB_SIZE), interpolation=cv2.INTER_AREA)
    return small.tobytes()


def measure_image(uri: str, mask_uri: str | None, settings: MeasureSettings) -> dict:
    """Read, decode and measure one image. Returns a flat dict; ``ok`` says if it is usable."""
    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        return {"ok": False, "reason": "missing (file not found)"}
    except OSError as exc:
        return {"ok": False, "reason": f"unreadable ({exc})"}
    try:
        rgb, (width, height) = decode_image(
            data, max_pixels=settings.max_pixels, min_side=settings.min_side,
            draft_size=settings.feature_size)
    except ImageRejected as exc:
        return {"ok": False, "reason": str(exc)}
    del data
    work = downscale(rgb, settings.feature_size)
    mask = load_mask(mask_uri, work.shape[:2]) if mask_uri else None
    try:
        quality = compute_quality(work)
        tone = compute_skin_tone(work, mask)
    except ValueError as exc:  # e.g. smaller than the features need: exclude, never crash
        return {"ok": False, "reason": f"cannot measure ({exc})"}
    lighting_ok, tips = assess_quality(quality, settings.quality)
    return {
        "ok": True,
        "width": width,
        "height": height,
        "phash": str(imagehash.phash(Image.fromarray(work))),
        "thumb": thumbnail(work),
        **tone,
        **quality,
        "lighting_ok": bool(lighting_ok),
        "tips": list(tips),
    }
