"""Skin tone from the image: CIELAB, ITA, Chardon categories, Monk estimate and a skin mask.

Pure numpy / OpenCV, no I/O. All colour maths is CIELAB under D65 with ``L*`` in 0–100 and
``a*``, ``b*`` *unshifted* (roughly −128…127). We never use OpenCV's 8-bit LAB encoding
(``L·255/100``, ``a+128``, ``b+128``): RGB is converted as float32 in [0, 1], for which
``cv2.cvtColor(..., COLOR_RGB2LAB)`` returns true CIELAB (sRGB gamma removed, D65 white).

Individual typology angle (ITA, degrees)::

    ITA = atan2(L* − 50, b*) · 180/π       (= arctan((L* − 50)/b*) for b* > 0)

Chardon categories and the Fitzpatrick index they are commonly equated with:

=============  ==============  =====
category       ITA (degrees)   index
=============  ==============  =====
very_light     > 55            1
light          41 … 55         2
intermediate   28 … 41         3
tan            10 … 28         4
brown          −30 … 10        5
dark           < −30           6
=============  ==============  =====

``tone_bucket``: light = very_light/light (ITA > 41), medium = intermediate/tan (10 < ITA ≤ 41),
dark = brown/dark (ITA ≤ 10). A value exactly on a boundary goes to the darker category
(e.g. ITA = 55 is "light").

Exposure: :func:`exposure_gain` estimates a luminance white-patch gain (specular highlights /
white background taken as the reference white when clearly brighter than the skin). Applied in
full it raises |ρ(ITA, type)| on Fitzpatrick17k from 0.44 to 0.56 but shifts every ITA lighter,
so the Chardon categories agree better with types I–III and much worse with IV–VI: it is **not**
used in full by default.

What ``compute_skin_tone(...)["ita"]`` is (default ``calibrate=True``): a *calibrated* ITA on
the Chardon scale, not the physical one. With ``ita_raw`` the median per-pixel ITA of the skin
as photographed and ``ita_exposed`` the same after the full exposure gain, the score
``s = ita_raw + _CAL_EXPOSURE_WEIGHT·(ita_exposed − ita_raw)`` (the fit chose weight 0: no
exposure correction; 0.25 was only marginally worse on the fit half) is mapped by a monotone
piecewise-linear function that sends the knots :data:`_CAL_KNOTS` to the Chardon boundaries
55 / 41 / 28 / 10 / −30 (slope 1 outside them).
``ita_category`` and ``tone_bucket`` are the Chardon categories of that calibrated value, so they
stay consistent with ``ita``. The 6 constants were fitted on the Fitzpatrick17k images whose
md5hash starts with 0–7 only (``benchmarks/ita_agreement.py --fit`` refits them), maximising the
type-balanced agreement with the dermatologists' labels while keeping types IV–VI near the naive
baseline; figures on the other half are reported beside them. ``calibrate=False`` returns the
physical median ITA (with the full exposure gain when ``normalise`` is True, as taken when it is
False); flat colour patches give their textbook ITA that way. The calibration is monotone in
``s``: it changes categories, never the order of images with the same exposure shift.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Working size (long side, pixels) the image is reduced to before measuring.
WORK_SIZE = 128

#: Chardon ITA categories as (name, lower bound exclusive, Fitzpatrick-like index), light→dark.
ITA_CATEGORIES: tuple[tuple[str, float, int], ...] = (
    ("very_light", 55.0, 1),
    ("light", 41.0, 2),
    ("intermediate", 28.0, 3),
    ("tan", 10.0, 4),
    ("brown", -30.0, 5),
    ("dark", -np.inf, 6),
)

#: Tone buckets by category name.
TONE_BUCKETS: dict[str, str] = {
    "very_light": "light", "light": "light",
    "intermediate": "medium", "tan": "medium",
    "brown": "dark", "dark": "dark",
}

#: Monk Skin Tone scale reference colours, sRGB uint8, MST 1 → 10 (shape (10, 3)).
MONK_SRGB = np.array(
    [[0xF6, 0xED, 0xE4], [0xF3, 0xE7, 0xDB], [0xF7, 0xEA, 0xD0], [0xEA, 0xDA, 0xBA],
     [0xD7, 0xBD, 0x96], [0xA0, 0x7E, 0x56], [0x82, 0x5C, 0x43], [0x60, 0x41, 0x34],
     [0x3A, 0x31, 0x2A], [0x29, 0x24, 0x20]], dtype=np.uint8)

#: Weights of (ΔL*, Δa*, Δb*) in the Monk distance. a* is down-weighted: redness from
#: inflammation and lighting moves a* most while the Monk colours differ mainly in L* and b*.
MONK_WEIGHTS = np.array([1.0, 0.5, 1.0], dtype=np.float32)

SKIN_TONE_KEYS = ("ita", "ita_category", "tone_bucket", "monk_estimate", "skin_fraction")

# Mask and exposure parameters. Set by hand, then checked / chosen (hue range, white-patch
# percentile and ratio range, chroma limit) on the Fitzpatrick17k images whose md5hash starts
# with 0-7 (the "fit" half) only; figures for the other half are reported beside them.
_MIN_L = 8.0            # below: black background / deep shadow
_GLARE_L = 96.0         # above with low chroma: specular glare / white background
_MIN_CHROMA = 3.0       # below: grey (background, grey hair, cloth)
_HUE_RANGE = (15.0, 100.0)   # LAB hue angle (deg) of skin across all tones
_SHADOW_FRAC = 0.45     # L* below this share of the typical skin L*: shadow
_LESION_K = 2.5         # robust z beyond which a pixel is "abnormal" (redder / darker)
_MIN_SKIN_PX = 60       # fewer skin pixels than this at working size: fall back
_WP_PERCENTILE = 99.9   # luminance percentile taken as the reference white (exposure)
_WP_RATIO = (1.2, 1.7)  # reference/skin luminance ratio: no normalisation below, full above
_WP_MAX_CHROMA = 40.0   # pixels this colourful (e.g. a red lesion) are never the reference
_MAX_GAIN = 4.0         # at most this exposure gain (linear light)

# Calibration (see the module docstring). Fitted by ``benchmarks/ita_agreement.py --fit`` on the
# Fitzpatrick17k "fit" half (md5hash 0-7, 1380 labelled images): the exposure weight was chosen
# from 0 / .25 / .5 / .6 / .75 / 1 and the knots by coordinate search over score quantiles,
# maximising type-balanced within-±1 + ½ pooled within-±1 + ½ type-balanced exact agreement,
# with types IV-VI kept within 3 points of the naive baseline's per-type within-±1 (fit half).
# Objective on the fit half: weight 0 -> 1.297, 0.25 -> 1.287 (0.25 would keep type V closer to
# the baseline on the held-out half, but was not chosen: the choice uses the fit half only).
_CAL_EXPOSURE_WEIGHT = 0.0
#: Score values sent to the Chardon boundaries 55, 41, 28, 10, -30 (strictly decreasing).
_CAL_KNOTS = (66.47, 39.29, 25.35, 16.91, -43.32)
_CHARDON_BOUNDS = (55.0, 41.0, 28.0, 10.0, -30.0)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB pixels.

    ``rgb``: (..., 3) uint8 in 0–255 or float in [0, 1]. Returns float32 (..., 3) with L* in
    0–100 and a*, b* unshifted. Uses OpenCV's float path (input scaled to [0, 1]), which yields
    true CIELAB, not the 8-bit encoding.
    """
    arr = np.asarray(rgb)
    shape = arr.shape
    if shape[-1] != 3:
        raise ValueError(f"expected (..., 3) RGB, got shape {shape}")
    f = arr.astype(np.float32)
    if arr.dtype == np.uint8:
        f /= 255.0
    f = np.clip(f, 0.0, 1.0).reshape(-1, 1, 3)
    return cv2.cvtColor(f, cv2.COLOR_RGB2LAB).reshape(shape)


