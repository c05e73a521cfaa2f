"""A Grad-CAM overlay on the photo, back to PNG bytes. No torch.

Decoding is :mod:`dermsight.imaging`'s (:func:`~dermsight.imaging.decode_rgb`), shared by every
stage.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


def cam_overlay(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``rgb`` uint8 (H, W, 3) with ``cam`` ([0, 1], any size; resized to the image) drawn on
    top as a jet heat map (``alpha`` = weight of the heat map); returns RGB uint8 (H, W, 3)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be a 2-D array, got shape {cam.shape}")
    h, w = rgb.shape[:2]
    if cam.shape != (h, w):
        cam = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.uint8(255 * np.clip(cam, 0, 1)), cv2.COLORMAP_JET)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32)
    out = (1.0 - alpha) * rgb.astype(np.float32) + alpha * heat
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def cam_overlay_png(rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45) -> bytes:
    """:func:`cam_overlay` encoded as PNG bytes (no metadata)."""
    buf = io.BytesIO()
    Image.fromarray(cam_overlay(rgb, cam, alpha)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()
