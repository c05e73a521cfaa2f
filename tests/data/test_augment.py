"""Tests for dermsight.data.augment."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from dermsight.config import AugmentConfig
from dermsight.data.augment import build_train_augment


def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)


def test_output_is_input_sized_uint8():
    out = build_train_augment(AugmentConfig(), (32, 24), seed=0)(image())
    assert out.shape == (32, 24, 3) and out.dtype == np.uint8


def test_same_seed_same_output_other_seed_differs():
    aug = build_train_augment(AugmentConfig(), (32, 32), seed=0)
    aug.set_random_seed(5)
    a = aug(image())
    aug.set_random_seed(5)
    b = aug(image())
    aug.set_random_seed(6)
    c = aug(image())
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    fresh = build_train_augment(AugmentConfig(), (32, 32), seed=5)
    assert np.array_equal(fresh(image()), a)


def test_eval_preset_is_identity():
    img = image()
    assert AugmentConfig.eval().enabled is False
    assert build_train_augment(AugmentConfig.eval(), (32, 32))(img) is img


def test_unknown_keys_and_bad_ranges_rejected():
    with pytest.raises(ValidationError, match="rotation"):
        AugmentConfig(rotation=10)
    with pytest.raises(ValidationError, match="crop_scale"):
        AugmentConfig(crop_scale=(0.9, 0.5))
    with pytest.raises(ValidationError, match="hflip"):
        AugmentConfig(hflip=2)


def test_everything_off_but_enabled_only_crops():
    cfg = AugmentConfig(hflip=0, vflip=0, affine_p=0, color_p=0, crop_scale=(1, 1),
                        crop_ratio=(80 / 60, 80 / 60))
    img = image()
    out = build_train_augment(cfg, (60, 80), seed=0)(img)
    assert np.array_equal(out, img)


def test_rotate90_draws_every_quarter_turn_on_square_inputs_only():
    cfg = AugmentConfig(hflip=0, vflip=0, affine_p=0, color_p=0, crop_scale=(1, 1),
                        crop_ratio=(1, 1), rotate90=1)
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    turns = {k: np.rot90(img, k) for k in range(4)}
    seen = set()
    for seed in range(40):
        out = build_train_augment(cfg, (40, 40), seed=seed)(img)
        match = [k for k, t in turns.items() if np.array_equal(out, t)]
        assert len(match) == 1  # a quarter turn of the image, nothing else
        seen.add(match[0])
    assert seen == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="rotate90 needs a square"):
        build_train_augment(cfg, (40, 56), seed=0)
