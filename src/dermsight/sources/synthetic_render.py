"""Drawing the synthetic dataset's photos (:mod:`dermsight.sources.synthetic`): skin of a Monk
tone, one lesion of a class, hair, then each photo of it with its crop, lighting and optional
degradation. Pure numpy / OpenCV, seeded; no I/O.
"""

from __future__ import annotations

import cv2
import numpy as np

#: the ten Monk skin tones, lightest first (sRGB)
MONK_HEX = ("#f6ede4", "#f3e7db", "#f7ead0", "#eadaba", "#d7bd96",
            "#a07e56", "#825c43", "#604134", "#3a312a", "#292420")


# --------------------------------------------------------------------------- colour helpers


def _lin(c) -> np.ndarray:
    c = np.asarray(c, np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def _srgb(lin: np.ndarray) -> np.ndarray:
    x = np.clip(lin, 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return s


def _hex_lin(h: str) -> np.ndarray:
    h = h.lstrip("#")
    return _lin([int(h[i:i + 2], 16) / 255 for i in (0, 2, 4)])


MONK_LIN = np.stack([_hex_lin(h) for h in MONK_HEX])


def _noise(rng, shape, cells) -> np.ndarray:
    """Smooth noise, zero mean, unit-ish std, with about ``cells`` bumps across the field."""
    h, w = shape
    cells = max(2, int(cells))
    small = rng.standard_normal((cells + 2, cells + 2)).astype(np.float32)
    big = cv2.resize(small, (w + 2 * w // cells, h + 2 * h // cells),
                     interpolation=cv2.INTER_CUBIC)
    oy, ox = h // cells, w // cells
    out = big[oy:oy + h, ox:ox + w]
    return (out - out.mean()) / (out.std() + 1e-6)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return x
    return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT101)


def _ramp(t: float, a, b) -> np.ndarray:
    """Interpolate colour parameters from light (t=0) to dark skin (t=1)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a + (b - a) * np.float32(t)


def _blend(img, colour_img, alpha) -> np.ndarray:
    a = alpha[..., None]
    return img * (1 - a) + colour_img * a


def _polar_shape(rng, dist, theta, radius, irregular) -> np.ndarray:
    """Radius field r(theta) of a blob; ``irregular`` 0 = ellipse-like, 1 = very irregular."""
    r = np.ones_like(theta)
    r += 0.06 * np.cos(2 * (theta - rng.uniform(0, np.pi)))  # slight ellipse
    for k in range(2, 9):
        amp = irregular * rng.uniform(0.02, 0.14) / (1 + 0.25 * (k - 2))
        r += amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return dist / (radius * r)  # < 1 inside


# --------------------------------------------------------------------------- scene rendering


def render_patient(patient: dict, size: int, seed: int):
    """Yield ``(csv row, RGB uint8 image, uint8 mask)`` for every photo of one planned patient
    (a dict of :func:`dermsight.sources.synthetic._plan`), seeded by ``seed`` and the patient."""
    rng = np.random.default_rng([seed, patient["index"], 2])
    S = 2 * size
    unit = size / 128.0  # pixel scale relative to the 128 px reference
    skin, tone = _skin(rng, patient["monk"], S, unit)
    lin, alpha, diameter_px = _lesion(rng, patient["label"], skin, tone, S, unit, size)
    lin = _hair(rng, lin, S, unit)
    # ~40 mm across a 128 px view; noisy as a measured diameter would be
    mm_per_px = 40.0 / size * rng.uniform(0.85, 1.15)
    diameter_mm = round(float(diameter_px * mm_per_px), 1)
    for j, (kind, severity) in enumerate(patient["images"]):
        irng = np.random.default_rng([seed, patient["index"], 3, j])
        image, mask = _photo(irng, lin, alpha, size, unit, kind, severity)
        image_id = f"{patient['patient_id']}_{j}"
        row = {k: patient[k] for k in ("patient_id", "label", "age", "sex", "body_site",
                                       "symptoms", "fitzpatrick", "monk")}
        row.update(image_id=image_id, diameter_mm=diameter_mm, degradation=kind or "",
                   severity=severity, image_file=f"{image_id}.png",
                   mask_file=f"{image_id}_mask.png")
        yield row, image, mask


def _skin(rng, monk: int, S: int, unit: float):
    base = MONK_LIN[monk - 1] * rng.uniform(0.94, 1.06, size=3).astype(np.float32)
    tone = (monk - 1) / 9.0
    # melanin mottling: browner where the noise is high
    mott = _noise(rng, (S, S), 4)[..., None]
    img = base * (1 + 0.07 * mott * np.array([0.8, 1.0, 1.2], np.float32))
    fine = _blur(rng.standard_normal((S, S)).astype(np.float32), 0.7 * unit)
    img = img * (1 + 0.06 * fine[..., None])
    # pores: sparse small dark dots
    pores = (rng.random((S, S)) < 0.006 / unit ** 2).astype(np.float32)
    pores = _blur(pores, 0.8 * unit)
    pores = pores / (pores.max() + 1e-6)
    img = img * (1 - 0.22 * pores[..., None])
    # skin lines: faint crossing lines from stretched noise
    lines = cv2.resize(rng.standard_normal((S // 2, 6)).astype(np.float32), (S, S))
    img = img * (1 - 0.025 * np.abs(lines)[..., None])
    return img.astype(np.float32), tone


def _grids(S: int, cx: float, cy: float):
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    return np.hypot(dx, dy), np.arctan2(dy, dx), xx, yy


def _erythema(tone: float, strength: float = 1.0) -> np.ndarray:
    """Transmittance of inflamed skin: pink-red on light skin, violaceous-dark on dark skin."""
    t = _ramp(tone, (0.92, 0.42, 0.46), (0.52, 0.30, 0.46))
    return (1 - strength * (1 - t)).astype(np.float32)


def _lesion(rng, label: str, skin, tone, S, unit, size):
    c = S / 2
    dist, theta, xx, yy = _grids(S, c, c)
    fn = {"nevus": _nevus, "melanoma": _melanoma, "eczema": _eczema,
          "psoriasis": _psoriasis, "acne": _acne}[label]
    img, alpha = fn(rng, skin, tone, dist, theta, xx, yy, S, unit, size)
    ys, xs = np.nonzero(alpha > 0.5)
    diameter = float(max(np.ptp(xs), np.ptp(ys)) + 1) if len(xs) else 0.0
    return img.astype(np.float32), alpha.astype(np.float32), diameter


def _nevus(rng, skin, tone, dist, theta, xx, yy, S, unit, size):
    radius = size * rng.uniform(0.09, 0.17)
    rel = _polar_shape(rng, dist, theta, radius, irregular=rng.uniform(0.0, 0.25))
    alpha = _blur(np.clip((1 - rel) * radius / (1.2 * unit) + 0.5, 0, 1), 0.6 * unit)
    dark = rng.uniform(0.55, 1.1)
    brown = np.array([0.17, 0.10, 0.055], np.float32) ** dark
    # uniform brown, slightly darker centre, fine even pigment network
    centre = 1 - 0.25 * np.clip(1 - rel, 0, 1)[..., None]
    net = 1 + 0.06 * _noise(rng, (S, S), S / (4 * unit))[..., None]
    colour = skin * brown * centre * net
    if rng.random() < 0.3:  # some nevi are raised/lighter (dermal)
        colour = skin * (brown ** 0.5) * net
    return _blend(skin, colour, alpha), alpha


def _melanoma(rng, skin, tone, dist, theta, xx, yy, S, unit, size):
    radius = size * rng.uniform(0.14, 0.26)
    # asymmetric: shift the shape's centre of mass, irregular notched border
    rel = _polar_shape(rng, dist, theta, radius, irregular=rng.uniform(0.8, 1.4))
    rel = rel * (1 + 0.12 * _noise(rng, (S, S), 10))
    edge = np.clip((1 - rel) * radius / (2.5 * unit) + 0.5, 0, 1)
    alpha = _blur(edge, 1.0 * unit) * np.clip(0.8 + 0.4 * _noise(rng, (S, S), 5), 0.55, 1)
    ang = rng.uniform(0, 2 * np.pi)
    side = ((xx - S / 2) * np.cos(ang) + (yy - S / 2) * np.sin(ang)) / radius
    # colour zones: light brown, dark brown, black, blue-grey, (regression) white/pink
    fields = np.stack([_noise(rng, (S, S), 6) for _ in range(5)], axis=-1)
    fields[..., 2] += 0.9 * side  # black concentrated on one side
    fields[..., 1] += 0.5
    fields[..., 3] -= rng.uniform(0.0, 0.9)
    fields[..., 4] -= rng.uniform(0.6, 1.6)
    w = np.exp(3.0 * fields)
    w /= w.sum(axis=-1, keepdims=True)
    light_b = skin * _ramp(tone, (0.40, 0.27, 0.17), (0.30, 0.22, 0.17))
    dark_b = skin * _ramp(tone, (0.12, 0.07, 0.04), (0.16, 0.11, 0.08))
    black = np.minimum(skin, 0.02) * np.array([0.3, 0.27, 0.27], np.float32) + 0.002
    blue = _ramp(tone, (0.13, 0.16, 0.22), (0.04, 0.05, 0.08)) * np.ones_like(skin)
    white = skin * _ramp(tone, (0.95, 0.75, 0.75), (1.6, 1.4, 1.4))
    colour = (w[..., 0:1] * light_b + w[..., 1:2] * dark_b + w[..., 2:3] * black
              + w[..., 3:4] * blue + w[..., 4:5] * white)
    colour *= 1 + 0.1 * _noise(rng, (S, S), S / (3 * unit))[..., None]
    return _blend(skin, colour, alpha), alpha


def _eczema(rng, skin, tone, dist, theta, xx, yy, S, unit, size):
    radius = size * rng.uniform(0.22, 0.34)
    f = _noise(rng, (S, S), 5) * 0.7 + 1.6 * (1 - dist / radius)
    f = f + 0.35 * _noise(rng, (S, S), 14)  # ragged, ill-defined
    patch = 1 / (1 + np.exp(-(f - 0.6) / 0.35))
    patch = _blur(patch, 2.5 * unit)
    alpha = patch
    fine = _noise(rng, (S, S), S / (2.5 * unit))
    strength = np.clip(rng.uniform(0.65, 0.95) * (1 + 0.3 * fine), 0, 1)
    ery = _erythema(tone)
    colour = skin * (1 - strength[..., None] * (1 - ery))
    if tone > 0.45:  # hyperpigmented / lichenified on dark skin
        colour = colour * _ramp((tone - 0.45) / 0.55, (1, 1, 1), (0.72, 0.66, 0.72))
    # tiny papulovesicles
    dots = _blur((rng.random((S, S)) < 0.01 / unit ** 2).astype(np.float32), 0.7 * unit)
    colour = colour * (1 - 0.5 * np.clip(dots * 4, 0, 1)[..., None] * (1 - ery))
    img = _blend(skin, colour, alpha)
    # dry, ashy flecks (much more visible on dark skin)
    flecks = np.clip(_noise(rng, (S, S), S / (2 * unit)) - 1.3, 0, 1) * alpha
    ash = skin * 0 + _ramp(tone, (0.75, 0.70, 0.68), (0.25, 0.23, 0.23))
    img = _blend(img, ash, np.clip(flecks * rng.uniform(0.4, 0.8), 0, 1))
    # excoriations: short scratch lines, crusted dark red
    scratch = np.zeros((S, S), np.float32)
    for _ in range(int(rng.integers(3, 9))):
        r0 = radius * 0.7 * np.sqrt(rng.random())
        a0 = rng.uniform(0, 2 * np.pi)
        x0, y0 = S / 2 + r0 * np.cos(a0), S / 2 + r0 * np.sin(a0)
        ang, length = rng.uniform(0, np.pi), size * rng.uniform(0.04, 0.12)
        p0 = (int(x0 * 16), int(y0 * 16))
        p1 = (int((x0 + length * np.cos(ang)) * 16), int((y0 + length * np.sin(ang)) * 16))
        cv2.line(scratch, p0, p1, 1.0, max(1, int(round(unit))), cv2.LINE_AA, shift=4)
    crust = skin * _ramp(tone, (0.55, 0.16, 0.12), (0.45, 0.25, 0.25))
    img = _blend(img, crust, np.clip(scratch * 0.8, 0, 1))
    alpha = np.maximum(alpha, scratch)
    return img, alpha


def _psoriasis(rng, skin, tone, dist, theta, xx, yy, S, unit, size):
    inside = np.zeros((S, S), np.float32)
    n_plaques = int(rng.integers(1, 4))
    for k in range(n_plaques):
        r = size * (rng.uniform(0.16, 0.26) if k == 0 else rng.uniform(0.06, 0.13))
        if k == 0:
            cx = cy = S / 2
        else:
            a0, r0 = rng.uniform(0, 2 * np.pi), size * rng.uniform(0.3, 0.45)
            cx, cy = S / 2 + r0 * np.cos(a0), S / 2 + r0 * np.sin(a0)
        d, th = np.hypot(xx - cx, yy - cy), np.arctan2(yy - cy, xx - cx)
        rel = _polar_shape(rng, d, th, r, irregular=rng.uniform(0.3, 0.7))
        inside = np.maximum(inside, np.clip((1 - rel) * r / (1.0 * unit) + 0.5, 0, 1))
    alpha = _blur(inside, 0.7 * unit)
    salmon = _ramp(tone, (0.95, 0.48, 0.40), (0.60, 0.40, 0.52))
    thick = 1 + 0.12 * _noise(rng, (S, S), 8)[..., None]
    colour = skin * salmon * thick
    if tone > 0.45:  # plaques on dark skin look violaceous / grey-brown
        colour = colour * 0.85
    # silvery-white scale in flaky clumps, not reaching the very edge
    core = _blur(np.clip(inside * 3 - 2, 0, 1), 2 * unit)
    flake = _noise(rng, (S, S), 7) + 0.5 * _noise(rng, (S, S), S / (3 * unit))
    cover = np.clip((flake + rng.uniform(-0.6 + 0.5 * tone, 0.3)) / 0.6, 0, 1) * core
    scale = _ramp(tone, (0.62, 0.63, 0.66), (0.34, 0.34, 0.36)) * (
        1 + 0.15 * _noise(rng, (S, S), S / (2 * unit)))[..., None]
    colour = _blend(colour, scale, cover * rng.uniform(0.45, 0.8))
    return _blend(skin, colour, alpha), alpha


def _acne(rng, skin, tone, dist, theta, xx, yy, S, unit, size):
    ery = _erythema(tone)
    red = ery * _ramp(tone, (0.95, 0.8, 0.8), (0.8, 0.75, 0.8))
    img = skin.copy()
    alpha = np.zeros((S, S), np.float32)
    spread = size * rng.uniform(0.22, 0.32)
    n = int(rng.integers(5, 14))
    pih = tone > 0.4 and rng.random() < 0.8
    for k in range(n + (int(rng.integers(2, 6)) if pih else 0)):
        rr = spread * np.sqrt(rng.random()) if k else 0.0
        a0 = rng.uniform(0, 2 * np.pi)
        cx, cy = S / 2 + rr * np.cos(a0), S / 2 + rr * np.sin(a0)
        r = size * (rng.uniform(0.02, 0.035) if k >= n else rng.uniform(0.018, 0.04))
        # work on a window around the spot only
        h = int(np.ceil(4 * r)) + 1
        x0, x1 = max(0, int(cx) - h), min(S, int(cx) + h + 1)
        y0, y1 = max(0, int(cy) - h), min(S, int(cy) + h + 1)
        win, sk = img[y0:y1, x0:x1], skin[y0:y1, x0:x1]
        wx, wy = xx[y0:y1, x0:x1] - cx, yy[y0:y1, x0:x1] - cy
        d2 = wx ** 2 + wy ** 2
        if k >= n:  # post-inflammatory hyperpigmentation macule (dark skin)
            a = np.exp(-d2 / (2 * r * r)) * 0.9
            win[:] = _blend(win, sk * np.array([0.55, 0.48, 0.45], np.float32), a)
            continue
        a = np.clip(1.6 * np.exp(-d2 / (2 * r * r)), 0, 1)
        out = _blend(win, sk * red, a)
        # dome highlight
        hl = np.exp(-((wx + 0.35 * r) ** 2 + (wy + 0.35 * r) ** 2) / (0.3 * r * r))
        out *= 1 + (0.25 + 0.45 * tone) * hl[..., None]
        if rng.random() < 0.45:  # pustule: white-yellow centre
            rp = r * rng.uniform(0.3, 0.45)
            pa = np.clip(1.5 * np.exp(-d2 / (2 * rp * rp)), 0, 1)
            out = _blend(out, np.array([0.80, 0.74, 0.50], np.float32), pa)
        win[:] = out
        aw = alpha[y0:y1, x0:x1]
        np.maximum(aw, (a > 0.5).astype(np.float32), out=aw)
    alpha = _blur(alpha, 0.5 * unit)
    return img, alpha


def _hair(rng, img, S, unit):
    if rng.random() > 0.35:
        return img
    layer = np.zeros((S, S), np.float32)
    for _ in range(int(rng.integers(1, 8))):
        x, y = rng.uniform(0, S, size=2)
        ang = rng.uniform(0, 2 * np.pi)
        pts = []
        for _ in range(12):
            pts.append((int(x * 16), int(y * 16)))
            ang += rng.normal(0, 0.12)
            x, y = x + S / 12 * np.cos(ang), y + S / 12 * np.sin(ang)
        cv2.polylines(layer, [np.array(pts, np.int32)], False, 1.0,
                      max(1, int(round(unit))), cv2.LINE_AA, shift=4)
    colour = np.array([0.012, 0.009, 0.007], np.float32) * rng.uniform(0.5, 3)
    return _blend(img, colour * np.ones_like(img), layer * 0.85)


# --------------------------------------------------------------------------- photographing


def _photo(rng, scene, alpha, size, unit, kind, severity):
    """One photo of the scene: crop/rotate/scale, lighting, optional degradation -> uint8."""
    S = scene.shape[0]
    frame = size
    sub = size
    if kind == "distant":
        sub = int(round(size * (0.62 - 0.35 * severity)))
    scale = rng.uniform(0.8, 1.2) * sub / size
    angle = rng.uniform(0, 360)
    M = cv2.getRotationMatrix2D((S / 2, S / 2), angle, scale)
    off = rng.uniform(-0.12, 0.12, size=2) * sub
    M[:, 2] += np.array([sub / 2 - S / 2, sub / 2 - S / 2]) + off
    if rng.random() < 0.5:  # mirror
        M[0] = -M[0]
        M[0, 2] += sub
    view = cv2.warpAffine(scene, M, (sub, sub), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
    valpha = cv2.warpAffine(alpha, M, (sub, sub), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    # lighting: exposure, white balance, smooth falloff across the frame
    yy, xx = np.mgrid[0:sub, 0:sub].astype(np.float32) / sub - 0.5
    ang = rng.uniform(0, 2 * np.pi)
    light = (1 + rng.uniform(0, 0.35) * (xx * np.cos(ang) + yy * np.sin(ang))
             + 0.05 * _noise(rng, (sub, sub), 3))
    gain = rng.uniform(0.85, 1.12)
    wb = rng.uniform(0.96, 1.04, size=3).astype(np.float32)
    img = view * light[..., None] * gain * wb
    if kind == "distant":
        img, valpha = _distant(rng, img, valpha, frame, unit)
    img = _degrade(rng, img, kind, severity, frame, unit)
    s = _srgb(img)
    s = s + rng.normal(0, 0.006 + (0.02 * severity if kind == "dark" else 0), s.shape)
    image = np.clip(np.rint(s * 255), 0, 255).astype(np.uint8)
    mask = np.where(valpha > 0.5, 255, 0).astype(np.uint8)
    return image, mask


def _distant(rng, subject, salpha, frame, unit):
    """Paste a small view of the skin into a larger non-skin scene (wall, fabric, floor)."""
    sub = subject.shape[0]
    base = _lin(rng.choice(np.array([[0.85, 0.83, 0.78], [0.45, 0.5, 0.58], [0.3, 0.3, 0.32],
                                     [0.75, 0.7, 0.6], [0.2, 0.28, 0.22], [0.6, 0.2, 0.2]])))
    yy, xx = np.mgrid[0:frame, 0:frame].astype(np.float32) / frame - 0.5
    ang = rng.uniform(0, 2 * np.pi)
    bg = base * (1 + 0.4 * (xx * np.cos(ang) + yy * np.sin(ang)))[..., None]
    weave = _blur(rng.standard_normal((frame, frame)).astype(np.float32), 0.8 * unit)
    bg = bg * (1 + 0.08 * weave[..., None] + 0.1 * _noise(rng, (frame, frame), 4)[..., None])
    # soft-edged limb-like patch of skin
    y, x = np.mgrid[0:sub, 0:sub].astype(np.float32) / sub - 0.5
    ex = (x / 0.5) ** 2 + (y / rng.uniform(0.42, 0.5)) ** 2
    shape = _blur(np.clip((1 - ex) * 6, 0, 1), 1.0 * unit)
    x0, y0 = (int(v) for v in rng.integers(0, frame - sub + 1, size=2))
    out = bg.astype(np.float32)
    region = out[y0:y0 + sub, x0:x0 + sub]
    out[y0:y0 + sub, x0:x0 + sub] = _blend(region, subject, shape)
    mask = np.zeros((frame, frame), np.float32)
    mask[y0:y0 + sub, x0:x0 + sub] = salpha * shape
    return out, mask


def _degrade(rng, img, kind, sev, size, unit):
    if kind is None or kind == "distant":
        return img
    if kind == "dark":
        return img * (0.30 - 0.24 * sev)
    if kind == "overexposed":  # exposed for a much brighter scene, whatever the skin tone
        lum = float(np.median(img @ np.array([0.2126, 0.7152, 0.0722], np.float32)))
        gain = max(1.6 + 1.6 * sev, (0.45 + 0.6 * sev) / max(lum, 1e-4))
        return img * gain + 0.04 * sev
    if kind == "blur":
        sigma = unit * (1.3 + 2.7 * sev)
        if rng.random() < 0.5:
            return _blur(img, sigma)
        length = max(3, int(round(sigma * 3)))  # motion blur along a random direction
        k = np.zeros((length, length), np.float32)
        ang = rng.uniform(0, np.pi)
        c = (length - 1) / 2
        cv2.line(k, (int(round(c - c * np.cos(ang))), int(round(c - c * np.sin(ang)))),
                 (int(round(c + c * np.cos(ang))), int(round(c + c * np.sin(ang)))), 1.0, 1)
        return cv2.filter2D(img, -1, k / k.sum(), borderType=cv2.BORDER_REFLECT101)
    if kind == "glare":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        spec = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0.15, 0.85, size=2) * size
            rx = size * (0.05 + 0.12 * sev) * rng.uniform(0.6, 1.4)
            ry = rx * rng.uniform(0.3, 1.0)
            a = rng.uniform(0, np.pi)
            u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
            v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
            spec += np.exp(-((u / rx) ** 2 + (v / ry) ** 2) * 2)
        haze = 0.12 * sev
        out = img * (1 - haze) + haze * 0.8
        return out + (1.5 + 2.5 * sev) * spec[..., None]
    if kind == "color_cast":
        casts = np.array([[1.0, 0.70, 0.40], [0.62, 0.82, 1.0], [0.78, 1.0, 0.66],
                          [1.0, 0.68, 0.95]], np.float32)
        cast = casts[int(rng.integers(len(casts)))] ** (0.6 + 0.9 * sev)
        cast = cast / (0.2126 * cast[0] + 0.7152 * cast[1] + 0.0722 * cast[2])
        return img * cast
    raise ValueError(f"unknown degradation {kind!r}")  # pragma: no cover
