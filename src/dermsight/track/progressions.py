"""Seeded synthetic progressions built from real photos (no real longitudinal data exists here).

A *progression* is 2–N visits of one real lesion photo in which the lesion is changed
progressively and every visit is re-photographed under a different camera:

- **lesion change** (labelled): the lesion is grown or shrunk by a smooth radial warp about its
  centroid (area factor ``A``), and its colour contrast against the surrounding skin is deepened
  or faded (factor ``k`` on the CIELAB difference from the median skin colour) with a shift of
  redness (``Δa*``). ``worsened``: A ∈ [1.35, 2.0] and/or k ∈ [1.3, 1.7], Δa* ≥ +3;
  ``improved``: A ∈ [0.35, 0.7] and/or k ∈ [0.4, 0.7], Δa* ≤ −3; ``stable``: A ∈ [0.93, 1.07],
  k ∈ [0.93, 1.07], |Δa*| ≤ 1. Which of size / colour changes (or both) is drawn per
  progression; visit t gets ``A**p_t`` etc. with 0 = p_0 < p_1 < … < p_last = 1.
- **visit-to-visit nuisance** (unlabelled, on every visit including the first): exposure gain
  and gamma, white balance (per-channel gains), rotation (±10°), scale (±8 % around a 1.2×
  zoom, so the rotated frame never shows invented borders), translation (±5 %),
  occasional blur, sensor noise and JPEG re-compression; gaps of 3–45 days.

The photos and masks are read through :mod:`dermsight.sources` and :mod:`dermsight.imaging`.
The lesion region is the dataset's mask for HAM10000 (``masks/<id>_segmentation.png``,
thresholded at 128) and, for Fitzpatrick17k (no masks), a **centred ellipse** covering the
central ~30 % of the frame (:func:`central_ellipse`): clinical photos are framed on the
condition, and an ellipse is applied identically on every skin tone, unlike a colour-based
estimate that could itself be tone-dependent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from dermsight.errors import DataError
from dermsight.features.skintone import fitzpatrick_group
from dermsight.imaging import DEFAULT_MAX_PIXELS, ImageRejected, decode_image, downscale, load_mask
from dermsight.io import exists, read_bytes
from dermsight.sources import create_source

LABELS = ("improved", "stable", "worsened")


@dataclass
class LesionImage:
    """One real photo with a lesion mask: the seed of progressions."""

    image_id: str
    group_id: str  # lesion_id (HAM10000) or image id: disjoint train/eval are split on it
    rgb: np.ndarray
    mask: np.ndarray  # bool (H, W)
    source: str
    tone: str | None = None  # e.g. Fitzpatrick group "1-2" / "3-4" / "5-6"


@dataclass
class Progression:
    images: list[np.ndarray]
    days: list[float]
    label: str
    image_id: str
    group_id: str
    source: str
    tone: str | None
    params: dict = field(default_factory=dict)


# ---- loading -------------------------------------------------------------------------------

def _read_rgb(uri: str, max_side: int | None = None) -> np.ndarray:
    try:
        rgb, _ = decode_image(read_bytes(uri), max_pixels=DEFAULT_MAX_PIXELS)
    except (OSError, ImageRejected) as exc:
        raise DataError(f"cannot read image '{uri}': {exc}") from None
    return downscale(rgb, max_side) if max_side else rgb


def central_ellipse(h: int, w: int, frac: float = 0.3) -> np.ndarray:
    """Boolean mask of a centred ellipse with the frame's aspect covering ``frac`` of it."""
    a = np.sqrt(frac / np.pi) * w
    b = np.sqrt(frac / np.pi) * h
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx - (w - 1) / 2) / a) ** 2 + ((yy - (h - 1) / 2) / b) ** 2 <= 1.0


