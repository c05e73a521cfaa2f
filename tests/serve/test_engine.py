"""The torch-free engine: same preprocessing as training, predictions, metadata rules."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dermsight.errors import ConfigError, DataError
from dermsight.serve.engine import Engine, Prediction

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine.load(tiny_model, threads=1)


def _image(seed: int, h: int = 80, w: int = 100) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([200, 150, 130], np.uint8) + rng.integers(-20, 20, (h, w, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_serving_never_imports_torch(tiny_model):
    code = (
        "import sys, numpy as np\n"
        "from dermsight.serve.engine import Engine\n"
        "from dermsight.imaging import decode_rgb\n"
        "from dermsight.serve.overlay import cam_overlay_png\n"
        f"e = Engine.load({str(tiny_model)!r})\n"
        "p = e.predict([np.full((40, 50, 3), 128, np.uint8)], [{'age': 40}], cam=True)[0]\n"
        "cam_overlay_png(np.full((40, 50, 3), 128, np.uint8), p.cam)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok', e.precision)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok int8"


def test_preprocessing_and_metadata_equal_the_training_dataset(tiny_run, engine):
    from dermsight.data.dataset import ManifestDataset
    from dermsight.imaging import decode_rgb
    from dermsight.manifest import read_manifest
    from dermsight.train.checkpoint import load_run

    loaded = load_run(tiny_run)
    manifest = read_manifest(tiny_run.parent.parent / "prepared")
    rows = manifest[manifest["split"] == "val"].head(3).reset_index(drop=True)
    ds = ManifestDataset(rows, loaded.classes, loaded.preprocess, encoder=loaded.encoder)
    for i in range(len(rows)):
        with open(rows.loc[i, "image_uri"], "rb") as f:
            rgb = decode_rgb(f.read())
        row = {k: rows.loc[i, k] for k in engine.metadata_fields}
        row = {k: (None if v is None or v != v else v) for k, v in row.items()}
        feeds = engine.feeds(engine.preprocess.batch([rgb]), [row])
        item = ds[i]
        np.testing.assert_array_equal(feeds["image"][0], item["image"].numpy())
        np.testing.assert_array_equal(feeds["meta"][0], item["meta"].numpy())


def test_prediction_fields(engine):
    preds = engine.predict([_image(0), _image(1, 120, 90)], [{"age": 52, "sex": "Female"}, None],
                           top_k=2)
    assert len(preds) == 2
    for p in preds:
        assert isinstance(p, Prediction)
        assert set(p.probabilities) == set(engine.classes)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert len(p.top_k) == 2 and p.top_k[0][1] >= p.top_k[1][1]
        assert p.top_k[0][0] in p.conformal_set
        assert p.conformal_text and p.conformal_coverage == pytest.approx(0.9)
        assert set(p.lighting) == {"score", "ok", "checks", "tips"}
        assert 0.0 <= p.lighting["score"] <= 1.0
        assert p.skin_tone["bucket"] in ("light", "medium", "dark")
        assert 1 <= p.skin_tone["monk"] <= 10 and isinstance(p.skin_tone["ita"], float)
        assert p.embedding.dtype == np.float32 and p.embedding.ndim == 1
        assert p.cam is None
        d = p.to_dict()
        json.dumps(d)
        assert "embedding" not in d and len(p.to_dict(embedding=True)["embedding"]) == \
            p.embedding.size


def test_temperature_scales_the_logits(engine):
    raw = engine.run([_image(2)], [{}], ["diagnosis_logits"])["diagnosis_logits"][0]
    probs = np.exp(raw / engine.temperature) / np.exp(raw / engine.temperature).sum()
    pred = engine.predict([_image(2)])[0]
    np.testing.assert_allclose([pred.probabilities[c] for c in engine.classes], probs,
                               atol=1e-6)


def test_batch_equals_one_by_one(engine):
    images = [_image(s, 60 + 7 * s, 90 - 5 * s) for s in range(5)]
    meta = [{"age": 20 + s} if s % 2 else None for s in range(5)]
    batch = engine.predict(images, meta)
    for img, m, b in zip(images, meta, batch):
        single = engine.predict([img], [m])[0]
        for c in engine.classes:
            assert single.probabilities[c] == pytest.approx(b.probabilities[c], abs=1e-5)


def test_unknown_metadata_is_an_error_naming_the_field(engine):
    with pytest.raises(DataError, match="unknown metadata field 'shoe_size'"):
        engine.predict([_image(0)], [{"shoe_size": 42}])
    with pytest.raises(DataError, match=r"unknown value 'martian' for metadata field 'sex'"):
        engine.predict([_image(0)], [{"sex": "martian"}])
    with pytest.raises(DataError, match="'age' must be a number"):
        engine.predict([_image(0)], [{"age": "old"}])
    with pytest.raises(DataError, match="'age' must be between 0.0 and 120.0"):
        engine.predict([_image(0)], [{"age": 500}])
    with pytest.raises(DataError, match="image 1: unknown metadata field"):
        engine.predict([_image(0), _image(1)], [None, {"x": 1}])
    with pytest.raises(DataError, match="2 entries for 1 images"):
        engine.predict([_image(0)], [None, None])
    with pytest.raises(DataError, match="image 0: expected an RGB uint8"):
        engine.predict([np.zeros((5, 5), np.uint8)])


def test_lenient_mode_ignores_bad_metadata_with_a_warning(engine):
    lenient = engine.predict([_image(0)], [{"sex": "martian", "age": 40}], strict=False)[0]
    clean = engine.predict([_image(0)], [{"age": 40}])[0]
    assert any("'martian'" in w and "ignored" in w for w in lenient.warnings)
    assert lenient.probabilities == clean.probabilities


def test_empty_metadata_values_mean_missing(engine):
    a = engine.predict([_image(3)], [{"age": "", "sex": None}])[0]
    b = engine.predict([_image(3)], [None])[0]
    assert a.probabilities == b.probabilities


def test_metadata_schema_for_forms(engine):
    schema = engine.metadata_schema
    assert schema["numeric"]["age"]["min"] == 0
    assert "female" in schema["categorical"]["sex"]


def test_precisions_and_bad_folders(tiny_model, tmp_path):
    assert Engine.load(tiny_model).precision == "int8"
    fp32 = Engine.load(tiny_model, precision="fp32")
    assert fp32.precision == "fp32"
    with pytest.raises(ConfigError, match="precision must be one of"):
        Engine.load(tiny_model, precision="fp16")
    with pytest.raises(ConfigError, match="not a dermsight model folder"):
        Engine.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    with open(broken / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ConfigError, match="does not match the sha256"):
        Engine.load(broken)
    (broken / "model.int8.onnx").unlink()
    assert Engine.load(broken).precision == "fp32"  # auto falls back
    with pytest.raises(ConfigError, match="no int8 model"):
        Engine.load(broken, precision="int8")


def test_int8_agrees_with_fp32_on_validation_images(tiny_run, tiny_model):
    from dermsight.imaging import decode_rgb
    from dermsight.manifest import read_manifest

    manifest = read_manifest(tiny_run.parent.parent / "prepared")
    rows = manifest[manifest["split"] == "val"]
    images = []
    for uri in rows["image_uri"]:
        with open(uri, "rb") as f:
            images.append(decode_rgb(f.read()))
    top = [[p.top_k[0][0] for p in Engine.load(tiny_model, precision=prec).predict(images)]
           for prec in ("fp32", "int8")]
    agreement = np.mean([a == b for a, b in zip(*top)])
    assert agreement >= 0.99


def test_default_model_dir(monkeypatch, tmp_path):
    from dermsight.serve.engine import ENV_MODEL_DIR, default_model_dir

    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    project = Path(__file__).resolve().parents[2]
    assert default_model_dir() in (project / "models" / "ham10000",
                                   Path.cwd() / "models" / "ham10000")
    monkeypatch.setenv(ENV_MODEL_DIR, str(tmp_path))
    assert default_model_dir() == tmp_path
    with pytest.raises(ConfigError, match="not a dermsight model folder"):
        Engine.load()


def test_the_committed_default_model_loads_and_predicts(monkeypatch):
    from dermsight.serve.engine import ENV_MODEL_DIR, default_model_dir

    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no default model folder (models/ham10000) in this checkout")
    engine = Engine.load(threads=1)
    assert engine.precision == "int8" and len(engine.classes) == 7
    pred = engine.predict([_image(5, 300, 400)], [{"age": 60, "sex": "male"}], cam=True)[0]
    assert pred.cam.shape == (300, 400) and len(pred.conformal_set) >= 1


def test_conformal_sets_follow_lac_and_aps(engine):
    import copy

    c = len(engine.classes)
    assert c >= 3
    p = np.full(c, 0.05 / (c - 3)) if c > 3 else np.zeros(c)
    p[:3] = [0.6, 0.25, 0.1] if c > 3 else [0.6, 0.3, 0.1]
    probs = p[None, :] / p.sum()
    e = copy.copy(engine)
    e.conformal = {"method": "lac", "threshold": 0.8}  # keep p >= 0.2
    assert np.flatnonzero(e.conformal_sets(probs)[0]).tolist() == [0, 1]
    e.conformal = {"method": "aps", "threshold": 0.92}  # cumulative probability <= 0.92
    assert np.flatnonzero(e.conformal_sets(probs)[0]).tolist() == [0, 1]
    e.conformal = {"method": "lac", "threshold": 0.01}  # the top class is always kept
    assert np.flatnonzero(e.conformal_sets(probs)[0]).tolist() == [0]
    e.conformal = {}
    assert e.conformal_sets(probs)[0].sum() == 1


def test_group_conditional_sets_use_each_photos_tone(engine):
    import copy

    c = len(engine.classes)
    p = np.full(c, 0.05 / (c - 3)) if c > 3 else np.zeros(c)
    p[:3] = [0.6, 0.25, 0.1] if c > 3 else [0.6, 0.3, 0.1]
    probs = np.repeat((p / p.sum())[None, :], 3, axis=0)
    e = copy.copy(engine)
    e.conformal = {"method": "lac", "mode": "group", "group_by": "tone_bucket",
                   "threshold": 0.8, "group_thresholds": {"dark": 0.95, "light": 0.5}}
    tones = [{"bucket": "dark"}, {"bucket": "light"}, {"bucket": None}]
    sets = e.conformal_sets(probs, tones)
    assert np.flatnonzero(sets[0]).tolist() == [0, 1, 2]   # dark: keep p >= 0.05
    assert np.flatnonzero(sets[1]).tolist() == [0]         # light: keep p >= 0.5
    assert np.flatnonzero(sets[2]).tolist() == [0, 1]      # unknown tone: the marginal 0.8
    np.testing.assert_array_equal(e.conformal_sets(probs), sets[[2, 2, 2]])


def test_photos_without_metadata_use_the_photo_alone_calibration(tiny_model, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    info = json.loads((folder / "model.json").read_text())
    info["temperature"] = 1.0
    info["conformal"] = {"method": "lac", "threshold": 0.99, "coverage": 0.9, "mode": "marginal"}
    info["without_metadata"] = {"temperature": 3.0, "conformal": {
        "method": "lac", "threshold": 0.01, "coverage": 0.8, "mode": "marginal"}}
    (folder / "model.json").write_text(json.dumps(info))
    engine = Engine.load(folder)
    meta = {"age": 50, "sex": "female"}
    with_meta, alone = engine.predict([_image(4), _image(4)], [meta, None])
    for pred, m, t in ((with_meta, meta, 1.0), (alone, {}, 3.0)):
        raw = engine.run([_image(4)], [engine._clean_metadata(m, "", True)[0]],
                         ["diagnosis_logits"])["diagnosis_logits"][0]
        probs = np.exp(raw / t) / np.exp(raw / t).sum()
        np.testing.assert_allclose([pred.probabilities[c] for c in engine.classes], probs,
                                   atol=1e-6)
    # each path's own thresholds and coverage: a loose threshold with metadata, a strict one
    # (top class only) for the photo alone
    assert len(with_meta.conformal_set) == len(engine.classes) and with_meta.conformal_coverage \
        == 0.9
    assert len(alone.conformal_set) == 1 and alone.conformal_coverage == 0.8