def ita_from_lab(L, b):
    """ITA in degrees from L* (0–100) and b*: ``atan2(L* − 50, b*)·180/π``.

    Scalars or arrays (broadcast). Equal to ``arctan((L*−50)/b*)`` for b* > 0 and finite at
    b* = 0 (±90°). Returns float or float64 array.
    """
    out = np.degrees(np.arctan2(np.asarray(L, dtype=np.float64) - 50.0,
                                np.asarray(b, dtype=np.float64)))
    return float(out) if np.ndim(out) == 0 else out


def ita_category(ita: float) -> str:
    """Chardon category name of an ITA (degrees); boundaries go to the darker category."""
    for name, lower, _ in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][0]  # NaN / -inf


def ita_category_index(ita: float) -> int:
    """Chardon category as 1 (very_light) … 6 (dark), the Fitzpatrick type it is equated with."""
    for _, lower, idx in ITA_CATEGORIES:
        if ita > lower:
            return idx
    return ITA_CATEGORIES[-1][2]


def tone_bucket(ita: float) -> str:
    """"light" (ITA > 41), "medium" (10 < ITA ≤ 41) or "dark" (ITA ≤ 10)."""
    return TONE_BUCKETS[ita_category(ita)]


#: Fitzpatrick skin types in the three pairs the fairness reports and tracking group by
FITZPATRICK_GROUPS = {1: "1-2", 2: "1-2", 3: "3-4", 4: "3-4", 5: "5-6", 6: "5-6"}


