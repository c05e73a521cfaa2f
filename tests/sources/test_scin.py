"""SCIN source on a fixture in the exact format of docs/SCIN_SCHEMA.md."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsight.errors import ConfigError, DataError
from dermsight.manifest import SOURCE_COLUMNS, parse_soft_labels
from dermsight.sources import create_source

NEG = "-1001492676369731180"
DEFECT = "1834609919572055750"


def load(root, **options):
    src = create_source("scin", str(root), **options)
    return src.load(), src


def test_rows_columns_and_types(tmp_path, build):
    root = build.scin(tmp_path / "bucket")
    df, _ = load(root)
    assert list(df.columns) == list(SOURCE_COLUMNS)
    # 3 + 1 (defect) + 1 images of the labelled cases; unlabelled cases dropped
    assert len(df) == 5
    assert df["case_id"].value_counts().to_dict() == {NEG: 3, DEFECT: 1,
                                                      "7290373467196101411": 1}
    assert (df["group_id"] == df["case_id"]).all()
    assert str(df["monk"].dtype) == "Int8" and str(df["fitzpatrick"].dtype) == "Int8"


def test_negative_case_id_is_kept_as_string(tmp_path, build):
    df, _ = load(build.scin(tmp_path))
    neg = df[df["case_id"] == NEG]
    assert sorted(neg["image_id"]) == ["-5840958151393346034", "1104367427453286930",
                                       "6690127015592618113"]
    assert sorted(neg["shot_type"]) == ["at_an_angle", "at_distance", "close_up"]


def test_bucket_root_path_resolution(tmp_path, build):
    root = build.scin(tmp_path / "bucket")
    df, _ = load(root)
    row = df.set_index("image_id").loc["-5840958151393346034"]
    expected = root / "dataset" / "images" / "-5840958151393346034.png"
    assert row["image_uri"] == str(expected)
    assert expected.exists()


@pytest.mark.parametrize("folder", ["dataset", "scin_copy"])
def test_flat_root_path_resolution(tmp_path, build, folder):
    # root holds the CSVs directly: 'dataset/images/x.png' -> root/images/x.png,
    # which is parent(root)/dataset/images/x.png when root is the 'dataset' folder itself
    root = build.scin(tmp_path / folder, layout="flat")
    df, _ = load(root)
    uris = df.set_index("image_id")["image_uri"]
    assert uris["-5840958151393346034"] == str(root / "images" / "-5840958151393346034.png")
    assert all(pd.io.common.file_exists(u) for u in uris if not u.endswith("-2243186711511406658"))
    if folder == "dataset":
        assert uris["1104367427453286930"] == str(
            tmp_path / "dataset/images/1104367427453286930.png")


def test_defect_image_without_extension_is_listed_and_reported(tmp_path, build):
    df, src = load(build.scin(tmp_path))
    row = df.set_index("image_id").loc["-2243186711511406658"]
    assert row["case_id"] == DEFECT
    assert row["image_uri"].endswith("images/-2243186711511406658")
    reasons = [i["reason"] for i in src.issues if i.get("image_id") == "-2243186711511406658"]
    assert any("extension" in r for r in reasons)


def test_soft_labels_and_argmax(tmp_path, build):
    df, _ = load(build.scin(tmp_path))
    for text in df["soft_labels"]:
        assert abs(sum(parse_soft_labels(text).values()) - 1) < 1e-3
    by_case = df.drop_duplicates("case_id").set_index("case_id")
    assert by_case.loc[NEG, "label"] == "Eczema"
    assert json.loads(by_case.loc[NEG, "soft_labels"]) == {"Eczema": 0.69, "Psoriasis": 0.31}
    assert by_case.loc[DEFECT, "label"] == "Insect Bite"
    assert by_case.loc["7290373467196101411", "label"] == "Urticaria"


def test_metadata_mapping(tmp_path, build):
    df, _ = load(build.scin(tmp_path))
    row = df.set_index("image_id").loc["1104367427453286930"]
    assert row["age_group"] == "18-29"
    assert row["sex"] == "female"
    assert row["fitzpatrick_self"] == 2
    assert row["fitzpatrick"] == 4          # median(FST3, FST4) = 3.5, rounded half up
    assert row["monk"] == 4                 # mean(3, 4) = 3.5, rounded half up
    assert row["body_site"] == "multiple"
    assert row["symptoms"] == "bleed|itch|fever"
    assert row["textures"] == "raised_or_bumpy|rough_or_flaky"
    assert row["duration"] == "one_to_four_weeks"
    assert row["shot_type"] == "at_an_angle"
    extra = json.loads(row["extra"])
    assert extra["body_parts"] == ["arm", "leg"]
    assert extra["race_ethnicity"] == ["asian"]
    assert extra["monk_india"] == 3.0 and extra["monk_us"] == 4.0
    assert extra["fitzpatrick_dermatologists"] == [3, 4]
    assert extra["related_category"] == "RASH"
    assert extra["condition_names"] == ["Eczema", "Psoriasis"]
    assert extra["condition_confidence"] == [4, 2]
    assert extra["gradable"]["dermatologist_gradable_for_fitzpatrick_skin_type_1"] == "YES"


def test_metadata_unknowns(tmp_path, build):
    df, _ = load(build.scin(tmp_path))
    row = df.set_index("case_id").loc[DEFECT]
    assert row["age_group"] == "80+"
    assert pd.isna(row["sex"])              # OTHER_OR_UNSPECIFIED is not "other": missing
    assert json.loads(row["extra"])["sex_at_birth"] == "OTHER_OR_UNSPECIFIED"
    assert pd.isna(row["fitzpatrick_self"])  # NONE_SELECTED
    assert row["fitzpatrick"] == 3           # median(2, 3, 3)
    assert row["monk"] == 7                  # india only
    assert pd.isna(row["duration"])          # UNKNOWN
    assert row["body_site"] == "head_or_neck"
    assert pd.isna(row["symptoms"])          # only "no relevant ..." answers
    other = df.set_index("case_id").loc["7290373467196101411"]
    assert other["sex"] == "male" and other["age_group"] == "40-49"
    assert other["monk"] == 10 and other["fitzpatrick"] == 6
    assert other["symptoms"] == "grew|pain"  # "NO" is not true
    assert other["body_site"] == "palm" and other["duration"] == "since_childhood"


def test_require_label_drops_and_counts(tmp_path, build):
    df, src = load(build.scin(tmp_path))
    assert "3445096909671059178" not in set(df["case_id"])
    assert "-42" not in set(df["case_id"])
    dropped = [i for i in src.issues if "require_label" in i["reason"]]
    assert sorted(i["image_id"] for i in dropped) == [
        "-4200000000000000001", "-4200000000000000003", "3445096909671059178"]


def test_keep_unlabelled(tmp_path, build):
    df, src = load(build.scin(tmp_path), require_label=False)
    assert len(df) == 8
    unl = df[df["case_id"].isin(["3445096909671059178", "-42"])]
    assert unl["label"].isna().all() and unl["soft_labels"].isna().all()
    assert df.set_index("case_id").loc["-42", "age_group"].tolist() == ["30-39", "30-39"]
    assert not [i for i in src.issues if "require_label" in i["reason"]]


def test_names_fallback_and_schema_spelling(tmp_path, build):
    labels = [dict(r) for r in build.SCIN_LABELS]
    labels[3]["weighted_skin_condition_label"] = ""  # names + confidences only
    header = [("dermatologist_skin_condition_label_name"
               if c == "dermatologist_skin_condition_on_label_name" else c)
              for c in build.SCIN_LABELS_HEADER]
    for r in labels:
        if "dermatologist_skin_condition_on_label_name" in r:
            r["dermatologist_skin_condition_label_name"] = r.pop(
                "dermatologist_skin_condition_on_label_name")
    root = tmp_path / "b"
    build.scin(root)
    build.write_csv(root / "dataset" / "scin_labels.csv", header, labels)
    df, _ = load(root)
    row = df.set_index("case_id").loc["7290373467196101411"]
    assert json.loads(row["soft_labels"]) == {"Eczema": 0.1429, "Urticaria": 0.8571}
    assert row["label"] == "Urticaria"
    assert json.loads(row["extra"])["label_from"] == "dermatologist_skin_condition_label_name"


def test_min_label_weight(tmp_path, build):
    df, _ = load(build.scin(tmp_path), min_label_weight=0.3)
    row = df.set_index("case_id").loc["7290373467196101411"]
    assert json.loads(row["soft_labels"]) == {"Urticaria": 1.0}
    neg = df.set_index("image_id").loc["-5840958151393346034"]
    assert json.loads(neg["soft_labels"]) == {"Eczema": 0.69, "Psoriasis": 0.31}


def test_literal_eval_never_eval(tmp_path, build):
    labels = [dict(r) for r in build.SCIN_LABELS]
    labels[0]["weighted_skin_condition_label"] = "__import__('os').getcwd()"
    root = tmp_path / "b"
    build.scin(root, labels=labels)
    with pytest.raises(DataError, match=r"scin_labels\.csv.*weighted_skin_condition_label"):
        load(root)


def test_bad_weights(tmp_path, build):
    labels = [dict(r) for r in build.SCIN_LABELS]
    labels[0]["weighted_skin_condition_label"] = "{'Eczema': -0.5, 'Psoriasis': 1.5}"
    root = build.scin(tmp_path, labels=labels)
    with pytest.raises(DataError, match=rf"{NEG}.*weighted_skin_condition_label"):
        load(root)


@pytest.mark.parametrize(("table", "column"), [
    ("scin_cases.csv", "case_id"), ("scin_cases.csv", "image_2_path"),
    ("scin_labels.csv", "case_id"), ("scin_labels.csv", "weighted_skin_condition_label"),
])
def test_missing_column(tmp_path, build, table, column):
    root = build.scin(tmp_path)
    build.drop_column(root / "dataset" / table, column)
    with pytest.raises(DataError, match=rf"{table.replace('.', r'[.]')}.*{column}"):
        load(root)


def test_missing_labels_table(tmp_path, build):
    root = build.scin(tmp_path)
    (root / "dataset" / "scin_labels.csv").unlink()
    with pytest.raises(DataError, match=r"scin_labels\.csv.*not found"):
        load(root)


def test_duplicate_case_id(tmp_path, build):
    labels = [*build.SCIN_LABELS, dict(build.SCIN_LABELS[0])]
    root = build.scin(tmp_path, labels=labels)
    with pytest.raises(DataError, match=r"scin_labels\.csv.*case_id.*repeats"):
        load(root)


def test_monk_out_of_range(tmp_path, build):
    labels = [dict(r) for r in build.SCIN_LABELS]
    labels[0]["monk_skin_tone_label_us"] = "11.0"
    root = build.scin(tmp_path, labels=labels)
    with pytest.raises(DataError, match=r"scin_labels\.csv.*monk_skin_tone_label_us"):
        load(root)


def test_repeated_image_is_kept_once(tmp_path, build):
    cases = [dict(c) for c in build.SCIN_CASES]
    cases[4]["image_2_path"] = cases[0]["image_1_path"]
    df, src = load(build.scin(tmp_path, cases=cases))
    assert df["image_id"].is_unique
    assert any("again" in i["reason"] for i in src.issues)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nope")


def test_root_without_tables(tmp_path):
    with pytest.raises(DataError, match=r"scin_cases\.csv.*not found"):
        load(tmp_path)


def test_empty_dataset(tmp_path, build):
    with pytest.raises(DataError, match="no images"):
        load(build.scin(tmp_path, cases=[], labels=[]))


def test_all_unlabelled_is_empty(tmp_path, build):
    with pytest.raises(DataError, match="no images"):
        load(build.scin(tmp_path, labels=[]))


def test_unknown_option():
    with pytest.raises(ConfigError, match="require_labels"):
        create_source("scin", ".", require_labels=False)
