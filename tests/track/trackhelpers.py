"""Helpers for the tracking tests (imported as ``trackhelpers``: tests/track is on sys.path)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def photo_bytes(seed: int, size: tuple[int, int] = (96, 128), fmt: str = "JPEG",
                exif: Image.Exif | None = None) -> bytes:
    """A small skin-coloured photo with a dark central blob; different for every seed."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.empty((h, w, 3), np.float32)
    img[...] = np.array([205, 160, 135]) + rng.normal(0, 6, 3)
    yy, xx = np.mgrid[0:h, 0:w]
    r = 0.15 + 0.1 * rng.random()
    blob = ((yy - h / 2) / (r * h)) ** 2 + ((xx - w / 2) / (r * w)) ** 2 <= 1
    img[blob] = np.array([110, 70, 55]) + rng.normal(0, 4, 3)
    img += rng.normal(0, 5, img.shape)
    rgb = np.clip(img, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif is not None else {}
    Image.fromarray(rgb).save(buf, format=fmt, quality=92, **kwargs)
    return buf.getvalue()


def stored_files(tracker) -> list:
    return [u for u, _ in tracker.store.list()]
