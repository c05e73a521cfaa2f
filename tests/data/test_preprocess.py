"""Tests for dermsight.data.preprocess (the one preprocessing; must not import torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from dermsight.data.preprocess import Preprocess

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)


def flat(h: int, w: int, colour=(200, 100, 50)) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (h, w, 3)).copy()


@pytest.mark.parametrize("interpolation", ["area", "bilinear", "bicubic"])
@pytest.mark.parametrize("shape", [(64, 64), (30, 90), (90, 30), (7, 5), (300, 200)])
def test_flat_colour_known_answer(shape, interpolation):
    pre = Preprocess((16, 24), MEAN, STD, interpolation=interpolation)
    out = pre(flat(*shape))
    assert out.shape == (3, 16, 24) and out.dtype == np.float32
    expected = (np.array([200, 100, 50]) / 255 - np.array(MEAN)) / np.array(STD)
    assert np.allclose(out, expected[:, None, None], atol=1e-5)


def test_channel_order_and_exact_identity_when_already_sized():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    pre = Preprocess((8, 12), MEAN, STD)
    out = pre(img)
    expected = (img.astype(np.float64) / 255 - MEAN) / STD
    assert np.allclose(out, expected.transpose(2, 0, 1), atol=1e-5)
    assert np.array_equal(pre.denormalize(out), img)


def test_non_square_centre_crop_keeps_aspect():
    # left third red, middle third green, right third blue: a wide image cropped to a square
    img = np.zeros((30, 90, 3), np.uint8)
    img[:, :30, 0] = img[:, 30:60, 1] = img[:, 60:, 2] = 255
    crop = Preprocess((10, 10), interpolation="bilinear").resize_crop(img)
    assert crop.shape == (10, 10, 3)
    assert (crop[..., 1] == 255).all() and crop[..., 0].max() == 0  # only the middle survives
    tall = Preprocess((10, 20)).resize_crop(np.transpose(img, (1, 0, 2)).copy())
    assert tall.shape == (10, 20, 3)


def test_crop_pct_crops_the_centre():
    img = np.zeros((100, 100, 3), np.uint8)
    img[5:95, 5:95] = 255  # a 5 px black frame: outside the central 80 %
    assert Preprocess((50, 50), crop_pct=1.0).resize_crop(img)[0, 0, 0] == 0
    pre = Preprocess((50, 50), crop_pct=0.8)
    assert pre.cover_size == (62, 62)
    assert (pre.resize_crop(img) == 255).all()


def test_deterministic_and_batch():
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 30), (20, 70)]]
    pre = Preprocess((16, 16))
    batch = pre.batch(imgs)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == np.float32
    assert np.array_equal(batch[1], pre(imgs[1]))
    assert np.array_equal(pre.batch(imgs), batch)
    assert pre.batch([]).shape == (0, 3, 16, 16)


def test_dict_round_trip_is_json():
    pre = Preprocess((224, 192), MEAN, STD, crop_pct=0.875, interpolation="bicubic")
    again = Preprocess.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert again == pre
    with pytest.raises(ValueError, match="colour"):
        Preprocess.from_dict({**pre.to_dict(), "colour": 1})


def test_from_timm_config():
    pre = Preprocess.from_timm({"input_size": (3, 240, 240), "interpolation": "bicubic",
                                "mean": MEAN, "std": STD, "crop_pct": 0.9})
    assert pre.input_size == (240, 240) and pre.interpolation == "bicubic"


@pytest.mark.parametrize("kwargs, match", [
    ({"input_size": (0, 10)}, "input_size"),
    ({"input_size": (10.5, 10)}, "input_size"),
    ({"input_size": (10, 10), "std": (1, 0, 1)}, "std"),
    ({"input_size": (10, 10), "crop_pct": 1.5}, "crop_pct"),
    ({"input_size": (10, 10), "interpolation": "lanczos"}, "interpolation"),
])
def test_bad_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Preprocess(**kwargs)


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_bad_images_raise(bad):
    with pytest.raises(ValueError, match="RGB uint8"):
        Preprocess((4, 4))(bad)


def test_import_does_not_import_torch():
    code = ("import sys, dermsight.data.preprocess, dermsight.data.metadata, "
            "dermsight.data.targets; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