def fitzpatrick_group(scale) -> str | None:
    """A Fitzpatrick type 1–6 (a dataset's label) → its group "1-2", "3-4" or "5-6"; None when
    the type is missing (None, NaN, ``pd.NA``) or outside 1–6."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        return None
    return FITZPATRICK_GROUPS.get(int(value)) if np.isfinite(value) else None


_MONK_LAB = rgb_to_lab(MONK_SRGB)


def nearest_monk(color) -> int:
    """Nearest Monk tone (1–10) to one colour.

    ``color``: length-3 CIELAB (float, L* 0–100) or sRGB uint8 (integer dtype, 0–255).
    Distance: weighted Euclidean ΔE with weights :data:`MONK_WEIGHTS` on (L*, a*, b*).
    """
    c = np.asarray(color)
    lab = rgb_to_lab(c.astype(np.uint8)) if np.issubdtype(c.dtype, np.integer) else c
    d = ((_MONK_LAB - np.asarray(lab, dtype=np.float32)) * MONK_WEIGHTS) ** 2
    return int(np.argmin(d.sum(axis=1))) + 1


def _lab_fast(rgb: np.ndarray) -> np.ndarray:
    """Approximate CIELAB of uint8 (H, W, 3) RGB via OpenCV's 8-bit path, decoded to true units.

    OpenCV's 8-bit LAB stores L·255/100 and a + 128, b + 128; this undoes that. Quantised to
    ~0.4 L* / 1 a*b* unit: used only for the mask; the reported values use :func:`rgb_to_lab`.
    """
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def _sub(x: np.ndarray, n: int = 3000) -> np.ndarray:
    """A regular subsample of a 1-D array with at most about ``n`` elements (for robust stats)."""
    return x[:: max(1, x.size // n)]


def _work_image(rgb: np.ndarray, size: int = WORK_SIZE) -> np.ndarray:
    """Reduce an (H, W, 3) image so its long side is at most ``size`` (INTER_AREA)."""
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def _as_bool_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A lesion mask (bool, or uint8 thresholded at 128 / any >0.5 for floats) at ``shape``."""
    m = np.asarray(mask)
    if m.dtype != bool:
        m = m >= (128 if m.dtype == np.uint8 and m.max(initial=0) > 1 else 0.5)
    if m.shape != shape:
        m = cv2.resize(m.astype(np.uint8), (shape[1], shape[0]),
                       interpolation=cv2.INTER_NEAREST).astype(bool)
    return m


