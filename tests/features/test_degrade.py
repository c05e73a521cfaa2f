"""Tests for dermsight.features.degrade."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.features.degrade import DEGRADATIONS, degrade, random_degradation


def image(h: int = 60, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(60, 220, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_shape_dtype_and_determinism(kind):
    img = image()
    a = degrade(img, kind, 1.0, np.random.default_rng(7))
    b = degrade(img, kind, 1.0, np.random.default_rng(7))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, img)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_zero_severity_is_near_identity(kind):
    img = image()
    out = degrade(img, kind, 0.0, np.random.default_rng(0))
    assert np.abs(out.astype(int) - img).max() <= 1


def test_unknown_kind_raises_naming_it():
    with pytest.raises(ValueError, match="sepia"):
        degrade(image(), "sepia", 0.5, np.random.default_rng(0))


def test_bad_severity_raises():
    with pytest.raises(ValueError):
        degrade(image(), "dark", 1.5, np.random.default_rng(0))


def test_dark_darker_and_overexposed_brighter():
    img, rng = image(), np.random.default_rng(0)
    assert degrade(img, "dark", 1.0, rng).mean() < 0.4 * img.mean()
    assert degrade(img, "overexposed", 1.0, rng).mean() > img.mean() * 1.4


def test_random_degradation():
    img = image()
    kinds = set()
    for seed in range(40):
        out, kind, sev = random_degradation(img, np.random.default_rng(seed), p=0.7)
        assert out.shape == img.shape and out.dtype == np.uint8
        if kind is None:
            assert sev == 0.0 and np.array_equal(out, img)
        else:
            assert kind in DEGRADATIONS and 0.0 <= sev <= 1.0
        kinds.add(kind)
    assert None in kinds and len(kinds) > 3
    a = random_degradation(img, np.random.default_rng(3))
    b = random_degradation(img, np.random.default_rng(3))
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
