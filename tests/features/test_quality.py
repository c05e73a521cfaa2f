"""Known-answer tests for dermsight.features.quality on tiny synthetic images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dermsight.features.degrade import degrade
from dermsight.features.quality import (
    TIPS,
    QualityThresholds,
    assess_quality,
    compute_quality,
    failed_checks,
)
from dermsight.manifest import PREPARE_COLUMNS

HAM = Path(__file__).resolve().parents[2] / "../shared/data/ham10000/images"


def skin_image(h: int = 150, w: int = 200, seed: int = 0) -> np.ndarray:
    """A well-lit, sharp, textured skin-like RGB uint8 image with a brown lesion."""
    rng = np.random.default_rng(seed)
    base = np.array([205, 150, 125], np.float32)
    img = np.tile(base, (h, w, 1))
    img *= 1 + 0.10 * rng.standard_normal((h, w, 1)).astype(np.float32)  # pores / texture
    yy, xx = np.mgrid[0:h, 0:w]
    lesion = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 5) ** 2
    img[lesion] = img[lesion] * np.array([0.6, 0.5, 0.45], np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_keys_match_manifest():
    keys = {c for c in PREPARE_COLUMNS if c.startswith("q_")}
    feats = compute_quality(skin_image())
    assert set(feats) == keys
    assert all(isinstance(v, float) and np.isfinite(v) for v in feats.values())


def test_clean_skin_passes():
    ok, tips = assess_quality(compute_quality(skin_image()))
    assert ok and tips == []


def test_size_invariant_brightness():
    small, big = skin_image(150, 200), skin_image(384, 512)
    a, b = compute_quality(small), compute_quality(big)
    assert abs(a["q_brightness_mean"] - b["q_brightness_mean"]) < 0.02


def test_dark_flagged():
    dark = (skin_image().astype(np.float32) * 0.15).astype(np.uint8)
    ok, tips = assess_quality(compute_quality(dark))
    assert not ok and TIPS["dark"] in tips


def test_overexposed_flagged():
    bright = np.clip(skin_image().astype(np.float32) * 2.2, 0, 255).astype(np.uint8)
    ok, tips = assess_quality(compute_quality(bright))
    assert not ok and TIPS["overexposed"] in tips


def test_blur_less_sharp_and_flagged():
    sharp = skin_image()
    check = np.kron((np.indices((15, 20)).sum(0) % 2), np.ones((10, 10)))[..., None]
    sharp = np.clip(sharp * (0.8 + 0.3 * check), 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    fs, fb = compute_quality(sharp), compute_quality(blurred)
    assert fb["q_sharpness"] < fs["q_sharpness"] / 10
    assert "blurry" not in failed_checks(fs)
    ok, tips = assess_quality(fb)
    assert not ok and TIPS["blurry"] in tips


def dark_skin_image(h: int = 150, w: int = 200, seed: int = 0) -> np.ndarray:
    """A well-lit close-up of type V-VI-like skin (mean luminance well under 0.2) with the small
    specular highlights such skin shows under any light."""
    rng = np.random.default_rng(seed)
    img = np.tile(np.array([62, 40, 30], np.float32), (h, w, 1))
    img *= 1 + 0.10 * rng.standard_normal((h, w, 1)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(40):
        cv2.circle(img, (int(rng.integers(10, w - 10)), int(rng.integers(10, h - 10))), 2,
                   (250, 248, 246), -1)
    return img


def test_glare_flagged():
    img = skin_image()
    cv2.ellipse(img, (100, 75), (22, 13), 30, 0, 360, (255, 255, 255), -1)
    feats = compute_quality(img)
    assert feats["q_glare"] > compute_quality(skin_image())["q_glare"]
    ok, tips = assess_quality(feats)
    assert not ok and TIPS["glare"] in tips


def test_color_cast_flagged():
    tinted = np.clip(skin_image().astype(np.float32) * [0.6, 1.15, 0.6], 0, 255).astype(np.uint8)
    ok, tips = assess_quality(compute_quality(tinted))
    assert not ok and TIPS["color_cast"] in tips


def test_distant_flagged():
    far = degrade(skin_image(), "distant", 1.0, np.random.default_rng(0))
    ok, tips = assess_quality(compute_quality(far))
    assert not ok and TIPS["distant"] in tips


def test_shadow_flagged():
    img = skin_image().astype(np.float32)
    img[:, 70:] *= 0.25  # a hard shadow over most of the frame
    ok, tips = assess_quality(compute_quality(img.astype(np.uint8)))
    assert not ok and TIPS["shadow"] in tips


def test_thresholds_forbid_unknown_fields_and_apply():
    with pytest.raises(ValueError):
        QualityThresholds(not_a_threshold=1.0)
    feats = compute_quality(skin_image())
    ok, tips = assess_quality(feats, QualityThresholds(dark_highlight=0.99))
    assert not ok and tips == [TIPS["dark"]]


def test_thresholds_written_before_the_highlight_check_still_load():
    """configs and model.json files carry the old mean-brightness keys; they are dropped."""
    old = QualityThresholds(dark_mean=0.2, dark_fraction=0.5, glare_fraction=0.02)
    assert old.glare_fraction == 0.02 and old.dark_highlight == QualityThresholds().dark_highlight


def test_well_lit_dark_skin_is_not_a_poor_photo():
    """Judged against the skin's own tone: a well-lit close-up of dark skin is neither too
    dark nor glary; the same photo under-exposed is too dark."""
    img = dark_skin_image()
    feats = compute_quality(img)
    assert feats["q_brightness_mean"] < 0.2  # what the old mean-brightness check flagged
    assert failed_checks(feats) == []
    under = (img.astype(np.float32) * 0.25).astype(np.uint8)
    assert "dark" in failed_checks(compute_quality(under))


def test_dark_skin_beside_a_white_sheet_is_not_in_shadow():
    img = dark_skin_image()
    img[:, 130:] = 245  # a white sheet over a third of the frame
    assert "shadow" not in failed_checks(compute_quality(img))
    lit = dark_skin_image().astype(np.float32) * 2.0
    lit[:, 70:] *= 0.3  # a hard shadow across most of the skin itself
    assert "shadow" in failed_checks(compute_quality(np.clip(lit, 0, 255).astype(np.uint8)))


def test_rejects_bad_input():
    with pytest.raises(ValueError):
        compute_quality(np.zeros((10, 10), np.uint8))


@pytest.mark.shared_data
def test_darkening_detected_on_real_images():
    if not HAM.is_dir():
        pytest.skip(f"shared data not found at {HAM}")
    paths = sorted(HAM.glob("*.jpg"))[:40]
    rng = np.random.default_rng(0)
    hits = []
    for p in paths:
        rgb = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        hits.append("dark" in failed_checks(compute_quality(degrade(rgb, "dark", 1.0, rng))))
    assert np.mean(hits) >= 0.9


def test_sharpness_content_normalised_and_noise_robust():
    """Blur is caught whatever the contrast and when it runs in one direction only."""
    sharp = skin_image()
    kernel = np.zeros((9, 9), np.float32)
    kernel[4, :] = 1 / 9  # horizontal motion blur
    for img in (sharp, (sharp * 0.3 + 120).astype(np.uint8)):  # normal and low contrast
        motion = cv2.filter2D(img, -1, kernel)
        assert "blurry" not in failed_checks(compute_quality(img))
        assert "blurry" in failed_checks(compute_quality(motion))
    flat = np.full((150, 200, 3), 128, np.uint8)
    assert compute_quality(flat)["q_sharpness"] == 0.0
