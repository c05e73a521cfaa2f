"""HAM10000 source: fixture in the DermaMNIST-indexed format, plus the real data when present."""

from __future__ import annotations

import json

import pytest

from dermsight.errors import DataError
from dermsight.manifest import SOURCE_COLUMNS
from dermsight.sources import create_source


def test_rows_columns_and_types(tmp_path, build):
    root = build.ham(tmp_path / "ham")
    df = create_source("ham10000", str(root)).load()
    assert list(df.columns) == list(SOURCE_COLUMNS)
    assert len(df) == 5
    assert set(df["source"]) == {"ham10000"}
    assert str(df["age"].dtype) == "Float32"
    row = df.set_index("image_id").loc["ISIC_0031633"]
    assert row["label"] == "mel"
    assert row["sex"] == "female"
    assert row["body_site"] == "lower_extremity"
    assert row["age"] == 75
    assert row["image_uri"] == str(root / "images" / "ISIC_0031633.jpg")
    assert row["mask_uri"] == str(root / "masks" / "ISIC_0031633_segmentation.png")
    assert json.loads(row["extra"]) == {"dx_type": "histo", "dermamnist_index": 3}


def test_groups_are_lesions(tmp_path, build):
    df = create_source("ham10000", str(build.ham(tmp_path))).load()
    two = df[df["group_id"] == "HAM_0000118"]
    assert sorted(two["image_id"]) == ["ISIC_0025030", "ISIC_0027419"]
    assert (df["case_id"] == df["group_id"]).all()


def test_unknown_metadata_is_missing(tmp_path, build):
    df = create_source("ham10000", str(build.ham(tmp_path))).load().set_index("image_id")
    row = df.loc["ISIC_0026769"]
    assert row[["age", "sex", "body_site"]].isna().all()


def test_official_split_and_no_masks(tmp_path, build):
    root = build.ham(tmp_path, masks=False)
    df = create_source("ham10000", str(root), official_split=True).load()
    assert df["split"].value_counts().to_dict() == {"train": 3, "val": 2}
    assert df["mask_uri"].isna().all()
    assert create_source("ham10000", str(root)).load()["split"].isna().all()


def test_missing_column_names_file_and_column(tmp_path, build):
    root = build.ham(tmp_path)
    build.drop_column(root / "metadata.csv", "localization")
    with pytest.raises(DataError, match=r"metadata\.csv.*localization"):
        create_source("ham10000", str(root)).load()


def test_official_split_without_column(tmp_path, build):
    root = build.ham(tmp_path)
    build.drop_column(root / "metadata.csv", "dermamnist_split")
    with pytest.raises(DataError, match="dermamnist_split"):
        create_source("ham10000", str(root), official_split=True).load()


def test_unknown_label(tmp_path, build):
    rows = [list(r) for r in build.HAM_ROWS]
    rows[0][2] = "melanoma"
    root = build.ham(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*'dx'.*melanoma"):
        create_source("ham10000", str(root)).load()


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        create_source("ham10000", str(tmp_path / "nope")).load()


def test_missing_table(tmp_path):
    with pytest.raises(DataError, match=r"metadata\.csv.*not found"):
        create_source("ham10000", str(tmp_path)).load()


def test_empty_dataset(tmp_path, build):
    root = build.ham(tmp_path, rows=[])
    with pytest.raises(DataError, match="no images"):
        create_source("ham10000", str(root)).load()


@pytest.mark.shared_data
def test_real_ham10000_official_split(build):
    root = build.shared("ham10000")
    df = create_source("ham10000", str(root), official_split=True).load()
    assert len(df) == 8010
    classes = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    counts = df.groupby(["split", "label"]).size()
    assert [int(counts["train"][c]) for c in classes] == [228, 359, 769, 80, 779, 4693, 99]
    assert [int(counts["val"][c]) for c in classes] == [33, 52, 110, 12, 111, 671, 14]
    assert df["mask_uri"].notna().all()
