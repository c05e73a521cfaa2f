"""``decode_image``: every colour mode Pillow opens decodes to the pixels a person sees."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from dermsight.imaging import BACKGROUND, ImageRejected, decode_image


def _save(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _decode(data: bytes, mode: str | None = None) -> np.ndarray:
    if mode is not None:  # the file really opens in the mode under test
        assert Image.open(io.BytesIO(data)).mode == mode
    rgb, _ = decode_image(data, max_pixels=10_000_000)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    return rgb


def _ramp16(h: int = 8, w: int = 16) -> np.ndarray:
    """16-bit grey: 20000 everywhere, one row 0, one row 65535."""
    a = np.full((h, w), 20000, np.uint16)
    a[0], a[-1] = 0, 65535
    return a


@pytest.mark.parametrize("fmt, dtype, mode", [
    ("PNG", "<u2", "I;16"),    # the g16.png
    ("TIFF", "<u2", "I;16"),
    ("TIFF", ">u2", "I;16B"),
])
def test_16_bit_grey_is_scaled_not_clipped_to_white(fmt, dtype, mode):
    data = _save(Image.fromarray(_ramp16().astype(dtype)), fmt)
    rgb = _decode(data, mode)
    assert rgb[0].max() == 0 and rgb[-1].min() == 255
    assert (rgb[1:-1] == 78).all()  # 20000 / 65535 · 255 = 77.8: mid-grey, not white


def test_16_bit_grey_seen_as_32_bit_int_by_older_pillow():
    # older Pillow opens 16-bit grey PNGs as mode I, as it opens 32-bit int TIFFs
    data = _save(Image.fromarray(_ramp16().astype(np.int32)), "TIFF")
    rgb = _decode(data, "I")
    assert (rgb[1:-1] == 78).all() and rgb[-1].min() == 255
    wide = np.array([[-1000, 0, 100_000, 200_000]], np.int32).repeat(4, axis=0)
    rgb = _decode(_save(Image.fromarray(wide), "TIFF"), "I")  # outside 16 bits: its range
    assert list(rgb[0, :, 0]) == [0, 1, 128, 255]


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.25, 1.0], [0, 64, 255]),         # 0..1
    ([0.0, 78.0, 200.0], [0, 78, 200]),      # 0..255 kept
    ([-1.0, 0.0, 3.0], [0, 64, 255]),        # anything else: its range
])
def test_float_grey(values, expected):
    a = np.array([values], np.float32).repeat(4, axis=0)
    rgb = _decode(_save(Image.fromarray(a), "TIFF"), "F")
    assert list(rgb[0, :, 1]) == expected


def test_48_bit_rgb_png():
    bgr = np.zeros((8, 8, 3), np.uint16)
    bgr[...] = (10000, 20000, 40000)  # OpenCV writes BGR: RGB (40000, 20000, 10000)
    ok, png = cv2.imencode(".png", bgr)
    assert ok
    rgb = _decode(png.tobytes(), "RGB")
    assert np.abs(rgb.astype(int) - (156, 78, 39)).max() <= 1


def test_palette_transparency_is_composited_not_its_hidden_colour():
    img = Image.new("P", (16, 16), 1)
    img.putpalette([255, 0, 0, 20, 200, 40] + [0] * 762)  # index 0 red, 1 green
    img.paste(0, (0, 0, 8, 16))  # left half index 0, transparent
    rgb = _decode(_save(img, transparency=0), "P")
    assert (rgb[:, :8] == BACKGROUND).all()  # not red
    assert (rgb[:, 8:] == (20, 200, 40)).all()


def test_rgba_and_la_are_composited_onto_the_background():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[...] = (200, 100, 50, 255)
    rgba[:, :4, 3] = 0
    rgba[:4, 4:, 3] = 128
    rgb = _decode(_save(Image.fromarray(rgba)), "RGBA")
    assert (rgb[:, :4] == BACKGROUND).all()
    assert (rgb[4:, 4:] == (200, 100, 50)).all()
    assert np.abs(rgb[:4, 4:].astype(int) - (100, 50, 25)).max() <= 1
    la = np.zeros((8, 8, 2), np.uint8)
    la[...] = (200, 128)
    la[:, 4:, 1] = 255
    rgb = _decode(_save(Image.fromarray(la, "LA")), "LA")
    assert np.abs(rgb[:, :4].astype(int) - 100).max() <= 1 and (rgb[:, 4:] == 200).all()
    ok, png = cv2.imencode(".png", np.full((8, 8, 4), (0, 0, 65535, 0), np.uint16))
    assert (_decode(png.tobytes(), "RGBA") == BACKGROUND).all()  # 64-bit, transparent red


def test_grey_and_colour_trns():
    grey = np.full((8, 8), 150, np.uint8)
    grey[:, :4] = 30
    rgb = _decode(_save(Image.fromarray(grey), transparency=30), "L")
    assert (rgb[:, :4] == BACKGROUND).all() and (rgb[:, 4:] == 150).all()


def test_cmyk_jpeg_and_tiff():
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 0))  # white
    cmyk.paste((255, 0, 0, 0), (0, 0, 8, 8))            # cyan
    cmyk.paste((0, 0, 0, 255), (8, 8, 16, 16))          # black
    for fmt in ("TIFF", "JPEG"):
        rgb = _decode(_save(cmyk, fmt, **({"quality": 95} if fmt == "JPEG" else {})), "CMYK")
        tol = 0 if fmt == "TIFF" else 12
        assert np.abs(rgb[12, 4].astype(int) - 255).max() <= tol
        assert np.abs(rgb[2, 2].astype(int) - (0, 255, 255)).max() <= tol
        assert rgb[12, 12].max() <= tol


def test_one_bit_and_plain_grey():
    bits = np.zeros((8, 8), bool)
    bits[:, 4:] = True
    rgb = _decode(_save(Image.fromarray(bits)), "1")
    assert (rgb[:, :4] == 0).all() and (rgb[:, 4:] == 255).all()
    rgb = _decode(_save(Image.fromarray(np.full((8, 8), 90, np.uint8))), "L")
    assert (rgb == 90).all()


def test_exif_orientation_of_a_16_bit_tiff():
    a = np.zeros((4, 8), np.uint16)
    a[:, :4] = 65535  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rgb, size = decode_image(_save(Image.fromarray(a), "TIFF", exif=exif), max_pixels=1000)
    assert rgb.shape == (8, 4, 3) and size == (4, 8)
    assert (rgb[:4] == 255).all() and (rgb[4:] == 0).all()


def test_bad_input_is_still_rejected():
    with pytest.raises(ImageRejected, match="empty"):
        decode_image(b"", max_pixels=100)
    with pytest.raises(ImageRejected, match="too large"):
        decode_image(_save(Image.fromarray(_ramp16())), max_pixels=10)
