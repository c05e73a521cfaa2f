"""Seeded synthetic photo degradations of known kind and severity (pure numpy / OpenCV).

Used to benchmark the quality checks (``benchmarks/quality_degradations.py``) and, later, to
train a photo-quality head on the fly (:func:`random_degradation`).

Every function takes and returns an RGB uint8 array of shape (H, W, 3); the output has the same
shape. ``severity`` is in [0, 1]: 0 leaves the photo as it is (up to rounding), 1.0 is a photo a
person would clearly be asked to retake. Randomness (spot positions, tint, blur type, ...) comes
only from the ``rng`` passed in, so a seed reproduces the result exactly.

Kinds (:data:`DEGRADATIONS`):

- ``dark``: under-exposure, ``out = gain * x ** gamma`` with gain 1 -> 0.25 and gamma 1 -> 1.8,
  plus signal-dependent sensor noise (luminance and chroma).
- ``overexposed``: ``out = clip(gain * x ** gamma)`` with gain 1 -> 1.8 and gamma 1 -> 0.6, so
  skin clips to white.
- ``blur``: Gaussian defocus (sigma up to 1.2 % of the long side) or linear motion blur (length
  up to 4 % of the long side, random angle), chosen at random.
- ``glare``: 1-4 white elliptical specular spots with a saturated core and soft falloff, radii up
  to 6-14 % of the long side.
- ``color_cast``: per-channel gain tint (warm tungsten, green fluorescent, cool shade or magenta
  LED), luminance-preserving.
- ``distant``: the photo shrunk to ~30 % of its linear size (~9 % of the area) and placed on a
  blurred, noisy, low-saturation wall-like background (grey, off-white, greige, blue-grey,
  pale green or dark grey).
"""

from __future__ import annotations

import cv2
import numpy as np

DEGRADATIONS = ("dark", "overexposed", "blur", "glare", "color_cast", "distant")

_TINTS = {  # per-channel (R, G, B) gain at severity 1, before luminance normalisation
    "tungsten": (1.0, 0.72, 0.42),
    "fluorescent_green": (0.66, 1.0, 0.64),
    "cool_shade": (0.55, 0.74, 1.0),
    "magenta_led": (1.0, 0.62, 0.95),
}
_WALLS = (  # base RGB colours of the "distant" background
    (128, 128, 128), (232, 230, 225), (200, 192, 178), (170, 180, 192),
    (190, 200, 185), (60, 60, 62), (215, 210, 200),
)
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _check(rgb: np.ndarray, kind: str, severity: float) -> None:
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation kind {kind!r}; expected one of {DEGRADATIONS}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")


