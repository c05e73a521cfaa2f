"""Per-photo preparation before analysis: face crop for facial series, quality check.

Face detection uses OpenCV's frontal-face Haar cascade, whose weights ship inside the
``opencv-python(-headless)`` wheel (``cv2.data.haarcascades``): it works offline and needs no
download. OpenCV 4.x wheels ship it; the 5.0 wheels have neither the cascade files nor
``cv2.CascadeClassifier``: then :func:`face_detector_available` is False and facial photos are
analysed uncropped (the photo's record says so). A facial photo in which no face is found is
stored but **flagged** and left out of the trend, like a photo failing the quality check
(:func:`dermsight.features.quality.assess_quality`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dermsight.features.quality import assess_quality, compute_quality
from dermsight.imaging import downscale

CASCADE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 640
FACE_MARGIN = 0.25


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier | None:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not folder or not hasattr(cv2, "CascadeClassifier"):
        return None
    path = Path(folder) / CASCADE
    if not path.is_file():
        return None
    clf = cv2.CascadeClassifier(str(path))
    return None if clf.empty() else clf


def face_detector_available() -> bool:
    return _cascade() is not None


def detect_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(x, y, w, h)`` in the image's pixels, largest first ([] when none)."""
    clf = _cascade()
    if clf is None:
        return []
    h, w = rgb.shape[:2]
    s = min(1.0, DETECT_SIDE / max(h, w))
    small = downscale(rgb, DETECT_SIDE)
    gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    min_side = max(24, round(min(gray.shape) * 0.15))
    boxes = clf.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                 minSize=(min_side, min_side))
    out = [tuple(int(round(v / s)) for v in b) for b in (boxes if len(boxes) else [])]
    return sorted(out, key=lambda b: -b[2] * b[3])


def crop_face(rgb: np.ndarray, box: tuple[int, int, int, int],
              margin: float = FACE_MARGIN) -> np.ndarray:
    """The face box enlarged by ``margin`` on each side, clipped to the image."""
    x, y, w, h = box
    H, W = rgb.shape[:2]
    x0, y0 = max(0, int(x - margin * w)), max(0, int(y - margin * h))
    x1, y1 = min(W, int(x + w + margin * w)), min(H, int(y + h + margin * h))
    return rgb[y0:y1, x0:x1].copy()


@dataclass
class PreparedPhoto:
    """The image analysed (face crop or the whole photo) and what was decided about it."""

    rgb: np.ndarray
    quality: dict
    flagged: bool
    reasons: list[str] = field(default_factory=list)
    face_box: tuple[int, int, int, int] | None = None
    notes: list[str] = field(default_factory=list)


def prepare_photo(rgb: np.ndarray, kind: str = "lesion") -> PreparedPhoto:
    """Crop a facial photo to the face (``kind == "face"``) and check the photo's quality."""
    reasons: list[str] = []
    notes: list[str] = []
    box = None
    img = rgb
    if kind == "face":
        if not face_detector_available():
            notes.append("no face detector installed (OpenCV without Haar cascades): "
                         "analysed uncropped")
        else:
            faces = detect_faces(rgb)
            if faces:
                box = faces[0]
                img = crop_face(rgb, box)
            else:
                reasons.append("No face found: photograph the face from the front, "
                               "filling most of the frame.")
    feats = compute_quality(img)
    ok, tips = assess_quality(feats)
    reasons.extend(tips)
    quality = {"ok": bool(ok), "tips": tips,
               "features": {k: float(v) for k, v in feats.items()}}
    return PreparedPhoto(img, quality, bool(reasons), reasons, box, notes)
