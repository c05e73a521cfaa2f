"""Known-answer tests for dermsight.features.skintone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from dermsight.features.skintone import (
    _CAL_EXPOSURE_WEIGHT,
    _CAL_KNOTS,
    ITA_CATEGORIES,
    MONK_SRGB,
    calibrate_ita,
    compute_skin_tone,
    fitzpatrick_group,
    ita_category,
    ita_category_index,
    ita_from_lab,
    nearest_monk,
    rgb_to_lab,
    skin_mask,
    tone_bucket,
)
from dermsight.manifest import PREPARE_COLUMNS

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FITZ = PROJECT_ROOT.parent / "shared" / "data" / "fitzpatrick17k"

MONK_ITA = [83.0, 80.2, 71.8, 64.7, 50.3, 10.9, -20.1, -55.4, -78.4, -84.3]


def lab_by_hand(rgb8: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIELAB (D65, 2°) of one sRGB colour, straight from the published formulas."""
    lin = []
    for c in rgb8:
        v = c / 255
        lin.append(v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4)
    r, g, b = lin
    x = 0.4124 * r + 0.3576 * g + 0.1805 * b
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = 0.0193 * r + 0.1192 * g + 0.9505 * b
    xn, yn, zn = 0.95047, 1.0, 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    fx, fy, fz = f(x / xn), f(y / yn), f(z / zn)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def patch(rgb8, h: int = 150, w: int = 200) -> np.ndarray:
    return np.tile(np.asarray(rgb8, dtype=np.uint8), (h, w, 1))


def test_rgb_to_lab_matches_hand_formula():
    for c in MONK_SRGB:
        got = rgb_to_lab(c)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, lab_by_hand(tuple(int(v) for v in c)), atol=0.3)
    white = rgb_to_lab(np.array([255, 255, 255], dtype=np.uint8))
    np.testing.assert_allclose(white, [100, 0, 0], atol=0.3)
    # float input in [0, 1] gives the same as uint8
    np.testing.assert_allclose(rgb_to_lab(MONK_SRGB / 255.0), rgb_to_lab(MONK_SRGB), atol=1e-3)


def test_ita_formula_and_b_zero():
    assert ita_from_lab(75.0, 25.0) == pytest.approx(45.0)
    assert ita_from_lab(50.0, 10.0) == pytest.approx(0.0)
    assert ita_from_lab(60.0, 0.0) == pytest.approx(90.0)   # no division by zero
    assert ita_from_lab(40.0, 0.0) == pytest.approx(-90.0)
    L, b = np.array([70.0, 30.0]), np.array([20.0, 15.0])
    expect = np.degrees(np.arctan((L - 50) / b))
    np.testing.assert_allclose(ita_from_lab(L, b), expect)


@pytest.mark.parametrize("k", range(10))
def test_monk_patch_ita_known_answer(k):
    c = tuple(int(v) for v in MONK_SRGB[k])
    L, _, b = lab_by_hand(c)
    by_hand = math.degrees(math.atan((L - 50) / b))
    assert by_hand == pytest.approx(MONK_ITA[k], abs=0.35)
    raw = compute_skin_tone(patch(c), calibrate=False)   # physical ITA
    assert raw["ita"] == pytest.approx(by_hand, abs=0.5)
    assert raw["monk_estimate"] == k + 1
    assert raw["ita_category"] == ita_category(by_hand)
    assert raw["skin_fraction"] > 0.9
    tone = compute_skin_tone(patch(c))                     # calibrated (default)
    assert tone["monk_estimate"] == k + 1
    assert tone["ita"] == pytest.approx(calibrate_ita(by_hand, by_hand), abs=0.6)
    assert tone["ita_category"] == ita_category(tone["ita"])
    assert tone["tone_bucket"] == tone_bucket(tone["ita"])


def test_calibration_is_monotone_and_hits_chardon_boundaries():
    for knot, bound in zip(_CAL_KNOTS, (55, 41, 28, 10, -30)):
        assert calibrate_ita(knot, knot) == pytest.approx(bound)
    s = np.linspace(-120, 120, 2001)
    out = calibrate_ita(s, s)
    assert np.all(np.diff(out) > 0)
    assert calibrate_ita(200.0, 200.0) == pytest.approx(55 + 200 - _CAL_KNOTS[0])
    # raw and exposed ITA mixed with the documented weight
    assert calibrate_ita(20.0, 40.0) == pytest.approx(
        calibrate_ita(20.0 + _CAL_EXPOSURE_WEIGHT * 20.0, 20.0 + _CAL_EXPOSURE_WEIGHT * 20.0))


@pytest.mark.parametrize("k", range(10))
def test_nearest_monk_of_reference_colours(k):
    assert nearest_monk(MONK_SRGB[k]) == k + 1
    assert nearest_monk(rgb_to_lab(MONK_SRGB[k])) == k + 1


@pytest.mark.parametrize("ita,cat,idx,bucket", [
    (90, "very_light", 1, "light"), (55.01, "very_light", 1, "light"),
    (55, "light", 2, "light"), (41.01, "light", 2, "light"),
    (41, "intermediate", 3, "medium"), (28.01, "intermediate", 3, "medium"),
    (28, "tan", 4, "medium"), (10.01, "tan", 4, "medium"),
    (10, "brown", 5, "dark"), (-29.99, "brown", 5, "dark"),
    (-30, "dark", 6, "dark"), (-90, "dark", 6, "dark"),
])
def test_category_boundaries(ita, cat, idx, bucket):
    assert ita_category(ita) == cat
    assert ita_category_index(ita) == idx
    assert tone_bucket(ita) == bucket


