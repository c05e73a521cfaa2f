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


def spot_rgb(skin, lesion, radius: float = 0.2, gain: float = 1.0,
             shift: tuple[float, float] = (0.0, 0.0), seed: int = 0,
             size: tuple[int, int] = (192, 256)) -> np.ndarray:
    """A photo of one round spot: ``skin`` and ``lesion`` RGB colours, the spot's radius as a
    share of the frame, an exposure ``gain``, the spot's ``shift`` from the centre (shares of
    the frame); smooth skin texture and sensor noise seeded by ``seed``."""
    import cv2

    rng = np.random.default_rng(seed)
    h, w = size
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3) * 25
    img = np.asarray(skin, np.float32) + tex[..., None] * np.array([1, .8, .7], np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + shift[1] * h, w / 2 + shift[0] * w
    r = np.sqrt(((yy - cy) / (radius * h)) ** 2 + ((xx - cx) / (radius * w * 0.8)) ** 2)
    edge = np.clip((1.15 - r) / 0.3, 0, 1)[..., None]
    img = img * (1 - edge) + np.asarray(lesion, np.float32) * edge
    img = img * gain + rng.normal(0, 3, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


#: one mole photographed three times, a little larger and darker each time, in other light
SAME_SPOT = [dict(skin=(225, 180, 160), lesion=(120, 75, 55), radius=0.20, seed=1),
             dict(skin=(225, 180, 160), lesion=(115, 72, 52), radius=0.22, gain=1.06,
                  shift=(0.02, -0.01), seed=2),
             dict(skin=(225, 180, 160), lesion=(110, 68, 50), radius=0.24, gain=0.95,
                  shift=(-0.02, 0.02), seed=3)]
#: three people's spots: a small dark mole on pale skin, a pink patch on dark skin, a red
#: spot on medium skin
OTHER_SPOTS = [dict(skin=(235, 200, 180), lesion=(95, 60, 45), radius=0.15, seed=4),
               dict(skin=(120, 80, 60), lesion=(200, 90, 95), radius=0.28, seed=5),
               dict(skin=(200, 140, 110), lesion=(150, 40, 50), radius=0.22, seed=6)]


def spot_bytes(**kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(spot_rgb(**kwargs)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()
