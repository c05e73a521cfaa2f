"""Photo-quality features and retake tips (pure numpy / OpenCV, no I/O).

:func:`compute_quality` turns an RGB photo into the ten ``q_*`` numbers of the manifest
(:data:`dermsight.manifest.PREPARE_COLUMNS`); :func:`assess_quality` turns those numbers into a
pass/fail decision and short tips a person can act on ("Too dark: ...").

Every feature is computed at a fixed working size (long side :data:`WORK_SIDE` pixels, aspect
kept), so a 200x150 dermoscopy image and a 512x384 phone photo are measured on the same scale.

Well-lit / poor-lighting rule
-----------------------------
A photo is *well lit* (``lighting_ok`` is True) when **every** check below passes; each failed
check adds its tip (see :data:`TIPS`), in the order of :data:`TIPS`:

==============  ==========================================================================
check           fails when
==============  ==========================================================================
``dark``        ``q_highlight < dark_highlight``
``overexposed`` ``q_overexposed > overexposed_fraction`` or
                ``q_brightness_mean > bright_mean``
``blurry``      ``q_sharpness < blurry_sharpness``
``glare``       ``q_glare > glare_fraction``
``color_cast``  ``q_color_cast > color_cast``
``shadow``      ``q_shadow > shadow_fraction``
``distant``     ``q_subject_fraction < subject_fraction``
==============  ==========================================================================

The name keeps the manifest's column (``lighting_ok``) although blur and framing are checked
too: it means "good enough to classify, no retake needed". Default thresholds come from
``benchmarks/quality_degradations.py`` (chosen on one half of the real images, reported on the
other half).

Fair to every skin tone
-----------------------
No check compares a photo with light skin. A close-up of well-lit type VI skin has a low mean
brightness, so exposure is judged by the photo's highlights (``q_highlight``: an under-exposed
photo has no bright part at all; a well-lit photo of dark skin has sheen and background);
shadow is judged against the skin's own bright level, not the frame's (dark skin beside a white
sheet is not a shadow); glare is the largest single bright patch, not the sum of the small
specular highlights that oily or dark skin shows in any light; the skin detector behind "too
far away" accepts the paler, less red skin it used to miss. Retake rates by Fitzpatrick type:
``benchmarks/quality_degradations.py`` (``--by-type``) and ``benchmarks/served_by_type.py``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

WORK_SIDE = 200
"""Long side, in pixels, of the working image every feature is measured on (200 = the size of
the smallest common source, HAM10000, so dermoscopy images are never upsampled, which would
make them look blurry; larger photos are area-downscaled)."""

QUALITY_KEYS = (
    "q_brightness_mean", "q_brightness_std", "q_underexposed", "q_overexposed", "q_contrast",
    "q_highlight", "q_shadow", "q_sharpness", "q_laplacian_var", "q_glare", "q_color_cast",
    "q_subject_fraction",
)

TIPS: dict[str, str] = {
    "dark": "Too dark: move to a brighter place or face a window.",
    "overexposed": "Over-exposed: move out of direct sunlight and turn off the flash.",
    "blurry": "Blurry: hold the camera steady and tap to focus.",
    "glare": "Glare: avoid flash and direct light; tilt the camera slightly.",
    "color_cast": "Colour cast: use daylight rather than coloured lamps.",
    "shadow": "Harsh shadows: use soft, even light and keep your hand or phone out of it.",
    "distant": "Too far away: move closer so the skin area fills the frame.",
}
"""Check name -> the tip shown when that check fails (order = order tips are reported)."""

# Pixel-level constants (not user thresholds): luminance on the 0-255 scale.
_NEAR_BLACK = 20          # "near-black" for q_underexposed
_NEAR_WHITE = 245         # "near-white" for q_overexposed
_GLARE_V = 240            # glare pixel: HSV value at least this ...
_GLARE_S = 40             # ... saturation at most this (0-255) ...
_GLARE_LIFT = 30          # ... and this much brighter than its opened (glare-free) surroundings
_SHADOW_RATIO = 0.45      # shadow pixel: smoothed luminance below this share of the bright level
_SHADOW_MIN_SKIN = 0.2    # skin share of the frame from which the skin sets the bright level
_SKIN_A_MIN = 4           # skin pixel: CIE a* (whole units in 8-bit Lab) at least this
                          # (5 missed pale skin, 3 took beige walls) ...
_SKIN_HUE = (-35.0, 80.0)  # ... Lab hue angle in degrees within this range ...
_SKIN_L = (8.0, 97.0)     # ... and L* within this range
# Typical grey-world chromaticities (CIE a*, b*) of well-lit skin photos: (mean, covariance) of
# dermoscopy (pink-purple) and of clinical photos, fitted on the "tune" half of HAM10000 and
# Fitzpatrick17k. q_color_cast is the Mahalanobis distance to the nearer of the two.
_CAST_CLUSTERS = (
    ((22.6, 6.0), ((98.6, 49.1), (49.1, 66.8))),
    ((13.7, 14.0), ((50.3, 22.4), (22.4, 67.1))),
)
_CAST_MODELS = tuple((np.array(m, np.float64), np.linalg.inv(np.array(c, np.float64)))
                     for m, c in _CAST_CLUSTERS)


def _to_working(rgb: np.ndarray) -> np.ndarray:
    """Validate an RGB uint8 HxWx3 array and resize it so the long side is WORK_SIDE."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    if min(h, w) < 8:
        raise ValueError(f"image too small for quality features: {w}x{h}")
    scale = WORK_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size == (w, h):
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interp)


