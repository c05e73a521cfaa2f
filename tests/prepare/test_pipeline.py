"""End-to-end tests of `prepare` on small fixtures in the HAM10000 format, bad files included."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsight.config import load_config
from dermsight.errors import DataError
from dermsight.manifest import ALL_COLUMNS, read_manifest
from dermsight.prepare.pipeline import run_prepare
from dermsight.prepare.splits import check_grouping

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def _lesion_image(rng: np.random.Generator, size=(96, 72)) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    skin = np.array([225, 180, 160], dtype=np.float32) * rng.uniform(0.85, 1.05)
    img = np.ones((h, w, 3), dtype=np.float32) * skin + rng.normal(0, 6, (h, w, 3))
    cy, cx, r = h / 2 + rng.uniform(-5, 5), w / 2 + rng.uniform(-5, 5), rng.uniform(10, 22)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    lesion = np.array([110, 70, 50]) * rng.uniform(0.7, 1.2)
    img[inside] = lesion + rng.normal(0, 8, (inside.sum(), 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture()
def ham_like(tmp_path):
    """40 lesions × 1-3 images in HAM10000 layout, plus five broken or missing images."""
    rng = np.random.default_rng(0)
    root = tmp_path / "ham"
    (root / "images").mkdir(parents=True)
    rows = []
    k = 0
    for lesion in range(40):
        label = CLASSES[lesion % 4]  # four classes, ten lesions each
        for _ in range(rng.integers(1, 4)):
            image_id = f"ISIC_{k:07d}"
            (root / "images" / f"{image_id}.jpg").write_bytes(_jpeg(_lesion_image(rng)))
            rows.append([f"HAM_{lesion:07d}", image_id, label, "histo", 50.0, "male", "back"])
            k += 1
    # an exact copy of image 0 filed under another lesion: must be merged into its group
    dup_id = f"ISIC_{k:07d}"
    (root / "images" / f"{dup_id}.jpg").write_bytes((root / "images" / "ISIC_0000000.jpg")
                                                     .read_bytes())
    rows.append(["HAM_9999999", dup_id, rows[0][2], "histo", 50.0, "male", "back"])
    good = _jpeg(_lesion_image(rng))
    bad = {
        "ISIC_9000001": b"",  # 0 bytes
        "ISIC_9000002": good[: len(good) // 2],  # truncated
        "ISIC_9000003": b"this is not an image at all",
        "ISIC_9000004": _jpeg(Image.new("RGB", (8, 8), (200, 150, 130))),  # tiny
    }
    for image_id, data in bad.items():
        (root / "images" / f"{image_id}.jpg").write_bytes(data)
        rows.append(["HAM_8888888", image_id, "nv", "histo", 40.0, "female", "back"])
    rows.append(["HAM_7777777", "ISIC_9000005", "nv", "histo", 40.0, "female", "back"])  # missing
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx", "dx_type", "age", "sex",
                                "localization"]).to_csv(root / "metadata.csv", index=False)
    return root


def _cfg(root, out, *extra):
    return load_config(None, ["prepare.source=ham10000", f"prepare.root={root}",
                              f"prepare.out={out}", "prepare.workers=1",
                              "prepare.split.min_class_count=3", *extra]).prepare


def test_prepare_writes_manifest_audit_and_figures(ham_like, tmp_path):
    out = tmp_path / "out"
    result = run_prepare(_cfg(ham_like, out), progress=False)
    manifest = read_manifest(out)
    audit = json.loads((out / "audit.json").read_text())
    assert list(manifest.columns) == list(ALL_COLUMNS)
    assert {p.name for p in (out / "figures").iterdir()} == {
        "class_balance.png", "quality_histograms.png", "tone_distribution.png"}
    # every bad file is excluded with its path and reason; the run went on
    reasons = {e["image_id"]: e["reason"] for e in audit["excluded"]}
    assert set(reasons) == {f"ISIC_900000{i}" for i in range(1, 6)}
    assert reasons["ISIC_9000001"].startswith("empty")
    assert reasons["ISIC_9000002"].startswith("truncated")
    assert reasons["ISIC_9000003"].startswith("not a readable image")
    assert reasons["ISIC_9000004"].startswith("too small")
    assert reasons["ISIC_9000005"].startswith("missing")
    assert all(e["path"].endswith(f"{e['image_id']}.jpg") for e in audit["excluded"])
    assert audit["counts"]["kept"] == len(manifest) == audit["counts"]["listed"] - 5
    # features are filled for every kept image
    for col in ("ita", "ita_category", "tone_bucket", "monk_estimate", "q_sharpness",
                "lighting_ok", "phash", "width", "height"):
        assert manifest[col].notna().all(), col
    # the copy filed under another lesion joined its original's group, so no split cuts it
    first = manifest.set_index("image_id").loc["ISIC_0000000", "group_id"]
    copy = manifest.set_index("image_id").loc[f"ISIC_{len(manifest) - 1:07d}", "group_id"]
    assert first == copy
    assert any("ISIC_0000000" in c["images"] for c in audit["duplicates"]["clusters"])
    # grouped, stratified split covering every class
    assert check_grouping(manifest) == []
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert result.audit["splits"]["groups_in_several_splits"] == []


def test_prepare_is_seeded(ham_like, tmp_path):
    a = run_prepare(_cfg(ham_like, tmp_path / "a", "prepare.figures=false"), progress=False)
    b = run_prepare(_cfg(ham_like, tmp_path / "b", "prepare.figures=false"), progress=False)
    c = run_prepare(_cfg(ham_like, tmp_path / "c", "prepare.figures=false", "prepare.seed=1"),
                    progress=False)
    pd.testing.assert_frame_equal(a.manifest, b.manifest)
    assert not a.manifest["split"].equals(c.manifest["split"])


def test_parallel_equals_serial(ham_like, tmp_path):
    serial = run_prepare(_cfg(ham_like, tmp_path / "s", "prepare.figures=false"), progress=False)
    parallel = run_prepare(_cfg(ham_like, tmp_path / "p", "prepare.figures=false",
                                "prepare.workers=2"), progress=False)
    pd.testing.assert_frame_equal(serial.manifest, parallel.manifest)


def test_rare_classes_dropped_and_reported(ham_like, tmp_path):
    cfg = _cfg(ham_like, tmp_path / "o", "prepare.figures=false",
               "prepare.split.min_class_count=1000", "prepare.split.rare_classes=drop")
    with pytest.raises(DataError, match="no images left"):
        run_prepare(cfg, progress=False)


def test_failure_leaves_out_untouched(ham_like, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    (ham_like / "metadata.csv").write_text("lesion_id,image_id\nHAM_1,ISIC_1\n")
    with pytest.raises(DataError, match=r"metadata.csv.*\['dx'"):
        run_prepare(_cfg(ham_like, out), progress=False)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_all_images_bad_is_a_clear_error(ham_like, tmp_path):
    for p in (ham_like / "images").iterdir():
        p.write_bytes(b"")
    with pytest.raises(DataError, match="none of the"):
        run_prepare(_cfg(ham_like, tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_official_split_is_kept(ham_like, tmp_path):
    meta = pd.read_csv(ham_like / "metadata.csv")
    meta["dermamnist_split"] = np.where(np.arange(len(meta)) % 5 == 0, "val", "train")
    meta.to_csv(ham_like / "metadata.csv", index=False)
    result = run_prepare(_cfg(ham_like, tmp_path / "out", "prepare.figures=false",
                              "prepare.source_options={official_split: true}"), progress=False)
    kept = meta.set_index("image_id").loc[result.manifest["image_id"], "dermamnist_split"]
    assert (result.manifest["split"].to_numpy() == kept.to_numpy()).all()
    assert result.audit["splits"]["method"].startswith("official")


def test_prepare_over_http_with_workers(ham_like, tmp_path, http_root):
    """A remote root (served by a local HTTP server) prepares like a local one, in parallel."""
    folder, url = http_root
    assert ham_like == folder / "ham"  # both fixtures use this test's tmp_path
    local = run_prepare(_cfg(ham_like, tmp_path / "local", "prepare.figures=false"),
                        progress=False)
    remote = run_prepare(_cfg(f"{url}/ham", tmp_path / "remote", "prepare.figures=false",
                              "prepare.workers=2"), progress=False)
    assert remote.manifest["image_uri"].str.startswith(url).all()
    cols = ["image_id", "group_id", "split", "ita", "q_sharpness", "lighting_ok"]
    pd.testing.assert_frame_equal(local.manifest[cols], remote.manifest[cols])
    assert len(remote.audit["excluded"]) == 5


def test_image_too_small_to_measure_is_excluded_not_fatal(ham_like, tmp_path):
    """With min_side lowered below what the features need, the image is excluded, no crash."""
    (ham_like / "images" / "ISIC_9000004.jpg").write_bytes(
        _jpeg(Image.new("RGB", (5, 4), (200, 150, 130))))
    result = run_prepare(_cfg(ham_like, tmp_path / "out", "prepare.figures=false",
                              "prepare.images.min_side=1"), progress=False)
    reasons = {e["image_id"]: e["reason"] for e in result.audit["excluded"]}
    assert reasons["ISIC_9000004"].startswith("cannot measure")


def test_out_that_is_a_file_fails_before_any_image_is_measured(ham_like, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dermsight.cli import app
    from dermsight.prepare import pipeline

    def measured(*args, **kwargs):
        raise AssertionError("images were measured")

    monkeypatch.setattr(pipeline, "measure_all", measured)
    out = tmp_path / "manifest.txt"
    out.write_text("not a folder")
    r = CliRunner().invoke(app, ["prepare", "--source", "ham10000", "--root", str(ham_like),
                                 "--out", str(out), "--workers", "1", "-q"])
    assert r.exit_code == 2, r.output
    assert f"output folder '{out}' is a file" in r.output and "Traceback" not in r.output
    with pytest.raises(DataError, match=f"'{out}', which is a file"):
        run_prepare(_cfg(ham_like, out / "sub"), progress=False)
    assert out.read_text() == "not a folder"


def test_a_killed_runs_staging_folder_is_removed_at_the_next_run(ham_like, tmp_path):
    import subprocess

    from dermsight.io import _HOST

    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that no longer runs
    left = tmp_path / f".out.{_HOST}-{gone.pid}.a1b2c3d4.staging"
    (left / "figures").mkdir(parents=True)
    (ham_like / "metadata.csv").write_text("lesion_id,image_id\nHAM_1,ISIC_1\n")
    with pytest.raises(DataError, match="metadata.csv"):  # fails at once, yet cleans up
        run_prepare(_cfg(ham_like, tmp_path / "out"), progress=False)
    assert not left.exists()
