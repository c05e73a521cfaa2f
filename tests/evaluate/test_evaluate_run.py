import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from dermsight.cli import app
from dermsight.errors import ConfigError, DataError
from dermsight.evaluate.run import EvalOptions, conformal_from_calibration, run_evaluate
from dermsight.schemas import Calibration

FAST = dict(bootstrap=50, cam_samples=6, workers=0, batch_size=16)


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory):
    dest = tmp_path_factory.mktemp("eval") / "tiny"
    shutil.copytree(tiny_run, dest)
    return dest


@pytest.fixture(scope="module")
def evaluated(run_copy, tiny_run):
    root = tiny_run.parent.parent / "synthetic"
    return run_evaluate(run_copy, source="synthetic", root=str(root),
                        options=EvalOptions(split="test", **FAST))


@pytest.mark.slow
def test_end_to_end_outputs(evaluated, run_copy):
    out = evaluated.out
    assert out == run_copy / "eval-synthetic-test"
    for name in ("predictions.csv", "report.json", "report.html"):
        assert (out / name).is_file(), name
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert {"confusion.png", "reliability.png", "fairness_accuracy.png",
            "conformal_coverage.png", "gradcam.png", "gallery_confident_wrong.png",
            "gallery_unsure_right.png"} <= figures
    report = json.loads((out / "report.json").read_text())
    assert report["n"] > 0 and not report["is_validation_split"]
    for key in ("accuracy", "top3_accuracy", "balanced_accuracy", "f1_macro", "auroc_macro",
                "per_class"):
        assert key in report["metrics"]
    assert set(report["metrics"]["per_class"]) == set(report["classes"])
    for key in ("ece_before", "ece_after", "temperature"):
        assert isinstance(report["calibration"][key], float)
    for key in ("target", "coverage", "mean_set_size", "by_group"):
        assert key in report["conformal"]
    assert report["conformal"]["target"] == pytest.approx(0.9)
    assert report["conformal"]["by_group"]  # tone bucket computed by prepare
    fair = report["fairness"]
    assert "tone_bucket" in fair and "ita_category" in fair
    for attr in fair.values():
        assert {"groups", "max_gap", "max_gap_ci95"} <= set(attr)
        for row in attr["groups"].values():
            assert {"n", "accuracy", "accuracy_ci95", "small"} <= set(row)
            assert row["small"] == (row["n"] < 30)
    # synthetic images ship lesion masks: localisation scores exist
    ex = report["explain"]
    assert ex["n"] == 6 and 0 <= ex["pointing_game"] <= 1 and 0 <= ex["energy_in_mask"] <= 1
    assert 0 <= ex["centre_baseline"] <= 1 and len(ex["cam_centroid_offset_px"]) == 2
    html = (out / "report.html").read_text()
    assert "Not medical advice" in html and "data:image/png;base64," in html
    assert "<script" not in html and "src=\"http" not in html
    # prepare splits by patient: no scored photo shares a patient with training
    overlap = report["overlap_with_train"]
    assert overlap["available"] and overlap["n"] == report["n"]
    assert overlap["n_group_seen"] == 0 and overlap["n_same_image"] == 0

    # the photo-alone path of this model with metadata: its own calibration and figures
    alone = report["without_metadata"]
    assert set(alone) >= {"temperature", "metrics", "ece_before", "ece_after", "coverage",
                          "mean_set_size"}
    assert 0 <= alone["metrics"]["balanced_accuracy"] <= 1 and 0 <= alone["coverage"] <= 1

    table = pd.read_csv(out / "predictions.csv")
    classes = report["classes"]
    assert list(table.columns[:2]) == ["image_id", "label"]
    assert list(table.columns[2:2 + len(classes)]) == classes
    assert np.allclose(table[classes].sum(axis=1), 1.0, atol=1e-4)
    assert len(table) == report["n"]


@pytest.mark.slow
def test_calibration_is_stored_and_reused(evaluated, run_copy, tiny_run):
    cal = json.loads((run_copy / "calibration.json").read_text())
    assert set(cal) >= {"temperature", "fitted_on", "conformal", "val_metrics", "classes"}
    # written through its schema: read back and written again, it is the same file
    assert cal["format_version"] == 1 and Calibration.parse(cal).dump() == cal
    assert cal["fitted_on"]["split"] == "val"
    assert cal["conformal"]["method"] == "lac" and cal["conformal"]["target"] == 0.9
    assert isinstance(cal["conformal"]["qhat"], float)
    assert not evaluated.report["calibration"]["reused"]
    # each path fitted for itself: the photo alone has its own temperature and thresholds
    alone = cal["without_metadata"]
    assert alone["temperature"] > 0 and isinstance(alone["conformal"]["qhat"], float)
    assert alone["temperature"] != cal["temperature"]
    assert evaluated.report["without_metadata"]["temperature"] == alone["temperature"]
    # the stored thresholds rebuild the very sets of predictions.csv
    table = pd.read_csv(evaluated.out / "predictions.csv")
    probs = table[cal["classes"]].to_numpy()
    probs = probs / probs.sum(axis=1, keepdims=True)
    sets = conformal_from_calibration(cal).predict_sets(probs)
    rebuilt = ["|".join(c for c, s in zip(cal["classes"], row) if s) for row in sets]
    assert (np.array(rebuilt) == table["prediction_set"].to_numpy()).mean() > 0.97

    # scoring the validation split re-uses calibration.json and says it is the calibration set
    again = run_evaluate(run_copy, source="synthetic", root=str(tiny_run.parent.parent /
                                                                "synthetic"),
                         options=EvalOptions(split="val", cam=False, **FAST))
    rep = again.report
    assert rep["calibration"]["reused"]
    assert rep["calibration"]["temperature"] == pytest.approx(cal["temperature"])
    assert rep["is_validation_split"]
    assert any("validation split" in n for n in rep["notes"])
    assert "cross_fit" in rep["conformal"] and rep["explain"] == {"skipped": "--no-cam"}
    assert {"ece_after", "coverage", "by_group"} <= set(rep["without_metadata"]["cross_fit"])