def load_ham10000(root: str | Path, n: int | None = None, seed: int = 0) -> list[LesionImage]:
    """One image per lesion (the first by image_id), with its mask; ``n`` lesions at random.
    Rows come from the ``ham10000`` source (:mod:`dermsight.sources.ham10000`)."""
    meta = create_source("ham10000", str(root)).load()
    meta = meta.sort_values("image_id").drop_duplicates("group_id")
    if n is not None and n < len(meta):
        meta = meta.sample(n=n, random_state=seed)
    out = []
    for row in meta.itertuples():
        if pd.isna(row.mask_uri) or not exists(row.mask_uri):
            continue
        rgb = _read_rgb(row.image_uri)
        mask = load_mask(row.mask_uri, rgb.shape[:2])
        if mask is None or mask.mean() < 0.01:
            continue
        out.append(LesionImage(row.image_id, str(row.group_id), rgb, mask, "ham10000"))
    return out


def load_fitzpatrick17k(root: str | Path, n_per_group: int | None = None, seed: int = 0,
                        max_side: int = 256) -> list[LesionImage]:
    """Images with a known Fitzpatrick type, ``n_per_group`` per group 1-2 / 3-4 / 5-6
    (:func:`~dermsight.features.skintone.fitzpatrick_group`). Rows come from the
    ``fitzpatrick17k`` source (:mod:`dermsight.sources.fitzpatrick17k`)."""
    meta = create_source("fitzpatrick17k", str(root)).load()
    meta = meta[meta["fitzpatrick"].notna()].copy()
    meta["tone"] = [fitzpatrick_group(v) for v in meta["fitzpatrick"]]
    if n_per_group is not None:
        meta = pd.concat([d.sample(n=min(n_per_group, len(d)), random_state=seed)
                          for _, d in meta.groupby("tone")])
    out = []
    for row in meta.sort_values("image_id").itertuples():
        if not exists(row.image_uri):
            continue
        rgb = _read_rgb(row.image_uri, max_side)
        mask = central_ellipse(*rgb.shape[:2])
        out.append(LesionImage(row.image_id, row.image_id, rgb, mask, "fitzpatrick17k",
                               row.tone))
    return out


# ---- lesion changes ------------------------------------------------------------------------

def radial_warp(rgb: np.ndarray, mask: np.ndarray, area_factor: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Grow (``area_factor`` > 1) or shrink the lesion about its centroid; returns (rgb, mask).

    Inside the lesion's equivalent radius R the image is scaled by ``s = sqrt(area_factor)``;
    between ``s·R`` and ``2.2·R`` the radial mapping blends linearly back to the identity, so
    the skin around it is pushed out or pulled in and the rest of the frame is unchanged.
    """
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return rgb.copy(), mask.copy()
    cy, cx = ys.mean(), xs.mean()
    R = max(np.sqrt(len(xs) / np.pi), 2.0)
    s = float(np.sqrt(area_factor))
    rb = 2.2 * R
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    r = np.sqrt(dx ** 2 + dy ** 2) + 1e-6
    inner = s * R
    g = np.where(r <= inner, r / s,
                 np.where(r < rb, R + (r - inner) * (rb - R) / (rb - inner), r))
    ratio = (g / r).astype(np.float32)
    map_x = (cx + dx * ratio).astype(np.float32)
    map_y = (cy + dy * ratio).astype(np.float32)
    out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    m = cv2.remap(mask.astype(np.uint8) * 255, map_x, map_y, cv2.INTER_LINEAR,
                  borderMode=cv2.BORDER_REFLECT_101) >= 128
    return out, m


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def _rgb(lab: np.ndarray) -> np.ndarray:
    out = cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def recolor(rgb: np.ndarray, mask: np.ndarray, contrast: float, red_shift: float) -> np.ndarray:
    """Scale the lesion's CIELAB difference from the surrounding skin by ``contrast`` and add
    ``red_shift`` to its a*, with a feathered edge (contrast < 1 fades towards the skin)."""
    lab = _lab(rgb)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    ring = cv2.dilate(mask.astype(np.uint8), k, iterations=3).astype(bool) & ~mask
    ref_px = lab[ring] if ring.sum() >= 20 else lab[~mask] if (~mask).sum() >= 20 else None
    if ref_px is None:
        return rgb.copy()
    ref = np.median(ref_px, axis=0)
    sigma = max(2.0, 0.02 * max(mask.shape))
    wgt = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)[..., None]
    target = ref + (lab - ref) * contrast
    target[..., 1] += red_shift
    target[..., 0] = np.clip(target[..., 0], 0, 100)
    out = lab * (1 - wgt) + target * wgt
    return _rgb(out)


# ---- visit nuisance ------------------------------------------------------------------------

def nuisance(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One re-photographing: exposure, gamma, white balance, rotation, scale, shift, blur,
    noise and JPEG (see the module docstring for the ranges)."""
    h, w = rgb.shape[:2]
    angle = rng.uniform(-10, 10)
    # a 1.2× zoom keeps the rotated frame's corners inside the photo (no invented borders)
    scale = 1.2 * rng.uniform(0.92, 1.08)
    tx, ty = rng.uniform(-0.05, 0.05) * w, rng.uniform(-0.05, 0.05) * h
    M = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    M[:, 2] += (tx, ty)
    out = cv2.warpAffine(rgb, M, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    x = out.astype(np.float32) / 255.0
    x = x * rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, size=3).astype(np.float32)
    x = np.clip(x, 0, 1) ** rng.uniform(0.85, 1.15)
    out = (x * 255.0).astype(np.float32)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    out = out + rng.normal(0, rng.uniform(0, 4), size=out.shape).astype(np.float32)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(60, 96))])
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ---- progressions --------------------------------------------------------------------------

