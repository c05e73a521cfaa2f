"""PAD-UFES-20 source: made-up rows under the real 26-column header."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsight.errors import DataError
from dermsight.manifest import SOURCE_COLUMNS
from dermsight.sources import create_source

# The header of the real metadata.csv, copied verbatim (headers only, no data).
REAL_HEADER = (
    "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,"
    "skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,"
    "diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"
)


def test_fixture_uses_the_real_header(build):
    assert build.PAD_HEADER_LINE == REAL_HEADER
    assert len(REAL_HEADER.split(",")) == 26


def test_rows_columns_and_types(tmp_path, build):
    root = build.pad(tmp_path / "pad")
    df = create_source("pad-ufes-20", str(root)).load()
    assert list(df.columns) == list(SOURCE_COLUMNS)
    assert len(df) == 7
    assert str(df["diameter_mm"].dtype) == "Float32"
    assert str(df["fitzpatrick"].dtype) == "Int8"
    row = df.set_index("image_id").loc["PAT_9003_5004_15"]
    assert row["image_uri"] == str(root / "images" / "PAT_9003_5004_15.png")
    assert row["label"] == "MEL"
    assert row["age"] == 71
    assert row["sex"] == "female"
    assert row["fitzpatrick"] == 5
    assert row["body_site"] == "back"
    assert row["diameter_mm"] == 12
    assert row["symptoms"] == "grew|bleed"
    extra = json.loads(row["extra"])
    assert extra["symptoms_unknown"] == ["itch", "pain", "changed"]
    assert extra["smoke"] is True and extra["drink"] is False and extra["biopsed"] is True
    assert extra["background_father"] == "GERMANY"


def test_groups_are_patients_cases_are_lesions(tmp_path, build):
    df = create_source("pad-ufes-20", str(build.pad(tmp_path))).load()
    pat = df[df["group_id"] == "PAT_9001"]
    assert len(pat) == 3
    assert sorted(pat["case_id"]) == ["5001", "5001", "5002"]
    assert df["group_id"].nunique() == 5


def test_labels_and_symptoms(tmp_path, build):
    df = create_source("pad-ufes-20", str(build.pad(tmp_path))).load().set_index("image_id")
    assert sorted(df["label"].unique()) == ["ACK", "BCC", "MEL", "NEV", "SCC", "SEK"]
    assert df.loc["PAT_9001_5002_13", "symptoms"] == "pain|elevation"
    assert df.loc["PAT_9005_5006_17", "symptoms"] == "grew|pain|changed|bleed|elevation"
    assert df.loc["PAT_9001_5001_11", "symptoms"] == "itch|changed|elevation"


def test_sparse_row_is_missing_not_false(tmp_path, build):
    df = create_source("pad-ufes-20", str(build.pad(tmp_path))).load().set_index("image_id")
    row = df.loc["PAT_9002_5003_14"]
    assert row[["sex", "fitzpatrick", "diameter_mm"]].isna().all()
    assert row["age"] == 8 and row["body_site"] == "arm"
    assert pd.isna(row["symptoms"])
    extra = json.loads(row["extra"])
    assert extra["smoke"] is None and extra["background_mother"] is None
    assert extra["biopsed"] is False


@pytest.mark.parametrize("column", ["patient_id", "diagnostic", "img_id", "fitspatrick", "itch"])
def test_missing_column(tmp_path, build, column):
    header = ",".join(c for c in REAL_HEADER.split(",") if c != column)
    idx = REAL_HEADER.split(",").index(column)
    rows = [",".join(v for i, v in enumerate(r.split(",")) if i != idx) for r in build.PAD_ROWS]
    root = tmp_path / "pad"
    root.mkdir()
    (root / "metadata.csv").write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(DataError, match=rf"metadata\.csv.*{column}"):
        create_source("pad-ufes-20", str(root)).load()


def test_unknown_label(tmp_path, build):
    rows = list(build.PAD_ROWS)
    rows[0] = rows[0].replace(",BCC,", ",LENTIGO,")
    root = build.pad(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*diagnostic.*LENTIGO"):
        create_source("pad-ufes-20", str(root)).load()


def test_bad_boolean(tmp_path, build):
    rows = list(build.PAD_ROWS)
    rows[-1] = rows[-1].replace("SCC,False,", "SCC,maybe,")
    root = build.pad(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*'itch'.*maybe"):
        create_source("pad-ufes-20", str(root)).load()


def test_bad_number(tmp_path, build):
    rows = list(build.PAD_ROWS)
    rows[-1] = rows[-1].replace(",58,", ",fifty,")
    root = build.pad(tmp_path, rows=rows)
    with pytest.raises(DataError, match=r"metadata\.csv.*'age'.*fifty"):
        create_source("pad-ufes-20", str(root)).load()


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        create_source("pad-ufes-20", str(tmp_path / "nope")).load()


def test_empty_dataset(tmp_path, build):
    root = build.pad(tmp_path, rows=[])
    with pytest.raises(DataError, match="no images"):
        create_source("pad-ufes-20", str(root)).load()


@pytest.mark.shared_data
def test_real_pad_ufes20_metadata(tmp_path, build):
    real = build.shared("pad-ufes-20") / "metadata.csv"
    assert real.read_text().splitlines()[0] == REAL_HEADER
    root = tmp_path / "pad"
    root.mkdir()
    (root / "metadata.csv").symlink_to(real)  # a link, never a copy of the data
    df = create_source("pad-ufes-20", str(root)).load()
    assert len(df) == 2298
    assert df["label"].value_counts().to_dict() == {
        "BCC": 845, "ACK": 730, "NEV": 244, "SEK": 235, "SCC": 192, "MEL": 52}
    assert int(df["fitzpatrick"].notna().sum()) == 2298 - 804
    assert df["image_uri"].str.endswith(".png").all()
    assert df["image_id"].is_unique
