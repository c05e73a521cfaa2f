"""Face crop (OpenCV's bundled Haar cascade) and the quality flag."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.track import align


def test_a_well_lit_photo_passes_and_a_dark_one_is_flagged():
    rng = np.random.default_rng(0)
    ok = np.clip(rng.normal([200, 150, 125], 8, (120, 160, 3)), 0, 255).astype(np.uint8)
    ok[40:80, 60:100] = [120, 75, 60]
    dark = (ok * 0.05).astype(np.uint8)
    assert not align.prepare_photo(ok).flagged
    prep = align.prepare_photo(dark)
    assert prep.flagged and any("dark" in r.lower() for r in prep.reasons)


def test_faces_are_cropped_or_flagged_when_absent():
    skimage = pytest.importorskip("skimage.data")
    if not align.face_detector_available():
        pytest.skip("this OpenCV wheel ships no Haar cascades (cv2.data.haarcascades)")
    face = skimage.astronaut()  # a portrait: one frontal face
    prep = align.prepare_photo(face, kind="face")
    assert prep.face_box is not None
    x, y, w, h = prep.face_box
    assert 0.1 < w / face.shape[1] < 0.6 and prep.rgb.shape[0] < face.shape[0]
    no_face = np.full((200, 200, 3), [200, 150, 125], np.uint8)
    prep = align.prepare_photo(no_face, kind="face")
    assert prep.flagged and any("No face" in r for r in prep.reasons)


def test_without_a_detector_faces_are_analysed_uncropped(monkeypatch):
    monkeypatch.setattr(align, "_cascade", lambda: None)
    img = np.full((100, 100, 3), [200, 150, 125], np.uint8)
    prep = align.prepare_photo(img, kind="face")
    assert prep.face_box is None and prep.rgb.shape == img.shape
    assert any("no face detector" in n for n in prep.notes)
