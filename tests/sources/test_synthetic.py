"""Synthetic source: seeded generation, content sanity, manifest rows, regeneration, errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from dermsight.errors import ConfigError, DataError
from dermsight.manifest import SOURCE_COLUMNS, split_list
from dermsight.sources import create_source, synthetic
from dermsight.sources.synthetic import CLASSES, DEGRADATIONS, generate

SMALL = {"n_patients": 20, "images_per_patient": (2, 3), "size": 64, "seed": 3}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "data", **SMALL)


@pytest.fixture(scope="module")
def table(small) -> pd.DataFrame:
    return pd.read_csv(small / "metadata.csv", keep_default_na=False)


def _files(root: Path) -> dict[str, bytes]:
    names = ["metadata.csv", "synthetic.json"]
    names += [f"images/{p.name}" for p in sorted((root / "images").iterdir())[:5]]
    names += [f"masks/{p.name}" for p in sorted((root / "masks").iterdir())[:5]]
    return {n: (root / n).read_bytes() for n in names}


def test_layout_and_columns(small, table):
    assert list(table.columns) == synthetic.CSV_COLUMNS
    info = json.loads((small / "synthetic.json").read_text())
    assert info["version"] == synthetic.GENERATOR_VERSION
    assert info["params"] == {"n_patients": 20, "images_per_patient": [2, 3], "size": 64,
                              "seed": 3}
    assert info["n_images"] == len(table)
    assert table["image_id"].is_unique
    for _, row in table.iterrows():
        assert (small / "images" / row["image_file"]).is_file()
        assert (small / "masks" / row["mask_file"]).is_file()
    assert len(list((small / "images").iterdir())) == len(table)
    counts = table.groupby("patient_id").size()
    assert len(counts) == 20 and counts.between(2, 3).all()
    assert not [p for p in small.parent.iterdir() if p.name.startswith(".")]  # staging cleaned


def test_deterministic(tmp_path, small):
    again = generate(tmp_path / "again", **SMALL)
    assert _files(again) == _files(small)
    other = generate(tmp_path / "other", **{**SMALL, "seed": 4})
    a, b = _files(small), _files(other)
    assert a["metadata.csv"] != b["metadata.csv"]
    assert [a[k] for k in a if k.startswith("images/")] != \
        [b.get(k) for k in a if k.startswith("images/")]


def test_all_tones_and_classes(table):
    assert set(table["monk"]) == set(range(1, 11))
    per_class = table.groupby("label")["patient_id"].nunique()
    assert set(per_class.index) == set(CLASSES)
    assert (per_class >= 3).all()
    # one label, tone and metadata per patient
    per_patient = table.groupby("patient_id")[["label", "monk", "age", "sex", "body_site"]]
    assert (per_patient.nunique() == 1).all().all()
    assert table["fitzpatrick"].between(1, 6).all()
    approx = np.ceil(table["monk"] * 0.6)
    assert (table["fitzpatrick"] - approx).abs().le(1).all()


def test_images_and_masks(small, table):
    ratios = []
    for _, row in table.iterrows():
        img = cv2.imread(str(small / "images" / row["image_file"]), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(small / "masks" / row["mask_file"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        assert mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0, 255}
        lesion = mask > 0
        assert lesion.any(), row["image_id"]
        if row["degradation"]:
            continue
        # lesion pixels stray much further from the skin colour than skin pixels do
        lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(float)
        skin = cv2.dilate(lesion.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        ref = np.median(lab[skin], axis=0)
        d_lesion = np.linalg.norm(lab[lesion] - ref, axis=1).mean()
        d_skin = np.linalg.norm(lab[skin] - ref, axis=1).mean()
        ratios.append(d_lesion / d_skin)
        assert d_lesion > 1.3 * d_skin, (row["image_id"], row["label"], row["monk"])
    assert np.median(ratios) > 2.5


def test_degradations_recorded(table):
    bad = table[table["degradation"] != ""]
    assert set(bad["degradation"]) <= set(DEGRADATIONS)
    assert 0.2 <= len(bad) / len(table) <= 0.4
    assert bad["severity"].between(0.3, 1.0).all()
    assert (table.loc[table["degradation"] == "", "severity"] == 0).all()


def test_degradations_look_like_their_kind(table, small):
    def lum(row):
        img = cv2.imread(str(small / "images" / row["image_file"]), cv2.IMREAD_GRAYSCALE)
        return img.astype(float)

    clean = table[table["degradation"] == ""]
    for _, row in table[table["degradation"] != ""].iterrows():
        img = lum(row)
        same = clean[clean["patient_id"] == row["patient_id"]]
        if same.empty:
            continue
        ref = lum(same.iloc[0])
        if row["degradation"] == "dark":
            assert img.mean() < 0.8 * ref.mean()
        elif row["degradation"] == "overexposed":
            assert img.mean() > ref.mean() + 20 or (img > 250).mean() > 0.3
        elif row["degradation"] == "blur":
            assert cv2.Laplacian(img, cv2.CV_64F).var() < cv2.Laplacian(ref, cv2.CV_64F).var()
        elif row["degradation"] == "glare":
            assert (img >= 250).mean() > (ref >= 250).mean()


def test_metadata_informative(tmp_path):
    root = generate(tmp_path / "d", n_patients=100, images_per_patient=(1, 1), size=32)
    t = pd.read_csv(root / "metadata.csv", keep_default_na=False)
    age = t.groupby("label")["age"].mean()
    assert age["acne"] < age["psoriasis"] < age["melanoma"]
    itch = t.assign(itch=t["symptoms"].map(lambda s: "itch" in split_list(s)))
    share = itch.groupby("label")["itch"].mean()
    assert share["eczema"] > 0.6 and share["nevus"] < 0.3
    # informative, not decisive: a site alone never pins the label
    assert t.groupby("body_site")["label"].nunique().max() > 1
    assert (t["monk"].value_counts() == 10).all()


def test_load_manifest(small, table):
    src = create_source("synthetic", str(small), **SMALL)
    df = src.load()
    assert list(df.columns) == list(SOURCE_COLUMNS)
    assert len(df) == len(table)
    assert set(df["source"]) == {"synthetic"}
    assert (df["group_id"] == df["case_id"]).all()
    assert df["group_id"].nunique() == 20
    assert set(df["label"]) == set(CLASSES)
    row = df.iloc[0]
    assert row["image_uri"] == str(small / "images" / f"{row['image_id']}.png")
    assert row["mask_uri"] == str(small / "masks" / f"{row['image_id']}_mask.png")
    assert df["monk"].between(1, 10).all() and df["fitzpatrick"].between(1, 6).all()
    assert df["age"].notna().all() and df["sex"].isin(["female", "male"]).all()
    extra = [json.loads(e) for e in df["extra"]]
    by_id = table.set_index("image_id")
    for image_id, e in zip(df["image_id"], extra):
        assert e["degradation"] == (by_id.loc[image_id, "degradation"] or None)
        assert e["severity"] == pytest.approx(by_id.loc[image_id, "severity"])
    assert any(e["degradation"] for e in extra)


def test_load_generates_then_reuses_then_regenerates(tmp_path):
    root = tmp_path / "fresh" / "synthetic"  # does not exist yet
    opts = {"n_patients": 10, "images_per_patient": [1, 2], "size": 32}
    df = create_source("synthetic", str(root), **opts).load()
    assert (root / "synthetic.json").is_file() and len(df) >= 10
    marker = (root / "synthetic.json").stat().st_mtime_ns
    create_source("synthetic", str(root), **opts).load()
    assert (root / "synthetic.json").stat().st_mtime_ns == marker  # reused, not rebuilt
    df2 = create_source("synthetic", str(root), **{**opts, "n_patients": 12}).load()
    assert df2["group_id"].nunique() == 12
    assert json.loads((root / "synthetic.json").read_text())["params"]["n_patients"] == 12
    assert len(list((root / "images").iterdir())) == len(df2)  # no stale images left


def test_incomplete_dataset_is_regenerated(tmp_path):
    root = generate(tmp_path / "d", n_patients=10, size=32)
    (root / "synthetic.json").unlink()
    victim = sorted((root / "images").iterdir())[0]
    victim.unlink()
    create_source("synthetic", str(root), n_patients=10, size=32).load()
    assert victim.is_file() and (root / "synthetic.json").is_file()


def test_interrupted_generation_leaves_no_marker(tmp_path, monkeypatch):
    root = generate(tmp_path / "d", n_patients=10, size=32)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "render_patient", boom)
    with pytest.raises(KeyboardInterrupt):
        generate(root, n_patients=11, size=32)
    assert not (root / "synthetic.json").exists()
    assert not synthetic._is_current(str(root), synthetic._params(10, (2, 4), 32, 0))


def test_root_is_a_file(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        create_source("synthetic", str(path)).load()
    with pytest.raises(DataError):
        generate(path, n_patients=2)


def test_remote_root_without_dataset():
    with pytest.raises(DataError, match="synthetic"):
        create_source("synthetic", "memory://dermsight-test/nothing-here").load()


def test_options_are_checked(tmp_path):
    root = str(tmp_path / "x")
    with pytest.raises(ConfigError):
        create_source("synthetic", root, n_patient=3)
    with pytest.raises(ConfigError):
        create_source("synthetic", root, images_per_patient=[4, 2])
    with pytest.raises(ConfigError):
        create_source("synthetic", root, size=8)