def _percentile_u8(gray: np.ndarray, q: float) -> float:
    """q-th percentile (0-100) of a uint8 image via its histogram (fast)."""
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel()
    cdf = np.cumsum(hist)
    return float(np.searchsorted(cdf, q / 100.0 * cdf[-1]))


def _small(img: np.ndarray, side: int = 64) -> np.ndarray:
    """Area-downscale an image so its long side is ``side`` pixels."""
    h, w = img.shape[:2]
    s = side / max(h, w)
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


def _glare_fraction(gray: np.ndarray, hsv: np.ndarray) -> float:
    """Share of the frame covered by the largest patch of pixels that are bright, unsaturated
    and brighter than their surroundings (the small specular highlights that dark or oily skin
    shows in any light are many small patches, flash glare is one large one)."""
    h, w = gray.shape
    small = cv2.medianBlur(_small(gray, 32), 9)  # glare-free surroundings (median of ~1/3 frame)
    background = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    lift = cv2.subtract(gray, background)
    mask = (hsv[..., 2] >= _GLARE_V) & (hsv[..., 1] <= _GLARE_S) & (lift >= _GLARE_LIFT)
    mask = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    # Highlights lie on the subject; bright regions running into the frame edge are background
    # (white sheets, paper, walls), so components touching the border are not glare.
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    x, y, bw, bh, area = (stats[1:, i] for i in range(5))
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    return float(area[inner].max()) / mask.size if inner.any() else 0.0


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_BLUR_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # (dy, dx): horizontal, vertical, diagonals