def _to_u8(x: np.ndarray) -> np.ndarray:
    """float image in 0-1 -> uint8 0-255 (clipped, rounded)."""
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _dark(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    gain = 1.0 - 0.75 * s * rng.uniform(0.9, 1.1)
    out = gain * np.power(x, 1.0 + 0.8 * s)
    sigma = s * (0.006 + 0.02 * np.sqrt(out))  # read noise + shot noise, 0-1 units
    lum = rng.standard_normal(x.shape[:2] + (1,), dtype=np.float32)
    chroma = rng.standard_normal(x.shape, dtype=np.float32)
    return out + sigma * (0.8 * lum + 0.6 * chroma)


def _overexposed(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    gain = 1.0 + 0.8 * s * rng.uniform(0.9, 1.1)
    return gain * np.power(x, 1.0 - 0.4 * s)


def _blur(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    side = max(x.shape[:2])
    if s <= 0:
        return x
    if rng.random() < 0.5:
        sigma = s * 0.012 * side * rng.uniform(0.9, 1.1)
        return cv2.GaussianBlur(x, (0, 0), max(sigma, 0.3))
    length = max(2, int(round(s * 0.04 * side * rng.uniform(0.9, 1.1))))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(x, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def _glare(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    if s <= 0:
        return x
    h, w = x.shape[:2]
    side = max(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    alpha = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(1, 5))):
        cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        ra = s * rng.uniform(0.06, 0.14) * side + 1.0
        rb = ra * rng.uniform(0.4, 1.0)
        t = rng.uniform(0, np.pi)
        u = ((xx - cx) * np.cos(t) + (yy - cy) * np.sin(t)) / ra
        v = (-(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)) / rb
        alpha = np.maximum(alpha, np.minimum(1.0, 1.6 * np.exp(-1.2 * (u * u + v * v))))
    alpha *= min(1.0, 0.5 + s)  # peak opacity: saturated from severity 0.5 up
    white = np.array(rng.uniform(0.97, 1.0, 3), np.float32)
    return x * (1 - alpha[..., None]) + white * alpha[..., None]


def _color_cast(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    tint = np.array(list(_TINTS.values())[int(rng.integers(len(_TINTS)))], np.float32)
    gains = 1.0 + s * rng.uniform(0.9, 1.1) * (tint - 1.0)
    gains /= float(_LUMA @ gains)
    return x * gains


def _wall(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Blurred, noisy, low-saturation background texture, float 0-1, shape (h, w, 3)."""
    base = np.array(_WALLS[int(rng.integers(len(_WALLS)))], np.float32) / 255.0
    base = base * rng.uniform(0.85, 1.1)
    low = cv2.resize(rng.normal(0, 0.04, (6, 6)).astype(np.float32), (w, h),
                     interpolation=cv2.INTER_CUBIC)
    ramp = np.linspace(rng.uniform(-0.08, 0.0), rng.uniform(0.0, 0.08), h, dtype=np.float32)
    fine = cv2.GaussianBlur(rng.normal(0, 0.02, (h, w)).astype(np.float32), (0, 0), 1.0)
    shade = (low + ramp[:, None] + fine)[..., None]
    return base * (1.0 + shade) + rng.normal(0, 0.008, (h, w, 3)).astype(np.float32)


def _distant(x: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    h, w = x.shape[:2]
    k = 1.0 - s * rng.uniform(0.65, 0.75)
    sh, sw = max(2, round(h * k)), max(2, round(w * k))
    if (sh, sw) == (h, w):
        return x
    small = cv2.resize(x, (sw, sh), interpolation=cv2.INTER_AREA)
    out = _wall(h, w, rng)
    top, left = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    mask = np.zeros((h, w), np.float32)
    mask[top:top + sh, left:left + sw] = 1.0
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.02 * min(sh, sw)))[..., None]
    canvas = out.copy()
    canvas[top:top + sh, left:left + sw] = small
    return canvas * mask + out * (1 - mask)


_FUNCS = {"dark": _dark, "overexposed": _overexposed, "blur": _blur, "glare": _glare,
          "color_cast": _color_cast, "distant": _distant}


def degrade(rgb: np.ndarray, kind: str, severity: float,
            rng: np.random.Generator) -> np.ndarray:
    """Apply one degradation.

    Args:
        rgb: uint8 array (H, W, 3), RGB.
        kind: one of :data:`DEGRADATIONS`.
        severity: in [0, 1]; 1.0 = clearly needs a retake.
        rng: source of all randomness (seed it for reproducible output).

    Returns:
        uint8 array (H, W, 3), RGB, same shape as ``rgb``.

    Raises:
        ValueError: unknown ``kind`` (the message names it), bad array or severity.
    """
    _check(rgb, kind, severity)
    x = rgb.astype(np.float32) / 255.0
    return _to_u8(_FUNCS[kind](x, float(severity), rng))


def random_degradation(rgb: np.ndarray, rng: np.random.Generator, p: float = 0.5,
                       severity_range: tuple[float, float] = (0.3, 1.0),
                       ) -> tuple[np.ndarray, str | None, float]:
    """With probability ``p`` apply one uniformly chosen degradation of random severity.

    Returns:
        ``(image, kind, severity)``: ``kind`` is None and ``severity`` 0.0 when the photo was
        left clean (``image`` is then a copy of ``rgb``).
    """
    if rng.random() >= p:
        return rgb.copy(), None, 0.0
    kind = DEGRADATIONS[int(rng.integers(len(DEGRADATIONS)))]
    severity = float(rng.uniform(*severity_range))
    return degrade(rgb, kind, severity, rng), kind, severity