def draw_change(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Final (last-visit) change parameters for ``label``."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, got {label!r}")
    stable = {"area": rng.uniform(0.93, 1.07), "contrast": rng.uniform(0.93, 1.07),
              "red": rng.uniform(-1, 1)}
    if label == "stable":
        return stable
    mode = rng.choice(["size", "colour", "both"])
    if label == "worsened":
        change = {"area": rng.uniform(1.35, 2.0), "contrast": rng.uniform(1.3, 1.7),
                  "red": rng.uniform(3, 10)}
    else:
        change = {"area": rng.uniform(0.35, 0.7), "contrast": rng.uniform(0.4, 0.7),
                  "red": rng.uniform(-10, -3)}
    if mode == "size":
        change["contrast"], change["red"] = stable["contrast"], stable["red"]
    elif mode == "colour":
        change["area"] = stable["area"]
    return {**change, "mode": mode}


def make_progression(item: LesionImage, label: str, n_visits: int,
                     rng: np.random.Generator) -> Progression:
    """``n_visits`` (≥ 2) photos of ``item`` changing towards ``label`` (seeded by ``rng``)."""
    if n_visits < 2:
        raise ValueError(f"n_visits must be >= 2, got {n_visits}")
    change = draw_change(label, rng)
    p = np.concatenate([[0.0], np.sort(rng.uniform(0.05, 0.95, n_visits - 2)), [1.0]])
    gaps = rng.uniform(3, 45, n_visits - 1)
    days = np.concatenate([[0.0], np.cumsum(gaps)]).tolist()
    images = []
    for pt in p:
        rgb, mask = radial_warp(item.rgb, item.mask, change["area"] ** pt)
        rgb = recolor(rgb, mask, change["contrast"] ** pt, change["red"] * pt)
        images.append(nuisance(rgb, rng))
    return Progression(images, days, label, item.image_id, item.group_id, item.source,
                       item.tone, {k: (float(v) if not isinstance(v, str) else v)
                                   for k, v in change.items()})


def build_progressions(items: list[LesionImage], per_item: int, seed: int,
                       min_visits: int = 2, max_visits: int = 6) -> list[Progression]:
    """``per_item`` progressions of each item, labels balanced in turn, seeded."""
    out = []
    for i, item in enumerate(items):
        rng = np.random.default_rng([seed, i])
        for j in range(per_item):
            label = LABELS[(i * per_item + j) % len(LABELS)]
            n = int(rng.integers(min_visits, max_visits + 1))
            out.append(make_progression(item, label, n, rng))
    return out


def split_by_group(items: list[LesionImage], eval_fraction: float, seed: int
                   ) -> tuple[list[LesionImage], list[LesionImage]]:
    """Disjoint (train, eval) lists: no ``group_id`` (lesion) is in both."""
    groups = sorted({it.group_id for it in items})
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_eval = int(round(len(groups) * eval_fraction))
    held = set(groups[:n_eval])
    return ([it for it in items if it.group_id not in held],
            [it for it in items if it.group_id in held])