def _shifted_diff(f: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``f[y + dy, x + dx] - f[y, x]`` over the pixels where both exist."""
    h, w = f.shape
    return (f[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
            - f[max(0, -dy):h + min(0, -dy), max(0, -dx):w + min(0, -dx)])


def _sharpness(gray: np.ndarray) -> float:
    """Noise-compensated gradient decorrelation, worst direction (see ``q_sharpness``).

    Per direction, with ``E1`` / ``E2`` the mean squared luma difference between pixels 1 / 2
    steps apart, minus the white-noise share ``2 sigma^2`` (``sigma`` from Immerkaer's
    fast noise estimate): ``(4 E1 - E2) / E2``, i.e. ``(1 - rho) / (1 + rho)`` with ``rho`` the
    correlation of neighbouring differences. Smooth (blurred) content has ``E2 = 4 E1`` (0);
    edges and texture at the pixel scale raise it. The minimum over four directions catches
    motion blur, which smooths only along its direction.
    """
    f = gray.astype(np.float32)
    lap = cv2.filter2D(f, -1, _IMMERKAER)[1:-1, 1:-1]
    sigma = float(np.sqrt(np.pi / 2) / 6 * np.abs(lap).mean())
    noise = 2.0 * sigma * sigma
    worst = np.inf
    for dy, dx in _BLUR_DIRECTIONS:
        d1 = _shifted_diff(f, dy, dx)
        d2 = _shifted_diff(f, 2 * dy, 2 * dx)
        e1 = max(float(np.mean(d1 * d1)) - noise, 0.0)
        e2 = float(np.mean(d2 * d2)) - noise
        worst = min(worst, (4.0 * e1 - e2) / e2 if e2 > 1e-3 else 0.0)
    return max(worst, 0.0)


def _shadow_fraction(gray: np.ndarray, skin: np.ndarray) -> float:
    """Share of the frame whose smoothed luminance is far below the skin's own bright level.

    The bright level is the 90th percentile over the skin-coloured pixels (``skin``, a bool mask
    of the frame) when they cover at least :data:`_SHADOW_MIN_SKIN` of it, else over the frame:
    dark skin beside a white sheet or wall is not in shadow. Near-black pixels (dermoscope
    vignette, outside the field of view) are not shadow.
    """
    small = cv2.GaussianBlur(_small(gray), (0, 0), 1.5).astype(np.float32)
    skin_small = _small(skin.view(np.uint8) * np.uint8(255)) >= 128
    ref = small[skin_small] if skin_small.mean() >= _SHADOW_MIN_SKIN else small
    bright = float(np.percentile(ref, 90))
    if bright < 2 * _NEAR_BLACK:
        return 0.0
    mask = (small < _SHADOW_RATIO * bright) & (small > _NEAR_BLACK)
    return float(mask.mean())


def _lab_mean(lab: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean CIE (a*, b*) of the masked pixels of an 8-bit OpenCV Lab image."""
    if mask.sum() < 16:
        mask = np.ones(mask.shape, bool)
    a = float(lab[..., 1][mask].mean()) - 128.0
    b = float(lab[..., 2][mask].mean()) - 128.0
    return a, b


def _color_cast(lab: np.ndarray, gray: np.ndarray) -> float:
    """Mahalanobis distance of the grey-world (a*, b*) from typical well-lit skin photos."""
    mask = (gray > _NEAR_BLACK) & (gray < _NEAR_WHITE)
    a, b = _lab_mean(lab, mask)
    v = np.array([a, b])
    return float(min(np.sqrt((v - m) @ p @ (v - m)) for m, p in _CAST_MODELS))


def _skin_coloured(lab: np.ndarray) -> np.ndarray:
    """Bool mask of the skin-coloured pixels (reddish Lab hue, not near-black or white)."""
    L = lab[..., 0].astype(np.float32) * (100.0 / 255.0)
    a = lab[..., 1].astype(np.float32) - 128.0
    b = lab[..., 2].astype(np.float32) - 128.0
    hue = np.degrees(np.arctan2(b, a))
    return ((a >= _SKIN_A_MIN) & (hue >= _SKIN_HUE[0]) & (hue <= _SKIN_HUE[1])
            & (L >= _SKIN_L[0]) & (L <= _SKIN_L[1]))


def _subject_fraction(skin: np.ndarray) -> float:
    """Share of the frame covered by skin-coloured pixels plus what they enclose (lesions)."""
    mask = cv2.morphologyEx(skin.view(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return float(filled.mean())


def compute_quality(rgb: np.ndarray) -> dict[str, float]:
    """Photo-quality features of one RGB photo.

    Args:
        rgb: uint8 array, shape (H, W, 3), RGB order, any size (>= 8 px a side). It is resized
            to long side :data:`WORK_SIDE` first.

    Returns:
        ``{key: float}`` with exactly the keys of :data:`QUALITY_KEYS`. Luminance is Rec. 601
        luma; "share" means a fraction of the working-size frame in [0, 1].

        - ``q_brightness_mean``: mean luminance, 0-1.
        - ``q_brightness_std``: luminance standard deviation, 0-1 units.
        - ``q_underexposed``: share of near-black pixels (luma < 20/255).
        - ``q_overexposed``: share of near-white (clipped) pixels (luma > 245/255).
        - ``q_contrast``: percentile contrast, 95th minus 5th luminance percentile, 0-1.
        - ``q_highlight``: the 99th percentile of luminance, 0-1: how bright the brightest part
          of the photo is. Exposure is judged by it, not by the mean, which a close-up of dark
          skin keeps low in any light.
        - ``q_shadow``: share of the frame in deep shadow: smoothed luminance below 0.45 x the
          skin's own 90th-percentile level (the frame's when under a fifth of it is
          skin-coloured); near-black pixels excluded.
        - ``q_sharpness``: noise-compensated fine-detail ratio of the luma at working size,
          worst of four directions (horizontal, vertical, both diagonals); higher = sharper,
          0 = no pixel-scale detail. Per direction, ``E1`` / ``E2`` are the mean squared
          differences between pixels 1 / 2 steps apart, each minus the white-noise part
          ``2 sigma^2`` (Immerkaer's noise estimate), and the value is ``(4 E1 - E2) / E2``
          (= ``(1 - rho) / (1 + rho)``, ``rho`` the correlation of neighbouring differences).
          Smooth or blurred content gives ~0 whatever its contrast (``E2 = 4 E1``), so the
          measure does not depend on how much texture the scene has, unlike the Laplacian
          variance; the minimum over directions catches motion blur. Clean photos: ~0.2-1,
          median ~0.45; blurred ones < 0.12.
        - ``q_laplacian_var``: the classic variance of the Laplacian of the luma (0-255 scale)
          at working size. Reported for comparison; the blur check uses ``q_sharpness`` because
          the Laplacian variance mostly measures how much texture a scene has (smooth
          dermoscopy scores below blurred clinical photos: detection AUROC 0.93 against 1.00).
        - ``q_glare``: share of the frame covered by the largest glare patch. Glare pixels are
          bright (HSV value >= 240), unsaturated (saturation <= 40/255) and >= 30 luma levels
          above their surroundings (a coarse median of the image, so large white areas do not
          count), after a 3x3 opening; connected regions touching the frame edge (white
          sheets, paper, walls) are not counted. The largest patch, not their sum: the many
          small highlights that dark or oily skin shows under any light are not flash glare.
        - ``q_color_cast``: Mahalanobis distance of the grey-world mean chromaticity (CIE a*, b*
          of the pixels that are neither near-black nor near-white) from the nearer of two
          typical well-lit references (dermoscopy, clinical photo); 0 = typical, ~2 = the
          clean-image 95th percentile, > 3 = strong cast.
        - ``q_subject_fraction``: share of the frame filled by the subject: skin-coloured
          pixels (reddish Lab hue, a* >= 4) after a 5x5 closing, with holes (lesions) filled.
    """
    img = _to_working(rgb)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    lab = cv2.cvtColor(img, cv2.COLOR_RGB2LAB)
    mean, std = cv2.meanStdDev(gray)
    skin = _skin_coloured(lab)
    return {
        "q_brightness_mean": float(mean[0, 0]) / 255.0,
        "q_brightness_std": float(std[0, 0]) / 255.0,
        "q_underexposed": float(np.count_nonzero(gray < _NEAR_BLACK)) / gray.size,
        "q_overexposed": float(np.count_nonzero(gray > _NEAR_WHITE)) / gray.size,
        "q_contrast": (_percentile_u8(gray, 95) - _percentile_u8(gray, 5)) / 255.0,
        "q_highlight": _percentile_u8(gray, 99) / 255.0,
        "q_shadow": _shadow_fraction(gray, skin),
        "q_sharpness": _sharpness(gray),
        "q_laplacian_var": float(cv2.Laplacian(gray, cv2.CV_32F).var()),
        "q_glare": _glare_fraction(gray, hsv),
        "q_color_cast": _color_cast(lab, gray),
        "q_subject_fraction": _subject_fraction(skin),
    }


class QualityThresholds(BaseModel):
    """Pass/fail thresholds of :func:`assess_quality` (units as in :func:`compute_quality`)."""

    model_config = ConfigDict(extra="forbid")

    dark_highlight: float = Field(
        0.35, description="'dark' if q_highlight (99th-percentile luminance, 0-1) is below this: "
        "even the brightest part of the photo is dark")
    bright_mean: float = Field(
        0.88, description="'overexposed' if q_brightness_mean is above this (0-1)")
    overexposed_fraction: float = Field(
        0.25, description="'overexposed' if q_overexposed (clipped share) is above this")
    blurry_sharpness: float = Field(
        0.12, description="'blurry' if q_sharpness is below this")
    glare_fraction: float = Field(
        0.015, description="'glare' if q_glare (the largest glare patch) is above this")
    color_cast: float = Field(3.0, description="'color_cast' if q_color_cast is above this")
    shadow_fraction: float = Field(0.5, description="'shadow' if q_shadow is above this")
    subject_fraction: float = Field(
        0.12, description="'distant' if q_subject_fraction is below this")
    model_poor: float = Field(
        0.5, gt=0, le=1, description="serving only: a model's photo-quality head asks for a "
        "retake when its p(poor) is at or above this (set per model in model.json; the "
        "clinical model's head is held to 0.95 because below that it asks clean photos of dark "
        "skin for a retake more often than light: README, 'Photo quality')")

    @model_validator(mode="before")
    @classmethod
    def _drop_mean_brightness(cls, data: Any) -> Any:
        """Files written before the dark check moved to the highlights (configs, model.json)
        carry ``dark_mean`` / ``dark_fraction``; the check no longer reads them."""
        if isinstance(data, dict) and ({"dark_mean", "dark_fraction"} & set(data)):
            data = {k: v for k, v in data.items() if k not in ("dark_mean", "dark_fraction")}
        return data


def failed_checks(features: dict, thresholds: QualityThresholds | None = None) -> list[str]:
    """Names of the failed checks (keys of :data:`TIPS`, in that order)."""
    t = thresholds or QualityThresholds()
    f = features
    failed = {
        "dark": f["q_highlight"] < t.dark_highlight,
        "overexposed": (f["q_overexposed"] > t.overexposed_fraction
                        or f["q_brightness_mean"] > t.bright_mean),
        "blurry": f["q_sharpness"] < t.blurry_sharpness,
        "glare": f["q_glare"] > t.glare_fraction,
        "color_cast": f["q_color_cast"] > t.color_cast,
        "shadow": f["q_shadow"] > t.shadow_fraction,
        "distant": f["q_subject_fraction"] < t.subject_fraction,
    }
    return [name for name in TIPS if failed[name]]


def assess_quality(features: dict,
                   thresholds: QualityThresholds | None = None) -> tuple[bool, list[str]]:
    """Decide whether a photo needs a retake.

    Args:
        features: the dict from :func:`compute_quality` (extra keys are ignored).
        thresholds: pass/fail limits; defaults to ``QualityThresholds()``.

    Returns:
        ``(lighting_ok, tips)``: ``lighting_ok`` is True when every check passes; ``tips`` holds
        one sentence per failed check (:data:`TIPS`), empty when the photo is fine.
    """
    failed = failed_checks(features, thresholds)
    return not failed, [TIPS[name] for name in failed]
