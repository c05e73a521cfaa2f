"""Folder-of-class-folders source."""

from __future__ import annotations

import pytest

from dermsight.errors import DataError
from dermsight.manifest import SOURCE_COLUMNS
from dermsight.sources import create_source


def load(root, **options):
    src = create_source("folder", str(root), **options)
    return src.load(), src


def test_rows_labels_and_ids(tmp_path, build):
    root = build.folder(tmp_path / "kaggle")
    df, _ = load(root)
    assert list(df.columns) == list(SOURCE_COLUMNS)
    assert sorted(df["image_id"]) == ["acne/a1", "acne/a2", "eczema/e1", "eczema/sub/e2",
                                      "psoriasis/p1"]
    assert df.set_index("image_id")["label"].to_dict() == {
        "acne/a1": "acne", "acne/a2": "acne", "eczema/e1": "eczema",
        "eczema/sub/e2": "eczema", "psoriasis/p1": "psoriasis"}
    assert (df["group_id"] == df["image_id"]).all() and (df["case_id"] == df["image_id"]).all()
    assert df.set_index("image_id").loc["eczema/sub/e2", "image_uri"] == str(
        root / "eczema" / "sub" / "e2.webp")
    assert df["split"].isna().all()


def test_skips_non_images_hidden_and_loose_files(tmp_path, build):
    root = build.folder(tmp_path)
    (root / "acne" / "notes.txt").write_text("not an image")
    build.write_image(root / "loose.jpg")
    build.write_image(root / ".cache" / "x.jpg")
    build.write_image(root / "acne" / ".hidden.png")
    df, src = load(root)
    assert len(df) == 5
    reasons = sorted(i["reason"] for i in src.issues)
    assert len(reasons) == 3
    assert any("outside a class folder" in r for r in reasons)


def test_upper_case_extensions(tmp_path, build):
    root = build.folder(tmp_path, files={"mel/A.JPG": 1, "nv/B.Png": 2})
    df, _ = load(root)
    assert sorted(df["image_id"]) == ["mel/A", "nv/B"]


def test_same_stem_different_extension_stays_unique(tmp_path, build):
    root = build.folder(tmp_path, files={"mel/a.jpg": 1, "mel/a.png": 2, "nv/b.jpg": 3})
    df, _ = load(root)
    assert sorted(df["image_id"]) == ["mel/a.jpg", "mel/a.png", "nv/b"]


def test_split_dirs(tmp_path, build):
    root = build.folder(tmp_path, files=build.FOLDER_SPLIT_FILES)
    df, _ = load(root, split_dirs=True)
    got = df.set_index("image_id")[["split", "label"]].apply(tuple, axis=1).to_dict()
    assert got == {
        "train/acne/a1": ("train", "acne"), "train/eczema/e1": ("train", "eczema"),
        "valid/acne/a2": ("val", "acne"), "test/eczema/e2": ("test", "eczema"),
        "validation/eczema/e3": ("val", "eczema")}


def test_split_dirs_unknown_split_folder(tmp_path, build):
    root = build.folder(tmp_path, files={"train/acne/a.jpg": 1, "extra/acne/b.jpg": 2})
    with pytest.raises(DataError, match="'extra'.*split"):
        load(root, split_dirs=True)


def test_without_split_dirs_split_folders_are_classes(tmp_path, build):
    root = build.folder(tmp_path, files=build.FOLDER_SPLIT_FILES)
    df, _ = load(root)
    assert set(df["label"]) == {"train", "valid", "test", "validation"}


def test_custom_extensions(tmp_path, build):
    root = build.folder(tmp_path)
    df, _ = load(root, extensions=[".jpg"])
    assert list(df["image_id"]) == ["acne/a1"]


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "nope")


def test_root_is_a_file(tmp_path):
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(DataError, match="not a directory"):
        load(f)


def test_empty_dataset(tmp_path, build):
    root = build.folder(tmp_path, files={})
    (root / "acne").mkdir()
    with pytest.raises(DataError, match="no images"):
        load(root)
