"""`dermsight export`: the model folder, its parity with PyTorch, calibration carried over."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from dermsight.cli import app
from dermsight.errors import ConfigError
from dermsight.export import export_model
from dermsight.io import sha256_file as sha256
from dermsight.train.checkpoint import load_run

pytestmark = pytest.mark.slow


def _softmax(z):
    z = z - z.max(1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


def test_model_folder_is_complete(tiny_model):
    info = json.loads((tiny_model / "model.json").read_text())
    for key in ("classes", "preprocess", "metadata", "temperature", "conformal", "metrics",
                "parity", "files", "version", "dermsight_version", "created", "input_size"):
        assert key in info, key
    assert info["inputs"] == ["image", "meta", "has_meta"]
    assert info["outputs"] == ["diagnosis_logits", "lighting_logit", "embedding", "feature_map",
                               "class_gradients"]
    for entry in info["files"].values():
        assert sha256(tiny_model / entry["path"]) == entry["sha256"]
    schema = info["metadata"]["schema"]
    assert set(schema["numeric"]) == {"age"} and schema["numeric"]["age"]["max"] == 120
    assert set(schema["categorical"]) == {"sex", "body_site"}
    assert all(v == v.lower() for vals in schema["categorical"].values() for v in vals)
    card = (tiny_model / "MODEL_CARD.md").read_text()
    assert "not medical advice" in card.lower() and "Limitations" in card


def test_recorded_parity_meets_the_targets(tiny_model):
    parity = json.loads((tiny_model / "model.json").read_text())["parity"]
    assert parity["n_val_images"] > 0
    assert parity["fp32_max_abs_prob_diff"] <= 1e-4
    assert parity["fp32_no_metadata_max_abs_prob_diff"] <= 1e-4
    assert parity["int8_top1_agreement"] >= 0.99


def test_onnx_fp32_matches_pytorch_with_and_without_metadata(tiny_run, tiny_model):
    loaded = load_run(tiny_run)
    session = ort.InferenceSession(str(tiny_model / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    image = rng.normal(size=(6, 3, 64, 64)).astype(np.float32)
    rows = [{"age": 30 + 5 * i, "sex": "female" if i % 2 else "male"} for i in range(6)]
    meta = loaded.encoder.transform(rows)
    has = np.array([1, 1, 1, 0, 0, 0], np.float32)
    logits, embedding = session.run(["diagnosis_logits", "embedding"],
                                    {"image": image, "meta": meta, "has_meta": has})
    with torch.no_grad():
        with_meta = loaded.model(torch.from_numpy(image[:3]), torch.from_numpy(meta[:3]))
        without = loaded.model(torch.from_numpy(image[3:]), None)
        feats = loaded.model.forward_features(torch.from_numpy(image)).numpy()
    ref = np.concatenate([with_meta["diagnosis"].numpy(), without["diagnosis"].numpy()])
    assert np.abs(_softmax(logits) - _softmax(ref)).max() <= 1e-4
    np.testing.assert_allclose(embedding, feats, atol=1e-4)


def test_class_gradients_are_the_exact_head_gradient(tiny_run, tiny_model):
    loaded = load_run(tiny_run)
    session = ort.InferenceSession(str(tiny_model / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 3, 64, 64)).astype(np.float32)
    meta = loaded.encoder.transform([{"age": 50, "sex": "male"}, {}])
    emb, grads = session.run(["embedding", "class_gradients"],
                             {"image": image, "meta": meta, "has_meta": np.ones(2, np.float32)})
    feats = torch.from_numpy(emb).requires_grad_(True)
    logits = loaded.model.forward_head(feats, torch.from_numpy(meta))["diagnosis"]
    for c in range(logits.shape[1]):
        (g,) = torch.autograd.grad(logits[:, c].sum(), feats, retain_graph=True)
        np.testing.assert_allclose(grads[:, c], g.numpy(), atol=1e-5)


def test_calibration_json_is_carried_into_model_json(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    classes = load_run(run).classes
    (run / "calibration.json").write_text(json.dumps(
        {"format_version": 1, "classes": classes, "temperature": 2.0,
         "conformal": {"method": "aps", "mode": "marginal", "target": 0.8, "alpha": 0.2,
                       "qhat": 0.95, "thresholds": {}}}))
    result = export_model(run, tmp_path / "model", int8=False, parity_images=4)
    info = result.info
    assert info["temperature"] == 2.0
    assert info["conformal"]["method"] == "aps" and info["conformal"]["threshold"] == 0.95
    assert info["conformal"]["coverage"] == pytest.approx(0.8)
    assert not (tmp_path / "model" / "model.int8.onnx").exists()
    assert json.loads((tmp_path / "model" / "model.json").read_text()) == info


@pytest.mark.parametrize(("calibration", "field"), [
    ({"temperature": 2.0, "conformal": {"method": "aps", "alpha": 0.2, "threshold": 0.95}},
     "format_version"),                                  # written before calibration.json had one
    ({"format_version": 7}, "format_version"),           # from a newer dermsight
    ({"format_version": 1, "classes": ["a"], "temperature": 1.0,
      "conformal": {"method": "lac", "mode": "marginal", "target": 0.9, "alpha": 0.1,
                    "threshold": 0.5}}, "conformal.qhat"),  # an old spelling of the threshold
])
def test_an_old_or_broken_calibration_json_names_the_file_and_field(tiny_run, tmp_path,
                                                                     calibration, field):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "calibration.json").write_text(json.dumps(calibration))
    with pytest.raises(ConfigError, match=rf"run/calibration.json: field '{field}'.*--recalibrate"):
        export_model(run, tmp_path / "model", int8=False, parity_images=4)


def test_conformal_is_fitted_when_the_run_is_not_calibrated(tiny_model):
    conf = json.loads((tiny_model / "model.json").read_text())["conformal"]
    assert conf["method"] == "lac" and conf["coverage"] == pytest.approx(0.9)
    assert "validation" in conf["source"]


def test_cli_export_no_int8_removes_a_stale_int8_model(tiny_run, tiny_model, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    result = CliRunner().invoke(app, ["export", "--run", str(tiny_run), "--out", str(out),
                                      "--no-int8", "--parity-images", "4"])
    assert result.exit_code == 0, result.output
    assert "parity on 4 validation images" in result.output
    assert (out / "model.onnx").exists() and not (out / "model.int8.onnx").exists()
    assert "int8" not in json.loads((out / "model.json").read_text())["files"]


def test_int8_only_folder(tiny_run, tmp_path):
    result = export_model(tiny_run, tmp_path / "m", keep_fp32=False, parity_images=4,
                          calibration_images=16)
    assert not (tmp_path / "m" / "model.onnx").exists()
    assert (tmp_path / "m" / "model.int8.onnx").exists()
    assert result.info["files"]["fp32"]["included"] is False


def test_export_of_a_missing_run_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nope"):
        export_model(tmp_path / "nope", tmp_path / "out")


def test_group_conditional_calibration_is_carried_into_model_json():
    from dermsight.export.info import served_conformal
    from dermsight.schemas import ConformalSettings

    cal = {"method": "lac", "mode": "group", "alpha": 0.1, "target": 0.9, "qhat": 0.8,
           "group_by": "tone_bucket", "thresholds": {"dark": 0.9, "light": 0.7}}
    out = served_conformal(ConformalSettings(**cal)).dump()
    assert out["mode"] == "group" and out["group_by"] == "tone_bucket"
    assert out["threshold"] == 0.8 and out["group_thresholds"] == {"dark": 0.9, "light": 0.7}
    # a grouping the engine cannot measure on a photo is not exported
    cal["group_by"] = "sex"
    assert served_conformal(ConformalSettings(**cal)) is None


def test_model_card_reports_tone_figures_from_the_evaluation(tiny_model, tmp_path):
    from dermsight.export.card import render_card
    from dermsight.export.info import skin_tone_groups

    row = {"n": 58, "small": False, "accuracy": 0.655, "accuracy_ci95": [0.53, 0.78],
           "f1_macro": 0.649, "f1_macro_ci95": [0.50, 0.80], "auroc_macro": 0.89}
    fairness = {"sex": {"groups": {"male": row, "female": row}},
                "tone_bucket": {"groups": {"dark": row, "light": {**row, "n": 12, "small": True,
                                                                  "accuracy": 0.9}},
                                "gap_metric": "accuracy", "max_gap": 0.245,
                                "max_gap_groups": ["light", "dark"],
                                "max_gap_ci95": [0.07, 0.35], "n_resamples": 1000, "min_n": 30}}
    assert skin_tone_groups(tmp_path) is None  # no groups.json, no evaluation
    (tmp_path / "eval-ham10000-val").mkdir()
    (tmp_path / "eval-ham10000-val" / "report.json").write_text(
        json.dumps({"split": "val", "fairness": fairness}))
    groups = skin_tone_groups(tmp_path)
    assert groups["attribute"] == "tone_bucket" and groups["max_gap"] == 0.245
    assert groups["source"] == "eval-ham10000-val/report.json"

    info = json.loads((tiny_model / "model.json").read_text())
    info["skin_tone_groups"] = groups
    info["conformal"] = {**(info.get("conformal") or {}), "method": "lac", "coverage": 0.9,
                         "threshold": 0.8, "mode": "group", "group_by": "tone_bucket",
                         "group_thresholds": {"dark": 0.93, "light": 0.71}}
    card = render_card(info)
    assert "Grouped by `tone_bucket`" in card and "| dark | 58 | 0.655 (0.530–0.780)" in card
    assert "| light (*small*) | 12 |" in card
    assert "between light and dark (95 % CI 0.070–0.350)" in card
    assert "dark 0.930, light 0.710" in card
    assert "performance on darker skin is unknown" not in card


def test_a_new_fairness_metric_reaches_model_json(tiny_run, tmp_path):
    """Every figure evaluate reports per skin-tone group is carried into model.json (no list
    of known keys in export); bootstrap diagnostics stay in the report."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    row = {"n": 40, "small": False, "accuracy": 0.7, "accuracy_ci95": [0.6, 0.8],
           "sensitivity_mel": 0.55, "sensitivity_mel_ci95": [0.4, 0.7], "ci_skipped": {}}
    fairness = {"tone_bucket": {"groups": {"dark": row, "light": {**row, "accuracy": 0.8}},
                                "gap_metric": "accuracy", "max_gap": 0.1, "min_n": 30,
                                "max_gap_groups": ["light", "dark"], "n_resamples": 50,
                                "max_gap_ci95": [0.0, 0.2]}}
    (run / "eval-synthetic-val").mkdir()
    (run / "eval-synthetic-val" / "report.json").write_text(
        json.dumps({"split": "val", "fairness": fairness}))
    export_model(run, tmp_path / "model", int8=False, parity_images=4)
    groups = json.loads((tmp_path / "model" / "model.json").read_text())["skin_tone_groups"]
    assert groups["attribute"] == "tone_bucket" and groups["max_gap"] == 0.1
    dark = groups["groups"]["dark"]
    assert dark["sensitivity_mel"] == 0.55 and dark["sensitivity_mel_ci95"] == [0.4, 0.7]
    assert "ci_skipped" not in dark


