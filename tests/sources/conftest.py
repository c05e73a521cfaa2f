"""Builders that write tiny datasets in each source's exact on-disk format, plus shared helpers.

Use the ``build`` fixture: ``build.ham(tmp_path)``, ``build.scin(tmp_path, layout="flat")``, ...
Each builder returns the dataset root it wrote. Images are tiny generated PNG/JPEG files.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(name: str) -> Path:
    """The real dataset folder ``../shared/data/<name>``; skips the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data '{path}' not available")
    return path


def image_bytes(fmt: str = "PNG", seed: int = 0, size: tuple[int, int] = (8, 6)) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP",
           ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")
    path.write_bytes(image_bytes(fmt, seed))
    return path


def write_csv(path: Path, header: list[str], rows: list[dict | list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in rows:
            if isinstance(row, dict):
                unknown = set(row) - set(header)
                assert not unknown, f"fixture row has columns not in the header: {unknown}"
                row = [row.get(c, "") for c in header]
            writer.writerow(["" if v is None else v for v in row])
    return path


def drop_column(path: Path, column: str) -> None:
    """Rewrite a CSV without ``column``."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    idx = rows[0].index(column)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([r[:idx] + r[idx + 1:] for r in rows])


# ---------------------------------------------------------------------------------------------
# HAM10000 (DermaMNIST-indexed release)

HAM_HEADER = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization",
              "dermamnist_split", "dermamnist_index"]
HAM_ROWS = [
    ["HAM_0000118", "ISIC_0027419", "bkl", "histo", "80.0", "male", "scalp", "train", "0"],
    ["HAM_0000118", "ISIC_0025030", "bkl", "histo", "80.0", "male", "scalp", "val", "1"],
    ["HAM_0002730", "ISIC_0026769", "nv", "follow_up", "", "unknown", "unknown", "train", "2"],
    ["HAM_0001466", "ISIC_0031633", "mel", "histo", "75.0", "female", "lower extremity",
     "train", "3"],
    ["HAM_0002761", "ISIC_0029176", "vasc", "consensus", "60.0", "female", "back", "val", "4"],
]


def build_ham(root: Path, rows: list[list] | None = None, masks: bool = True) -> Path:
    rows = HAM_ROWS if rows is None else rows
    write_csv(root / "metadata.csv", HAM_HEADER, rows)
    for i, row in enumerate(rows):
        write_image(root / "images" / f"{row[1]}.jpg", seed=i)
        if masks:
            write_image(root / "masks" / f"{row[1]}_segmentation.png", seed=100 + i)
    return root


# ---------------------------------------------------------------------------------------------
# Fitzpatrick17k

FITZ_HEADER = ["md5hash", "fitzpatrick_scale", "fitzpatrick_centaur", "label",
               "nine_partition_label", "three_partition_label", "qc", "ddi_scale"]
FITZ_ROWS = [
    ["fd06d13de341cc75ad679916c5d7e6a6", "4", "4", "prurigo-nodularis", "benign-epidermal",
     "benign", "", "34"],
    ["a4bb4e5206c4e89a303f470576fc5253", "1", "1", "basal-cell-carcinoma-morpheiform",
     "malignant-epidermal", "malignant", "", "12"],
    ["0009d89a58dac26bb3c113744b7b4196", "-1", "3", "psoriasis", "inflammatory",
     "non-neoplastic", "1 Diagnostic", "56"],
    ["000b6317b3be6d504e212a50e4d5667f", "6", "-1", "mycosis-fungoides",
     "malignant-cutaneous-lymphoma", "malignant", "3 Wrongly labelled", "56"],
]


def build_fitz(root: Path, rows: list[list] | None = None) -> Path:
    rows = FITZ_ROWS if rows is None else rows
    write_csv(root / "metadata.csv", FITZ_HEADER, rows)
    for i, row in enumerate(rows):
        write_image(root / "images" / f"{row[0]}.jpg", seed=i)
    return root


# ---------------------------------------------------------------------------------------------
# PAD-UFES-20: header copied from the real metadata.csv (26 columns); the rows are made up.

PAD_HEADER_LINE = (
    "patient_id,lesion_id,smoke,drink,background_father,background_mother,age,pesticide,gender,"
    "skin_cancer_history,cancer_history,has_piped_water,has_sewage_system,fitspatrick,region,"
    "diameter_1,diameter_2,diagnostic,itch,grew,hurt,changed,bleed,elevation,img_id,biopsed"
)
PAD_HEADER = PAD_HEADER_LINE.split(",")
PAD_ROWS = [
    # a patient with two lesions, one of them photographed twice
    "PAT_9001,5001,False,True,ITALY,UNK,62,False,MALE,True,False,True,True,2.0,FACE,7.0,9.0,"
    "BCC,True,UNK,False,True,False,True,PAT_9001_5001_11.png,True",
    "PAT_9001,5001,False,True,ITALY,UNK,62,False,MALE,True,False,True,True,2.0,FACE,7.0,9.0,"
    "BCC,True,UNK,False,True,False,True,PAT_9001_5001_12.png,True",
    "PAT_9001,5002,False,True,ITALY,UNK,62,False,MALE,True,False,True,True,2.0,CHEST,4.0,3.0,"
    "SEK,False,False,True,False,False,True,PAT_9001_5002_13.png,False",
    # the sparse form the real table has for about a third of the rows
    "PAT_9002,5003,,,,,8,,,,,,,,ARM,,,NEV,False,False,False,False,False,False,"
    "PAT_9002_5003_14.png,False",
    "PAT_9003,5004,True,False,GERMANY,POMERANIA,71,True,FEMALE,False,True,False,False,5.0,"
    "BACK,12.0,10.0,MEL,UNK,True,UNK,UNK,True,False,PAT_9003_5004_15.png,True",
    "PAT_9004,5005,False,False,BRAZIL,BRAZIL,45,False,FEMALE,False,False,True,True,3.0,NOSE,"
    "5.0,5.0,ACK,True,True,False,False,False,True,PAT_9004_5005_16.png,False",
    "PAT_9005,5006,False,False,POMERANIA,GERMANY,58,True,MALE,True,True,True,False,1.0,EAR,"
    "8.0,6.0,SCC,False,True,True,True,True,True,PAT_9005_5006_17.png,True",
]


def build_pad(root: Path, rows: list[str] | None = None, header: str = PAD_HEADER_LINE) -> Path:
    rows = PAD_ROWS if rows is None else rows
    root.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    for i, row in enumerate(rows):
        img_id = row.split(",")[PAD_HEADER.index("img_id")]
        write_image(root / "images" / img_id, seed=i)
    return root


# ---------------------------------------------------------------------------------------------
# SCIN: the exact column set of scin_cases.csv / scin_labels.csv (see docs/SCIN_SCHEMA.md)

RACE = ["american_indian_or_alaska_native", "asian", "black_or_african_american",
        "hispanic_latino_or_spanish_origin", "middle_eastern_or_north_african",
        "native_hawaiian_or_pacific_islander", "white", "other_race", "prefer_not_to_answer",
        "two_or_more_after_mitigation"]
TEXTURES = ["raised_or_bumpy", "flat", "rough_or_flaky", "fluid_filled"]
BODY_PARTS = ["head_or_neck", "arm", "palm", "back_of_hand", "torso_front", "torso_back",
              "genitalia_or_groin", "buttocks", "leg", "foot_top_or_side", "foot_sole", "other"]
CONDITION_SYMPTOMS = ["bothersome_appearance", "bleeding", "increasing_size", "darkening",
                      "itching", "burning", "pain", "no_relevant_experience"]
OTHER_SYMPTOMS = ["fever", "chills", "fatigue", "joint_pain", "mouth_sores",
                  "shortness_of_breath", "no_relevant_symptoms"]
SCIN_CASES_HEADER = (
    ["case_id", "source", "release", "year", "age_group", "sex_at_birth", "fitzpatrick_skin_type"]
    + [f"race_ethnicity_{r}" for r in RACE] + ["combined_race"]
    + [f"textures_{t}" for t in TEXTURES]
    + [f"body_parts_{p}" for p in BODY_PARTS]
    + [f"condition_symptoms_{s}" for s in CONDITION_SYMPTOMS]
    + [f"other_symptoms_{s}" for s in OTHER_SYMPTOMS]
    + ["related_category", "condition_duration"]
    + [f"image_{n}_path" for n in (1, 2, 3)] + [f"image_{n}_shot_type" for n in (1, 2, 3)]
)
SCIN_LABELS_HEADER = (
    ["case_id"]
    + [f"dermatologist_gradable_for_skin_condition_{n}" for n in (1, 2, 3)]
    + ["dermatologist_skin_condition_on_label_name", "dermatologist_skin_condition_confidence",
       "weighted_skin_condition_label"]
    + [f"dermatologist_gradable_for_fitzpatrick_skin_type_{n}" for n in (1, 2, 3)]
    + [f"dermatologist_fitzpatrick_skin_type_label_{n}" for n in (1, 2, 3)]
    + ["gradable_for_monk_skin_tone_india", "gradable_for_monk_skin_tone_us",
       "monk_skin_tone_label_india", "monk_skin_tone_label_us"]
)
_BASE = {"source": "SCIN", "release": "1.0.0", "year": "2023"}

SCIN_CASES = [
    {  # negative 64-bit id, three images, two body parts, mixed symptoms
        **_BASE, "case_id": "-1001492676369731180", "age_group": "AGE_18_TO_29",
        "sex_at_birth": "FEMALE", "fitzpatrick_skin_type": "FST2",
        "race_ethnicity_asian": "YES", "combined_race": "ASIAN",
        "textures_raised_or_bumpy": "YES", "textures_rough_or_flaky": "YES",
        "body_parts_arm": "YES", "body_parts_leg": "YES",
        "condition_symptoms_itching": "YES", "condition_symptoms_bleeding": "YES",
        "other_symptoms_fever": "YES", "condition_symptoms_no_relevant_experience": "",
        "related_category": "RASH", "condition_duration": "ONE_TO_FOUR_WEEKS",
        "image_1_path": "dataset/images/-5840958151393346034.png",
        "image_2_path": "dataset/images/1104367427453286930.png",
        "image_3_path": "dataset/images/6690127015592618113.png",
        "image_1_shot_type": "CLOSE_UP", "image_2_shot_type": "AT_AN_ANGLE",
        "image_3_shot_type": "AT_DISTANCE",
    },
    {  # the known defect: a listed image path without extension whose file is missing
        **_BASE, "case_id": "1834609919572055750", "age_group": "AGE_80_OR_ABOVE",
        "sex_at_birth": "OTHER_OR_UNSPECIFIED", "fitzpatrick_skin_type": "NONE_SELECTED",
        "race_ethnicity_prefer_not_to_answer": "YES", "body_parts_head_or_neck": "YES",
        "condition_symptoms_no_relevant_experience": "YES",
        "other_symptoms_no_relevant_symptoms": "YES",
        "related_category": "GROWTH_OR_MOLE", "condition_duration": "UNKNOWN",
        "image_1_path": "dataset/images/-2243186711511406658", "image_1_shot_type": "CLOSE_UP",
    },
    {  # no row in scin_labels.csv at all
        **_BASE, "case_id": "3445096909671059178", "age_group": "AGE_UNKNOWN",
        "sex_at_birth": "MALE", "fitzpatrick_skin_type": "FST5",
        "body_parts_torso_front": "YES", "related_category": "ACNE",
        "condition_duration": "MORE_THAN_ONE_YEAR",
        "image_1_path": "dataset/images/3445096909671059178.png",
        "image_1_shot_type": "AT_DISTANCE",
    },
    {  # labels row, gradable, but no condition label; images 1 and 3 (2 empty)
        **_BASE, "case_id": "-42", "age_group": "AGE_30_TO_39", "sex_at_birth": "MALE",
        "fitzpatrick_skin_type": "FST4", "condition_duration": "ONE_DAY",
        "image_1_path": "dataset/images/-4200000000000000001.png",
        "image_3_path": "dataset/images/-4200000000000000003.png",
        "image_1_shot_type": "CLOSE_UP", "image_3_shot_type": "CLOSE_UP",
    },
    {  # a male with one image and a single-condition label
        **_BASE, "case_id": "7290373467196101411", "age_group": "AGE_40_TO_49",
        "sex_at_birth": "MALE", "fitzpatrick_skin_type": "FST6",
        "race_ethnicity_black_or_african_american": "YES", "textures_flat": "YES",
        "body_parts_palm": "YES", "condition_symptoms_increasing_size": "YES",
        "condition_symptoms_pain": "YES", "condition_symptoms_darkening": "NO",
        "related_category": "PIGMENTARY_PROBLEM", "condition_duration": "SINCE_CHILDHOOD",
        "image_1_path": "dataset/images/2896498727611349307.png",
        "image_1_shot_type": "AT_AN_ANGLE",
    },
]
SCIN_LABELS = [
    {
        "case_id": "-1001492676369731180",
        "dermatologist_gradable_for_skin_condition_1": "DEFAULT_YES_IMAGE_QUALITY_SUFFICIENT",
        "dermatologist_gradable_for_skin_condition_2": "DEFAULT_YES_IMAGE_QUALITY_SUFFICIENT",
        "dermatologist_skin_condition_on_label_name": "['Eczema', 'Psoriasis']",
        "dermatologist_skin_condition_confidence": "[4, 2]",
        "weighted_skin_condition_label": "{'Eczema': 0.69, 'Psoriasis': 0.31}",
        "dermatologist_gradable_for_fitzpatrick_skin_type_1": "YES",
        "dermatologist_gradable_for_fitzpatrick_skin_type_2": "YES",
        "dermatologist_fitzpatrick_skin_type_label_1": "FST3",
        "dermatologist_fitzpatrick_skin_type_label_2": "FST4",
        "gradable_for_monk_skin_tone_india": "True", "gradable_for_monk_skin_tone_us": "True",
        "monk_skin_tone_label_india": "3.0", "monk_skin_tone_label_us": "4.0",
    },
    {
        "case_id": "1834609919572055750",
        "dermatologist_gradable_for_skin_condition_1": "DEFAULT_YES_IMAGE_QUALITY_SUFFICIENT",
        "dermatologist_skin_condition_on_label_name": "['Insect Bite']",
        "dermatologist_skin_condition_confidence": "[5]",
        "weighted_skin_condition_label": "{'Insect Bite': 1.0}",
        "dermatologist_gradable_for_fitzpatrick_skin_type_1": "YES",
        "dermatologist_fitzpatrick_skin_type_label_1": "FST2",
        "dermatologist_fitzpatrick_skin_type_label_2": "FST3",
        "dermatologist_fitzpatrick_skin_type_label_3": "FST3",
        "gradable_for_monk_skin_tone_india": "True", "monk_skin_tone_label_india": "7.0",
    },
    {
        "case_id": "-42",
        "dermatologist_gradable_for_skin_condition_1": "DEFAULT_YES_IMAGE_QUALITY_SUFFICIENT",
        "dermatologist_gradable_for_fitzpatrick_skin_type_1": "NO",
    },
    {
        "case_id": "7290373467196101411",
        "dermatologist_skin_condition_on_label_name": "['Urticaria', 'Eczema', 'Urticaria']",
        "dermatologist_skin_condition_confidence": "[3, 1, 3]",
        "weighted_skin_condition_label": "{'Urticaria': 0.5, 'Eczema': 0.25, 'Acne': 0.25}",
        "dermatologist_fitzpatrick_skin_type_label_1": "FST6",
        "monk_skin_tone_label_india": "", "monk_skin_tone_label_us": "10.0",
    },
]


def build_scin(root: Path, layout: str = "bucket", cases: list[dict] | None = None,
               labels: list[dict] | None = None, images: bool = True) -> Path:
    """Write SCIN. ``layout``: "bucket" → root/dataset/{csvs,images}; "flat" → root/{csvs,images}.

    Returns the root a user would pass: the bucket root, or the folder holding the CSVs.
    """
    cases = SCIN_CASES if cases is None else cases
    labels = SCIN_LABELS if labels is None else labels
    tables = root / "dataset" if layout == "bucket" else root
    write_csv(tables / "scin_cases.csv", SCIN_CASES_HEADER, cases)
    write_csv(tables / "scin_labels.csv", SCIN_LABELS_HEADER, labels)
    if images:
        for i, case in enumerate(cases):
            for n in (1, 2, 3):
                path = case.get(f"image_{n}_path", "")
                if path.endswith(".png"):  # the extension-less defect stays missing
                    write_image(tables / path.removeprefix("dataset/"), seed=10 * i + n)
    return root


# ---------------------------------------------------------------------------------------------
# Folder of class folders

FOLDER_FILES = {
    "acne/a1.jpg": 1, "acne/a2.png": 2, "eczema/e1.jpeg": 3, "eczema/sub/e2.webp": 4,
    "psoriasis/p1.bmp": 5,
}
FOLDER_SPLIT_FILES = {
    "train/acne/a1.jpg": 1, "train/eczema/e1.png": 2, "valid/acne/a2.jpg": 3,
    "test/eczema/e2.jpg": 4, "validation/eczema/e3.png": 5,
}


def build_folder(root: Path, files: dict[str, int] | None = None) -> Path:
    for rel, seed in (FOLDER_FILES if files is None else files).items():
        write_image(root / rel, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def build() -> SimpleNamespace:
    return SimpleNamespace(ham=build_ham, fitz=build_fitz, pad=build_pad, scin=build_scin,
                           folder=build_folder, write_csv=write_csv, drop_column=drop_column,
                           write_image=write_image, shared=shared, HAM_ROWS=HAM_ROWS,
                           FITZ_ROWS=FITZ_ROWS, PAD_ROWS=PAD_ROWS, PAD_HEADER=PAD_HEADER,
                           PAD_HEADER_LINE=PAD_HEADER_LINE, SCIN_CASES=SCIN_CASES,
                           SCIN_LABELS=SCIN_LABELS, SCIN_CASES_HEADER=SCIN_CASES_HEADER,
                           SCIN_LABELS_HEADER=SCIN_LABELS_HEADER, FOLDER_FILES=FOLDER_FILES,
                           FOLDER_SPLIT_FILES=FOLDER_SPLIT_FILES)