def _candidate_skin(lab: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Pixels whose colour could be skin of any tone: (H, W) bool.

    Colour only, no luminance-based skin detector: keeps hue in the orange range and drops
    near-black, glare (bright and grey, or a clipped channel) and grey/blue/green pixels.
    """
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a))
    glare = ((L > _GLARE_L) & (chroma < 8.0)) | (rgb.max(axis=-1) >= 250)
    return ((L > _MIN_L) & ~glare & (chroma >= _MIN_CHROMA)
            & (hue >= _HUE_RANGE[0]) & (hue <= _HUE_RANGE[1]))


def _hair(L: np.ndarray) -> np.ndarray:
    """Thin dark structures (hair) by a black-hat on L*: (H, W) bool."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    bh = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, k)
    return bh > max(6.0, 0.15 * float(np.median(_sub(L.ravel()))))


def _robust_z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(x − median(ref)) / (1.4826·MAD(ref)), MAD floored at 1 unit."""
    ref = _sub(ref)
    med = np.median(ref)
    mad = max(1.4826 * float(np.median(np.abs(ref - med))), 1.0)
    return (x - med) / mad


def _abnormal(lab: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Estimate the lesion / abnormal area when no mask is given: (H, W) bool.

    Pixels much redder (a*) or much darker (L*) than the typical candidate skin (robust z >
    ``_LESION_K``), opened to drop speckle and dilated to also drop the lesion border.
    """
    L, a = lab[..., 0], lab[..., 1]
    zl = _robust_z(L, L[cand])
    za = _robust_z(a, a[cand])
    ab = ((za > _LESION_K) | (zl < -_LESION_K)).astype(np.uint8)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    ab = cv2.morphologyEx(ab, cv2.MORPH_OPEN, k)
    ab = cv2.dilate(ab, k, iterations=2)
    return ab.astype(bool)


def _skin_and_lesion(lab: np.ndarray, rgb: np.ndarray,
                     lesion: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(skin mask, lesion area excluded) at the size of ``lab``, both (H, W) bool.

    See :func:`skin_mask`. The lesion area is the given mask dilated, or the estimated abnormal
    area (empty when it could not be estimated).
    """
    cand = _candidate_skin(lab, rgb)
    excluded = np.zeros(cand.shape, dtype=bool)
    if lesion is not None:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        excluded = cv2.dilate(lesion.astype(np.uint8), k).astype(bool)
        cand &= ~excluded
    if cand.sum() < _MIN_SKIN_PX:
        return cand, excluded
    L = lab[..., 0]
    cand &= ~_hair(L)
    if cand.sum() < _MIN_SKIN_PX:
        return cand, excluded
    typical = float(np.percentile(_sub(L[cand]), 75))
    skin = cand & (L >= _SHADOW_FRAC * typical)
    if lesion is None and skin.sum() >= _MIN_SKIN_PX:
        excluded = _abnormal(lab, skin)
        skin &= ~excluded
    return (skin if skin.sum() >= _MIN_SKIN_PX else cand), excluded


def skin_mask(rgb: np.ndarray, lesion_mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean (H, W) mask of normal-looking skin in an RGB uint8 (H, W, 3) image.

    Works for every skin tone: it selects by hue/chroma (orange hues, not grey, blue or green)
    rather than by brightness, then removes glare, near-black background, hair (black-hat on
    L*), deep shadow (L* < 45 % of the 75th-percentile skin L*) and the lesion: the given
    ``lesion_mask`` (bool (H, W), or uint8 thresholded at 128; dilated by 2 px) or, without one,
    the pixels much redder or darker than the typical skin (robust z > 2.5, dilated). When a
    step would leave fewer than ``_MIN_SKIN_PX`` pixels it is skipped. Computed at the image's
    own size (call on a reduced image for speed).
    """
    rgb = np.asarray(rgb, dtype=np.uint8)
    lesion = None if lesion_mask is None else _as_bool_mask(lesion_mask, rgb.shape[:2])
    return _skin_and_lesion(_lab_fast(rgb), rgb, lesion)[0]


def _srgb_to_linear(rgb: np.ndarray) -> np.ndarray:
    """Linear-light RGB, float32 in [0, 1], of sRGB uint8 (..., 3) (IEC 61966-2-1 curve)."""
    return _LINEAR_LUT[rgb]


def _linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """sRGB-encoded float32 in [0, 1] of linear RGB (clipped to [0, 1])."""
    x = np.clip(lin, 0.0, 1.0).astype(np.float32)
    return np.where(x <= 0.0031308, 12.92 * x,
                    1.055 * np.power(x, 1 / 2.4, dtype=np.float32) - 0.055).astype(np.float32)


_c = np.arange(256, dtype=np.float64) / 255.0
_LINEAR_LUT = np.where(_c <= 0.04045, _c / 12.92, ((_c + 0.055) / 1.055) ** 2.4).astype(np.float32)
_Y_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _too_chromatic(lab: np.ndarray) -> np.ndarray:
    """Pixels too colourful to be a white reference (CIELAB chroma ≥ ``_WP_MAX_CHROMA``)."""
    return np.hypot(lab[..., 1], lab[..., 2]) >= _WP_MAX_CHROMA


def exposure_gain(lin: np.ndarray, skin: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Luminance white-patch gain that brings the image's reference white to Y = 1.

    ``lin``: (H, W, 3) linear RGB in [0, 1]; ``skin``: (H, W) bool skin mask; ``exclude``:
    (H, W) bool pixels not to use as reference (the lesion, strongly coloured pixels). The
    reference is the 99.9th
    percentile of luminance Y (specular highlights reflect the illuminant, and clinical photos
    often show white background). It only counts as a reference when it is clearly brighter
    than the skin: with ``r`` = reference / median skin Y the gain is ``(1/reference)**w`` with
    ``w = clip((r − 1.2) / (1.7 − 1.2), 0, 1)`` (``_WP_RATIO``), so an image that is skin only
    (r ≈ 1, e.g. a flat or slightly noisy patch) is left as it is. Gain capped at ``_MAX_GAIN``.
    The ratio range was chosen on the Fitzpatrick17k "fit" half (md5hash 0–7).
    """
    Y = lin[..., 0] * _Y_WEIGHTS[0] + lin[..., 1] * _Y_WEIGHTS[1] + lin[..., 2] * _Y_WEIGHTS[2]
    ref_px = Y if exclude is None or exclude.all() else Y[~exclude]
    ref = float(np.percentile(ref_px, _WP_PERCENTILE))
    skin_y = float(np.median(_sub(Y[skin]))) if skin.any() else ref
    if ref <= 1e-4:
        return 1.0
    r = ref / max(skin_y, 1e-6)
    lo, hi = _WP_RATIO
    w = float(np.clip((r - lo) / (hi - lo), 0.0, 1.0))
    return float(min((1.0 / ref) ** w, _MAX_GAIN))


def _summarise(lab_px: np.ndarray, monk: bool = True) -> tuple[float, int]:
    """(median per-pixel ITA in degrees, nearest Monk tone of the median colour) of (N, 3) LAB."""
    ita = float(np.median(np.degrees(np.arctan2(lab_px[:, 0] - 50.0, lab_px[:, 2]))))
    if not monk:
        return ita, 0
    monk = nearest_monk(np.median(_sub(lab_px.reshape(-1, 3)), axis=0).astype(np.float32))
    return ita, monk


def calibrate_ita(ita_raw, ita_exposed, knots=_CAL_KNOTS,
                  exposure_weight: float = _CAL_EXPOSURE_WEIGHT):
    """Calibrated ITA (Chardon scale) from the raw and the fully exposure-corrected median ITA.

    ``s = ita_raw + exposure_weight·(ita_exposed − ita_raw)`` mapped piecewise-linearly so that
    ``knots`` (decreasing) land on the Chardon boundaries 55 / 41 / 28 / 10 / −30, slope 1 beyond
    the outer knots. Scalars or arrays; returns float or float64 array.
    """
    s = np.asarray(ita_raw, dtype=np.float64)
    s = s + exposure_weight * (np.asarray(ita_exposed, dtype=np.float64) - s)
    k = np.asarray(knots, dtype=np.float64)[::-1]           # ascending
    c = np.asarray(_CHARDON_BOUNDS, dtype=np.float64)[::-1]
    out = np.interp(s, k, c)
    out = np.where(s > k[-1], c[-1] + (s - k[-1]), out)
    out = np.where(s < k[0], c[0] + (s - k[0]), out)
    return float(out) if np.ndim(out) == 0 else out


def compute_skin_tone(rgb: np.ndarray, lesion_mask: np.ndarray | None = None, *,
                      normalise: bool = True, calibrate: bool = True) -> dict:
    """Skin tone of one RGB uint8 (H, W, 3) image (long side ≤ 512; reduced to 128 internally).

    Steps: skin mask (:func:`skin_mask`, on the image as taken); exposure normalisation
    (:func:`exposure_gain`, skipped when ``normalise`` is False); CIELAB of the skin pixels;
    ITA = median of the per-pixel ITA; Monk = nearest to the median L*a*b* (exposure-normalised
    when ``normalise``). With ``calibrate`` (default) ``ita`` is :func:`calibrate_ita` of the raw
    and the exposure-normalised ITA (see the module docstring: *not* the physical ITA); with
    ``calibrate=False`` it is the physical median ITA (normalised when ``normalise``).
    ``ita_category`` / ``tone_bucket`` are always those of the returned ``ita``.

    Returns exactly ``{"ita": float degrees, "ita_category": str, "tone_bucket": str,
    "monk_estimate": int 1–10, "skin_fraction": float 0–1 (share of working-size pixels in the
    mask)}``.

    Fallback when the mask keeps fewer than ``_MIN_SKIN_PX`` pixels: the statistics are taken
    over all pixels that are neither near-black nor glare (or, failing that, the whole image);
    ``skin_fraction`` still reports the (small) mask share so callers can flag the value.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected RGB (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    work = _work_image(rgb)
    lab = _lab_fast(work)
    lesion = None if lesion_mask is None else _as_bool_mask(lesion_mask, work.shape[:2])
    mask, excluded = _skin_and_lesion(lab, work, lesion)
    fraction = float(mask.mean())
    sel = mask
    if sel.sum() < _MIN_SKIN_PX:
        L = lab[..., 0]
        sel = (L > _MIN_L) & (L < _GLARE_L)
        if sel.sum() < _MIN_SKIN_PX:
            sel = np.ones(L.shape, dtype=bool)
    raw_px = rgb_to_lab(work[sel])
    px = raw_px
    if normalise or calibrate:
        lin = _srgb_to_linear(work)
        gain = exposure_gain(lin, sel, excluded | _too_chromatic(lab))
        if gain != 1.0:
            px = rgb_to_lab(_linear_to_srgb(lin[sel] * gain))
    ita_raw, monk = _summarise(raw_px)
    ita_exposed = ita_raw
    if px is not raw_px:
        ita_exposed, monk_exposed = _summarise(px)
        if normalise:
            monk = monk_exposed
    if calibrate:
        ita = calibrate_ita(ita_raw, ita_exposed)
    else:
        ita = ita_exposed if normalise else ita_raw
    return {
        "ita": ita,
        "ita_category": ita_category(ita),
        "tone_bucket": tone_bucket(ita),
        "monk_estimate": monk,
        "skin_fraction": fraction,
    }
