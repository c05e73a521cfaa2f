"""Per-photo lesion measurements: area, colour contrast and a severity score (numpy / OpenCV).

This is the simple baseline of the trend model: no learning, one number per photo.

1. The photo is reduced to long side :data:`WORK_SIDE` and converted to CIELAB
   (:func:`dermsight.features.skintone.rgb_to_lab`).
2. Normal skin is :func:`dermsight.features.skintone.skin_mask` (hue/chroma based, lesion,
   hair, glare and shadow removed); its median L*a*b* is the reference colour.
3. Each pixel's *lesion score* is its colour distance from that reference, weighted towards
   darker (pigment) and redder (inflammation) directions:
   ``sqrt(dl² + max(a − aref, 0)² + 0.5·(b − bref)²)`` with
   ``dl = max(Lref − L, 0)·50/Lref`` (relative, so exposure changes cancel).
4. The lesion is the pixels whose score exceeds an Otsu threshold (at least
   :data:`MIN_DELTA_E`), opened, and reduced to the connected components that touch the central
   half of the frame (or, failing that, the largest one).

Returns ``area`` (share of the frame in that mask) and ``contrast`` (mean score inside it),
threshold-free versions that change smoothly: ``area8`` / ``area16`` (share of pixels scoring
over 8 / 16), ``load`` (mean of ``max(score − 4, 0)`` over the frame), ``darkness_load`` /
``redness_load`` (the same for the L* deficit and a* excess alone), the central ellipse against
the periphery (``centre_darkness``, ``centre_redness``: photos of a lesion followed over time
are framed on it), the reference skin colour ``skin_l`` / ``skin_a`` / ``skin_b`` (L*a*b*) and
``severity`` (= ``load``, the baseline's score: it grows with both the lesion's size and its
colour contrast).
"""

from __future__ import annotations

import cv2
import numpy as np

from dermsight.features.skintone import rgb_to_lab, skin_mask
from dermsight.imaging import downscale

WORK_SIDE = 128
MIN_DELTA_E = 6.0


def _centre_masks(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(central ellipse covering ~30 % of the frame, periphery outside ~60 %)."""
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - (w - 1) / 2) / w) ** 2 + ((yy - (h - 1) / 2) / h) ** 2
    return r2 <= 0.3 / np.pi, r2 > 0.6 / np.pi


def lesion_score(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(score map (H, W), per-pixel (darkness, redness) (H, W, 2), reference skin L*a*b* (3,))
    at the working size."""
    small = downscale(np.asarray(rgb, dtype=np.uint8), WORK_SIDE)
    lab = rgb_to_lab(small).astype(np.float32)
    skin = skin_mask(small)
    ref_px = lab[skin] if skin.sum() >= 30 else lab.reshape(-1, 3)
    ref = np.median(ref_px, axis=0)
    # darkness relative to the skin's own lightness, so exposure changes cancel
    dl = np.maximum(ref[0] - lab[..., 0], 0) * (50.0 / max(float(ref[0]), 10.0))
    da = np.maximum(lab[..., 1] - ref[1], 0)
    db = lab[..., 2] - ref[2]
    score = np.sqrt(dl ** 2 + da ** 2 + 0.5 * db ** 2).astype(np.float32)
    return score, np.stack([dl, da], axis=-1), ref


def lesion_mask(score: np.ndarray) -> np.ndarray:
    """Boolean lesion mask from a score map (see the module docstring)."""
    s8 = np.clip(score * (255.0 / max(float(score.max()), 1e-6)), 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(s8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    thr = max(otsu * max(float(score.max()), 1e-6) / 255.0, MIN_DELTA_E)
    mask = (score > thr).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros(score.shape, dtype=bool)
    h, w = score.shape
    centre = np.zeros((h, w), dtype=bool)
    centre[h // 4: h - h // 4, w // 4: w - w // 4] = True
    keep = [i for i in range(1, n) if (centre & (lab == i)).any()]
    if not keep:
        keep = [1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))]
    return np.isin(lab, keep)


def measure_lesion(rgb: np.ndarray) -> dict[str, float]:
    """Lesion measurements of one RGB uint8 (H, W, 3) photo (see the module docstring)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    score, dlda, ref = lesion_score(rgb)
    mask = lesion_mask(score)
    small = downscale(rgb, WORK_SIDE)
    lab = rgb_to_lab(small).astype(np.float32)
    centre, periphery = _centre_masks(*score.shape)
    if periphery.sum() < 10:
        periphery = ~centre
    lc, lp = lab[centre].mean(axis=0), lab[periphery].mean(axis=0)
    out = {
        "area": float(mask.mean()),
        "contrast": float(score[mask].mean()) if mask.any() else 0.0,
        "area8": float((score > 8).mean()),
        "area16": float((score > 16).mean()),
        "load": float(np.maximum(score - 4, 0).mean()),
        "darkness_load": float(np.maximum(dlda[..., 0] - 2, 0).mean()),
        "redness_load": float(np.maximum(dlda[..., 1] - 2, 0).mean()),
        "centre_darkness": float((lp[0] - lc[0]) * 50.0 / max(float(lp[0]), 10.0)),
        "centre_redness": float(lc[1] - lp[1]),
        "skin_l": float(ref[0]),
        "skin_a": float(ref[1]),
        "skin_b": float(ref[2]),
    }
    out["severity"] = out["load"]
    return out