def test_model_card_shows_both_metadata_paths(tiny_model, tmp_path):
    from dermsight.export.card import render_card
    from dermsight.export.info import metadata_paths

    assert metadata_paths(tmp_path) is None  # no evaluation
    folder = tmp_path / "eval-ham10000-val"
    folder.mkdir()
    report = {"split": "val", "metrics": {"accuracy": 0.85, "balanced_accuracy": 0.77,
                                          "f1_macro": 0.76, "auroc_macro": 0.97},
              "calibration": {"ece_after": 0.021}, "conformal": {"coverage": 0.905,
                                                                  "mean_set_size": 1.2}}
    (folder / "report.json").write_text(json.dumps(report))
    assert metadata_paths(tmp_path) is None  # evaluated before the photo-alone path existed
    report["without_metadata"] = {"metrics": {"accuracy": 0.83, "balanced_accuracy": 0.71,
                                              "f1_macro": 0.70, "auroc_macro": 0.96},
                                  "ece_after": 0.025, "coverage": 0.897, "mean_set_size": 1.5}
    (folder / "report.json").write_text(json.dumps(report))
    paths = metadata_paths(tmp_path)
    assert paths["source"] == "eval-ham10000-val/report.json" and paths["split"] == "val"
    assert paths["with_metadata"]["ece"] == 0.021 and paths["without_metadata"]["coverage"] == 0.897

    info = json.loads((tiny_model / "model.json").read_text())
    card = render_card({**info, "metadata_paths": paths})
    assert "With and without the patient's metadata (val split)" in card
    assert "| balanced_accuracy | 0.770 | 0.710 |" in card and "| ece | 0.021 | 0.025 |" in card
    assert "With and without" not in render_card({**info, "metadata_paths": None})
