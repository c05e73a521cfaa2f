"""The shared decoder's mask reading (decoding itself: tests/prepare/test_measure.py and
tests/serve/test_engine_imageio.py)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dermsight.imaging import load_mask, read_mask


def test_masks_are_resized_then_thresholded_and_unreadable_ones_are_none(tmp_path):
    grey = np.zeros((20, 40), np.uint8)
    grey[:, 20:] = 200
    Image.fromarray(grey).save(tmp_path / "m.png")
    raw = read_mask(str(tmp_path / "m.png"), (10, 20))
    assert raw.dtype == np.uint8 and raw.shape == (10, 20)
    mask = load_mask(str(tmp_path / "m.png"), (10, 20))
    assert mask.dtype == bool and mask[:, 11:].all() and not mask[:, :9].any()
    assert np.array_equal(load_mask(str(tmp_path / "m.png"), (20, 40)), grey >= 128)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert read_mask(str(tmp_path / "bad.png"), (10, 20)) is None
    assert load_mask(str(tmp_path / "missing.png"), (10, 20)) is None