def _folder_dataset(tiny_run, root, *, extra_class=True):
    """A folder-per-class copy of a few synthetic test images (no masks, no metadata, no
    tone), plus a class the model does not know."""
    manifest = pd.read_parquet(tiny_run.parent.parent / "prepared" / "manifest.parquet")
    rows = manifest[manifest["split"] == "test"].head(12)
    for i, r in enumerate(rows.itertuples()):
        label = r.label.upper().replace("_", " ") if i % 2 else r.label  # case-insensitive map
        dest = root / label
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(r.image_uri, dest / f"img{i}.png")
    if extra_class:
        (root / "mystery-rash").mkdir()
        Image.new("RGB", (64, 64), (180, 120, 100)).save(root / "mystery-rash" / "m.png")
    (root / "acne" / "broken.png").parent.mkdir(exist_ok=True)
    (root / "acne" / "broken.png").write_bytes(b"not an image")
    return root, len(rows)


@pytest.mark.slow
def test_cli_on_a_folder_prepare_never_saw(run_copy, evaluated, tiny_run, tmp_path):
    # `evaluated` writes run_copy/eval-synthetic-test, compared below: ask for it rather than
    # rely on another test having run first in this worker
    root, n_images = _folder_dataset(tiny_run, tmp_path / "folder")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        "evaluate", "--run", str(run_copy), "--source", "folder", "--root", str(root),
        "--split", "test", "--out", str(out), "--bootstrap", "20", "--no-cam", "--workers",
        "0", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "evaluated tiny on folder/test" in res.output
    report = json.loads((out / "report.json").read_text())
    data = report["data"]
    assert data["tone_measured_on_the_fly"]
    assert data["unmapped_labels"] == {"mystery-rash": 1}
    assert data["n_excluded"] == 1 and "broken.png" in data["excluded"][0]["path"]
    assert report["n"] == n_images
    assert "tone_bucket" in report["fairness"]  # computed on the fly from ITA
    assert any("no split" in n for n in report["notes"])
    assert report["overlap_with_train"]["available"] is False  # another dataset's ids

    cmp = CliRunner().invoke(app, ["compare", str(out), str(run_copy / "eval-synthetic-test"),
                                   "--csv", str(tmp_path / "cmp.csv")])
    assert cmp.exit_code == 0, cmp.output
    assert "folder/test" in cmp.output and "synthetic/test" in cmp.output
    assert len(pd.read_csv(tmp_path / "cmp.csv")) == 2


@pytest.mark.slow
def test_bad_inputs_are_named(run_copy, tiny_run, tmp_path):
    # a run folder without a checkpoint
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_copy / "config.yaml", bare / "config.yaml")
    with pytest.raises(ConfigError, match="checkpoint|not a trained run"):
        run_evaluate(bare, source="synthetic", root=None, options=EvalOptions(**FAST))
    # a dataset with none of the model's classes
    alien = tmp_path / "alien"
    for name in ("foo", "bar"):
        (alien / name).mkdir(parents=True)
        Image.new("RGB", (64, 64), (200, 150, 120)).save(alien / name / "a.png")
    with pytest.raises(DataError, match="none of the labels.*foo"):
        run_evaluate(run_copy, source="folder", root=str(alien), options=EvalOptions(**FAST))
    # an empty split
    split_root = tmp_path / "splits"
    (split_root / "train" / "acne").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 150, 120)).save(split_root / "train" / "acne" / "a.png")
    with pytest.raises(DataError, match="split 'test'.*is empty"):
        run_evaluate(run_copy, source="folder", root=str(split_root),
                     options=EvalOptions(source_options={"split_dirs": True}, **FAST))
    res = CliRunner().invoke(app, ["evaluate", "--run", str(run_copy), "--source", "folder",
                                   "--root", str(split_root), "--source-option",
                                   "split_dirs=true"])
    assert res.exit_code == 2 and "split 'test'" in res.output
    with pytest.raises(ConfigError, match="conformal"):
        run_evaluate(run_copy, source="synthetic", root=None,
                     options=EvalOptions(conformal="xyz"))
    res = CliRunner().invoke(app, ["evaluate", "--run", str(bare), "--source", "synthetic"])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output


