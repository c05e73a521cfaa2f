"""Tiny manifests with generated PNGs for the dataset-stage tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dermsight.manifest import ALL_COLUMNS, conform

CLASSES = ("eczema", "melanoma", "psoriasis")


def write_images(folder: Path, n: int, seed: int = 0) -> list[str]:
    """``n`` small random PNGs of varying (non-square) sizes; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        h, w = 24 + (i % 5) * 4, 30 + (i % 3) * 6
        bgr = rng.integers(40, 220, (h, w, 3), dtype=np.uint8)
        path = folder / f"img{i:03d}.png"
        cv2.imwrite(str(path), bgr)
        paths.append(str(path))
    return paths


def build_manifest(folder: Path, n: int = 24, **overrides) -> pd.DataFrame:
    """A conformed manifest: labels cycle over CLASSES, splits train/train/val/test, metadata."""
    paths = write_images(folder, n)
    splits = ("train", "train", "val", "test")
    rows = []
    for i, path in enumerate(paths):
        rows.append({
            "image_id": f"im{i}", "image_uri": path, "group_id": f"g{i}",
            "label": CLASSES[i % 3], "split": splits[i % 4], "source": "test",
            "age": None if i % 6 == 5 else 20.0 + i, "sex": ("female", "male")[i % 2],
            "body_site": ("arm", "leg", "face")[i % 3],
            "symptoms": (None, "itch", "itch|bleed")[i % 3],
            "lighting_ok": None if i % 7 == 6 else bool(i % 2),
            "tone_bucket": ("light", "light", "medium", "dark")[i % 4],
        })
    frame = pd.DataFrame(rows)
    for col, values in overrides.items():
        frame[col] = values
    return conform(frame, source="test", columns=ALL_COLUMNS)


@pytest.fixture
def manifest(tmp_path) -> pd.DataFrame:
    return build_manifest(tmp_path / "images")


@pytest.fixture
def make_manifest(tmp_path):
    """``make_manifest(n=24, **column_overrides)`` → a conformed manifest in a fresh folder."""
    count = iter(range(1000))

    def make(n: int = 24, **overrides) -> pd.DataFrame:
        return build_manifest(tmp_path / f"images{next(count)}", n, **overrides)

    return make


@pytest.fixture
def classes() -> tuple[str, ...]:
    return CLASSES
