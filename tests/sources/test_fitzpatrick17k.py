"""Fitzpatrick17k source."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsight.errors import ConfigError, DataError
from dermsight.manifest import SOURCE_COLUMNS
from dermsight.sources import create_source


def test_rows_columns_and_types(tmp_path, build):
    root = build.fitz(tmp_path / "f17k")
    df = create_source("fitzpatrick17k", str(root)).load()
    assert list(df.columns) == list(SOURCE_COLUMNS)
    assert len(df) == 4
    assert str(df["fitzpatrick"].dtype) == "Int8"
    row = df.set_index("image_id").loc["fd06d13de341cc75ad679916c5d7e6a6"]
    assert row["label"] == "prurigo-nodularis"
    assert row["fitzpatrick"] == 4
    assert row["image_uri"] == str(root / "images" / "fd06d13de341cc75ad679916c5d7e6a6.jpg")
    assert json.loads(row["extra"]) == {
        "nine_partition_label": "benign-epidermal", "three_partition_label": "benign",
        "fitzpatrick_centaur": 4, "qc": None, "ddi_scale": 34}


def test_groups_are_images(tmp_path, build):
    df = create_source("fitzpatrick17k", str(build.fitz(tmp_path))).load()
    assert (df["group_id"] == df["image_id"]).all()
    assert (df["case_id"] == df["image_id"]).all()


def test_unknown_fitzpatrick_is_missing(tmp_path, build):
    df = create_source("fitzpatrick17k", str(build.fitz(tmp_path))).load().set_index("image_id")
    assert df["fitzpatrick"].isna().sum() == 1
    assert pd.isna(df.loc["0009d89a58dac26bb3c113744b7b4196", "fitzpatrick"])
    extra = json.loads(df.loc["000b6317b3be6d504e212a50e4d5667f", "extra"])
    assert extra["fitzpatrick_centaur"] is None and extra["qc"] == "3 Wrongly labelled"


@pytest.mark.parametrize(("level", "expected", "kept"), [
    ("label", "psoriasis", "nine_partition_label"),
    ("nine", "inflammatory", "label"),
    ("three", "non-neoplastic", "label"),
])
def test_label_levels(tmp_path, build, level, expected, kept):
    df = create_source("fitzpatrick17k", str(build.fitz(tmp_path)), label_level=level).load()
    row = df.set_index("image_id").loc["0009d89a58dac26bb3c113744b7b4196"]
    assert row["label"] == expected
    assert kept in json.loads(row["extra"])


def test_bad_label_level():
    with pytest.raises(ConfigError, match="label_level"):
        create_source("fitzpatrick17k", ".", label_level="four")


@pytest.mark.parametrize("column", ["md5hash", "fitzpatrick_scale", "label",
                                    "three_partition_label"])
def test_missing_column(tmp_path, build, column):
    root = build.fitz(tmp_path)
    build.drop_column(root / "metadata.csv", column)
    with pytest.raises(DataError, match=rf"metadata\.csv.*{column}"):
        create_source("fitzpatrick17k", str(root)).load()


def test_unknown_partition_label(tmp_path, build):
    rows = [list(r) for r in build.FITZ_ROWS]
    rows[1][5] = "malign"
    root = build.fitz(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*three_partition_label.*malign"):
        create_source("fitzpatrick17k", str(root)).load()


def test_fitzpatrick_out_of_range(tmp_path, build):
    rows = [list(r) for r in build.FITZ_ROWS]
    rows[0][1] = "7"
    root = build.fitz(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*fitzpatrick_scale.*7"):
        create_source("fitzpatrick17k", str(root)).load()


def test_duplicate_and_empty_ids(tmp_path, build):
    rows = [list(r) for r in build.FITZ_ROWS]
    rows[1][0] = rows[0][0]
    root = build.fitz(tmp_path / "dup", rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*md5hash.*repeats"):
        create_source("fitzpatrick17k", str(root)).load()
    rows[1][0] = ""
    root = build.fitz(tmp_path / "empty", rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*md5hash.*empty"):
        create_source("fitzpatrick17k", str(root)).load()


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        create_source("fitzpatrick17k", str(tmp_path / "nope")).load()


def test_empty_dataset(tmp_path, build):
    root = build.fitz(tmp_path, rows=[])
    with pytest.raises(DataError, match="no images"):
        create_source("fitzpatrick17k", str(root)).load()


@pytest.mark.shared_data
def test_real_fitzpatrick17k(build):
    root = build.shared("fitzpatrick17k")
    df = create_source("fitzpatrick17k", str(root)).load()
    assert len(df) == 2860
    assert int(df["fitzpatrick"].isna().sum()) == 108
    counts = df["fitzpatrick"].dropna().value_counts()
    assert {int(k): int(v) for k, v in counts.items()} == {
        1: 528, 2: 964, 3: 562, 4: 393, 5: 216, 6: 89}
    assert df["label"].value_counts().max() == 407  # squamous-cell-carcinoma
    assert df["label"].value_counts().idxmax() == "squamous-cell-carcinoma"