def test_cross_fit_scores_every_row_out_of_sample_per_group():
    """Exchangeable synthetic data: cross-fitted group-conditional coverage lands on target in
    every group, and the figures are seeded."""
    from dermsight.evaluate.store import cross_fit

    rng = np.random.default_rng(0)
    n, c = 1200, 4
    y = rng.integers(0, c, n)
    groups = np.array(["dark", "light", "medium"], dtype=object)[rng.integers(0, 3, n)]
    noise = np.where(groups == "dark", 2.5, 1.0)[:, None]  # a harder group
    logits = rng.normal(0, 1, (n, c)) * noise + 2.0 * np.eye(c)[y]
    kw = dict(classes=[str(i) for i in range(c)], method="lac", coverage=0.9, seed=0,
              repeats=5)
    out = cross_fit(logits, y, groups, mode="group", **kw)
    assert out["repeats"] == 5 and set(out["by_group"]) == {"dark", "light", "medium"}
    for row in out["by_group"].values():
        assert abs(row["coverage"] - 0.9) < 0.03 and row["coverage_sd"] < 0.03
    assert out["by_group"]["dark"]["mean_set_size"] > out["by_group"]["light"]["mean_set_size"]
    assert out == cross_fit(logits, y, groups, mode="group", **kw)
    # marginal thresholds under-cover the harder group: what group mode is for
    marginal = cross_fit(logits, y, groups, mode="marginal", **kw)
    assert marginal["by_group"]["dark"]["coverage"] < out["by_group"]["dark"]["coverage"] - 0.02


def test_overlap_with_train_splits_the_metrics_by_seen_lesions():
    """Rows whose lesion (group_id) or image is in the training split are counted and scored
    apart from the unseen ones."""
    from dermsight.evaluate.sections import overlap_with_train

    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame({"image_id": [f"img{i}" for i in range(n)],
                          "group_id": [f"les{i}" for i in range(n)]})
    frame.loc[5, "group_id"] = None                      # unknown lesion: counted unseen
    #                                                      (its id would have been in train)
    train = pd.DataFrame({"image_id": ["img0", "other"],
                          "group_id": ["x", None]})      # img0 itself was trained on
    train = pd.concat([train, pd.DataFrame({"image_id": [f"t{i}" for i in range(40)],
                                            "group_id": [f"les{i}" for i in range(1, 41)]})])
    y = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), y] = 0.8                         # right everywhere ...
    probs[41:, :] = np.roll(probs[41:, :], 1, axis=1)    # ... except on the unseen rows
    out = overlap_with_train(frame, train, y, probs)
    assert out["n_same_image"] == 1 and out["n_group_seen"] == 40  # img0 + les1..40 but les5
    assert out["share_seen"] == pytest.approx(40 / n)
    assert out["seen"]["n"] == 40 and out["seen"]["accuracy"] == 1.0
    assert out["unseen"]["n"] == 40 and out["unseen"]["accuracy"] == pytest.approx(1 / 40)
    # groups under min_n are not scored; no group column: only the image overlap
    small = overlap_with_train(frame.iloc[:45], train, y[:45], probs[:45])
    assert "unseen" not in small and small["seen"]["n"] == 40
    bare = overlap_with_train(frame[["image_id"]], train, y, probs)
    assert bare["available"] is False and bare["n_same_image"] == 1


def test_tta_mode_is_chosen_at_evaluation_and_refits_the_calibration(tiny_run, tmp_path):
    run = tmp_path / "tiny"
    shutil.copytree(tiny_run, run)
    root = str(tiny_run.parent.parent / "synthetic")
    opts = dict(split="val", cam=False, **FAST)
    plain = run_evaluate(run, source="synthetic", root=root, options=EvalOptions(tta="none",
                                                                                 **opts))
    probs_plain = pd.read_csv(plain.out / "predictions.csv")[plain.report["classes"]]
    d4 = run_evaluate(run, source="synthetic", root=root, options=EvalOptions(tta="d4", **opts))
    probs_d4 = pd.read_csv(d4.out / "predictions.csv")[d4.report["classes"]]
    assert plain.report["tta"] == "none" and d4.report["tta"] == "d4"
    assert not d4.report["calibration"]["reused"]  # fitted on other probabilities
    assert json.loads((run / "calibration.json").read_text())["fitted_on"]["tta"] == "d4"
    assert not np.allclose(probs_plain.to_numpy(), probs_d4.to_numpy())
    with pytest.raises(ConfigError, match="none, hflip, flips, d4"):
        run_evaluate(run, source="synthetic", root=root, options=EvalOptions(tta="sideways",
                                                                             **opts))
    res = CliRunner().invoke(app, ["evaluate", "--run", str(run), "--source", "synthetic",
                                   "--root", root, "--split", "val", "--no-cam", "--tta", "flips",
                                   "--bootstrap", "50", "--workers", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    report = json.loads((run / "eval-synthetic-val" / "report.json").read_text())
    assert report["tta"] == "flips"