def test_category_table_is_chardon():
    assert [(n, lo) for n, lo, _ in ITA_CATEGORIES][:5] == [
        ("very_light", 55), ("light", 41), ("intermediate", 28), ("tan", 10), ("brown", -30)]


def _skin_with_lesion(skin_rgb, lesion_rgb, seed=0):
    rng = np.random.default_rng(seed)
    img = patch(skin_rgb, 300, 400).astype(np.int16)
    img += rng.integers(-4, 5, img.shape, dtype=np.int16)  # sensor-like noise
    yy, xx = np.mgrid[:300, :400]
    lesion = (yy - 150) ** 2 / 60**2 + (xx - 200) ** 2 / 90**2 <= 1
    img[lesion] = lesion_rgb
    return np.clip(img, 0, 255).astype(np.uint8), lesion


@pytest.mark.parametrize("skin_k", [1, 4, 6, 8])
@pytest.mark.parametrize("lesion_rgb", [(40, 20, 60), (200, 40, 40), (250, 250, 250)])
def test_lesion_mask_does_not_move_ita(skin_k, lesion_rgb):
    skin = tuple(int(v) for v in MONK_SRGB[skin_k])
    clean = compute_skin_tone(patch(skin, 300, 400))
    img, lesion = _skin_with_lesion(skin, lesion_rgb)
    with_mask = compute_skin_tone(img, lesion)
    assert with_mask["ita"] == pytest.approx(clean["ita"], abs=1.5)
    assert with_mask["monk_estimate"] == clean["monk_estimate"]
    m = skin_mask(img, lesion)
    assert not (m & lesion).any()
    assert m[~lesion].mean() > 0.5


@pytest.mark.parametrize("skin_k", [1, 4, 6, 8])
def test_estimated_lesion_excluded_without_mask(skin_k):
    skin = tuple(int(v) for v in MONK_SRGB[skin_k])
    clean = compute_skin_tone(patch(skin, 300, 400))
    img, lesion = _skin_with_lesion(skin, (170, 30, 40))  # red, inflamed-looking lesion
    tone = compute_skin_tone(img)
    assert tone["ita"] == pytest.approx(clean["ita"], abs=2.0)
    assert skin_mask(img)[lesion].mean() < 0.05


def test_background_excluded_and_dark_skin_kept():
    dark = tuple(int(v) for v in MONK_SRGB[8])  # MST 9
    img = patch(dark, 200, 200)
    img[:, :60] = (40, 90, 200)      # blue drape
    img[:, -40:] = (128, 128, 128)   # grey wall
    m = skin_mask(img)
    assert m[:, 70:150].mean() > 0.9
    assert m[:, :60].mean() < 0.05 and m[:, -40:].mean() < 0.05


def test_output_keys_and_types():
    tone = compute_skin_tone(patch((200, 160, 130), 120, 90))
    assert tuple(tone) == ("ita", "ita_category", "tone_bucket", "monk_estimate", "skin_fraction")
    assert set(tone) == {c for c in PREPARE_COLUMNS
                         if c in ("ita", "ita_category", "tone_bucket", "monk_estimate",
                                  "skin_fraction")}
    assert isinstance(tone["ita"], float) and isinstance(tone["monk_estimate"], int)
    assert isinstance(tone["skin_fraction"], float)


def test_no_skin_falls_back():
    tone = compute_skin_tone(patch((30, 80, 200)))   # all blue: no skin pixels
    assert tone["skin_fraction"] == 0.0
    assert math.isfinite(tone["ita"]) and 1 <= tone["monk_estimate"] <= 10
    tone = compute_skin_tone(np.zeros((50, 50, 3), np.uint8))
    assert math.isfinite(tone["ita"])


@pytest.mark.shared_data
def test_ita_tracks_fitzpatrick_on_real_images():
    if not (FITZ / "metadata.csv").exists():
        pytest.skip("../shared/data/fitzpatrick17k is absent")
    cv2 = pytest.importorskip("cv2")
    pd = pytest.importorskip("pandas")
    from scipy.stats import spearmanr

    meta = pd.read_csv(FITZ / "metadata.csv", dtype={"md5hash": str})
    meta = meta[meta["fitzpatrick_scale"].between(1, 6)]
    # ~300 images, stratified so the dark types are not a handful
    sample = pd.concat([g.sample(min(len(g), 50), random_state=0)
                        for _, g in meta.groupby("fitzpatrick_scale")])
    itas, types = [], []
    for h, t in zip(sample["md5hash"], sample["fitzpatrick_scale"]):
        bgr = cv2.imread(str(FITZ / "images" / f"{h}.jpg"))
        if bgr is None:
            continue
        itas.append(compute_skin_tone(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))["ita"])
        types.append(int(t))
    assert len(itas) >= 250
    rho = spearmanr(itas, types).statistic
    assert rho <= -0.5, rho


@pytest.mark.parametrize("value, group", [
    (1, "1-2"), (2.0, "1-2"), (np.int64(3), "3-4"), (4, "3-4"), (5, "5-6"), (6, "5-6"),
    (0, None), (7, None), (-1, None), (None, None), (float("nan"), None), ("x", None),
])
def test_fitzpatrick_group_pairs_types_and_drops_unknowns(value, group):
    import pandas as pd

    assert fitzpatrick_group(value) == group
    assert fitzpatrick_group(pd.NA) is None

