"""Open, validate and measure one image: the unit of work `prepare` runs in parallel.

``measure_image`` never raises for a bad image: it returns ``{"ok": False, "reason": ...}`` so
one bad file never stops a run. Results are small dicts (no pixels), so memory stays bounded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermsight.features.quality import QualityThresholds, assess_quality, compute_quality
from dermsight.features.skintone import compute_skin_tone
from dermsight.io import read_bytes


@dataclass(frozen=True)
class MeasureSettings:
    min_side: int
    max_pixels: int
    feature_size: int
    quality: QualityThresholds


class ImageRejected(Exception):
    """The image cannot be used; the message is the audit's reason."""


def decode_image(data: bytes, *, max_pixels: int, min_side: int = 1,
                 draft_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode image bytes fully to RGB uint8 (H, W, 3), applying EXIF orientation.

    Returns the pixels and the upright full-resolution (width, height), before any draft
    reduction.

    Raises ImageRejected with a reason a person understands (empty, not an image, truncated,
    too large, too small). ``draft_size`` lets JPEG decoding skip resolution that would be
    thrown away (the whole stream is still decoded, so truncation is still caught).
    """
    if not data:
        raise ImageRejected("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageRejected(f"too large ({w}x{h} > {max_pixels} pixels)")
            if min(w, h) < min_side:
                raise ImageRejected(f"too small ({w}x{h}, shorter side < {min_side} px)")
            if draft_size and img.format == "JPEG" and max(w, h) >= 2 * draft_size:
                img.draft("RGB", (draft_size, draft_size))
            img.load()
            drafted = img.size
            img = ImageOps.exif_transpose(img)
            if img.size != drafted:  # rotated by EXIF orientation: report upright size
                w, h = h, w
            rgb = np.asarray(img.convert("RGB"))
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not a readable image") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected(f"too large ({exc})") from None
    except OSError as exc:
        text = str(exc)
        reason = "truncated" if "truncated" in text else "corrupt"
        raise ImageRejected(f"{reason} ({text})") from None
    except (ValueError, SyntaxError) as exc:
        raise ImageRejected(f"corrupt ({exc})") from None
    return rgb, (w, h)


def downscale(rgb: np.ndarray, long_side: int) -> np.ndarray:
    """Shrink so the long side is at most ``long_side`` (never enlarges)."""
    h, w = rgb.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _load_mask(uri: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A lesion mask resized to ``shape`` (threshold 128), or None when it cannot be read."""
    try:
        data = read_bytes(uri)
        mask = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
    except (OSError, UnidentifiedImageError, ValueError):
        return None
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return mask >= 128


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
    mask = _load_mask(mask_uri, work.shape[:2]) if mask_uri else None
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
