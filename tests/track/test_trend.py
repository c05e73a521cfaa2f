"""Sequence features, the baseline, the trend network, its ONNX export and torch-free serving."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dermsight.errors import DataError
from dermsight.track import trend as T


def _les(sev):
    return {"severity": sev, "load": sev, "area": 0.1 * sev, "area8": 0.1 * sev,
            "area16": 0.05 * sev, "contrast": 10 * sev}


def test_sequence_features_are_changes_from_the_first_visit():
    emb = np.arange(12, dtype=np.float32).reshape(3, 4)
    f = T.sequence_features(emb, [_les(1), _les(2), _les(1)], [0, 7, 21], 4)
    assert f.shape == (3, 4 + T.N_LESION + T.N_TIME) and f.dtype == np.float32
    assert np.all(f[0] == 0)  # the first visit has no change and no elapsed time
    np.testing.assert_allclose(f[1, :4], 4.0)
    np.testing.assert_allclose(f[2, 4:4 + T.N_LESION], 0, atol=1e-6)  # back to the start
    assert f[1, 4 + 3] > 0  # load went up
    with pytest.raises(DataError, match="embeddings must be"):
        T.sequence_features(emb[:2], [_les(1)] * 3, [0, 1, 2], 4)
    with pytest.raises(DataError, match="visit times"):
        T.sequence_features(None, [_les(1)] * 3, [0, 1], 4)


def test_pad_batch_right_pads_with_a_mask():
    x, m = T.pad_batch([np.ones((2, 3)), np.ones((4, 3))])
    assert x.shape == (2, 4, 3) and m.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert np.all(x[0, 2:] == 0)


def test_baseline_fits_thresholds_between_the_classes():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 50)
    s = np.array([-1.0, 0.0, 1.0])[y] + rng.normal(0, 0.1, y.size)
    b = T.SeverityBaseline().fit(s, y)
    assert -1 < b.low < 0 < b.high < 1
    assert np.mean(b.predict(s) == y) > 0.97
    p = b.predict_proba(s)
    np.testing.assert_allclose(p.sum(1), 1)
    assert np.all(p.argmax(1) == b.predict(s))


def _toy_data(emb_dim=6, n=150, seed=0):
    """Sequences whose lesion load goes down / stays / goes up, with noisy embeddings."""
    rng = np.random.default_rng(seed)
    seqs, ys = [], []
    for i in range(n):
        y = i % 3
        t = int(rng.integers(2, 6))
        slope = (y - 1) * 0.6
        sev = [float(np.exp(slope * k / (t - 1) + rng.normal(0, 0.05))) for k in range(t)]
        emb = rng.normal(size=(t, emb_dim))
        seqs.append(T.sequence_features(emb, [_les(v) for v in sev],
                                        list(np.cumsum([0] + [7] * (t - 1))), emb_dim))
        ys.append(y)
    return seqs, np.array(ys)


@pytest.mark.slow
def test_trend_net_learns_exports_and_runs_without_torch(tmp_path):
    x, y = _toy_data()
    net = T.train_trend(x, y, epochs=60, hidden=16, seed=0)
    xt, yt = _toy_data(seed=1, n=60)
    p = T.torch_predict_proba(net, xt)
    assert np.mean(p.argmax(1) == yt) > 0.9
    T.export_trend(net, tmp_path / "m", {"classes": list(T.CLASSES), "embedding_dim": 6,
                                         "baseline": {"low": -0.1, "high": 0.1}})
    model = T.TrendModel.load(tmp_path / "m")
    xb, mb = T.pad_batch(xt)
    np.testing.assert_allclose(model.predict_proba(xb, mb), p, atol=1e-4)
    # padding does not change a sequence's answer
    one = model.predict_proba(*T.pad_batch([xt[0]]))
    np.testing.assert_allclose(one[0], p[0], atol=1e-4)
    # the serving path loads and runs it without importing torch
    code = ("import sys, numpy as np; from dermsight.track.trend import TrendModel; "
            f"m = TrendModel.load(r'{tmp_path / 'm'}'); "
            "r = m.predict_series(np.zeros((2, 6), np.float32), "
            "[{'severity': 1.0}, {'severity': 2.0}], [0.0, 10.0]); "
            "assert r['label'] in m.classes and 'torch' not in sys.modules, sys.modules.keys(); "
            "import dermsight.serve.api.routers.track, dermsight.track.service; "
            "assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_missing_trend_model_is_a_clear_error(tmp_path):
    from dermsight.errors import ConfigError

    with pytest.raises(ConfigError, match="trend.onnx"):
        T.TrendModel.load(tmp_path)


def _measured(photos):
    from trackhelpers import spot_rgb

    from dermsight.track.lesion import measure_lesion

    rgbs = [spot_rgb(**p) for p in photos]
    return rgbs, [measure_lesion(x) for x in rgbs]


def test_photos_of_other_spots_are_mismatches_by_their_lesion_measures():
    from trackhelpers import OTHER_SPOTS, SAME_SPOT

    _, same = _measured(SAME_SPOT)
    assert T.spot_mismatches(same) == []
    _, other = _measured(OTHER_SPOTS)
    found = T.spot_mismatches(other)
    assert [m["index"] for m in found] == [1, 2]
    assert all(m["checks"] == "measures" and m["score"] > 0 for m in found)
    assert found[0]["skin_l"] > 20  # pale skin, then dark skin
    # older rows lack skin_a / skin_b: no difference counted, never an error
    old = [{k: v for k, v in m.items() if k not in ("skin_a", "skin_b")} for m in other]
    assert T.same_spot_features(old[0], old[1])["skin_ab"] == 0.0


def test_spot_mismatches_read_the_embeddings_of_the_model_they_were_fitted_on():
    from trackhelpers import OTHER_SPOTS, SAME_SPOT

    from dermsight.serve.engine import Engine, default_model_dir

    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no default model folder (models/ham10000) in this checkout")
    engine = Engine.load(threads=1)
    assert engine.model_id == T.SAME_SPOT_EMBEDDING_MODEL
    scores = {}
    for photos, one_spot in ((SAME_SPOT, True), (OTHER_SPOTS, False)):
        rgbs, lesions = _measured(photos)
        emb = np.stack([p.embedding for p in engine.predict(rgbs)])
        found = T.spot_mismatches(lesions, emb, engine.model_id)
        assert all(m["checks"] == "embedding" and "cosine" in m for m in found)
        if one_spot:
            assert found == []
        scores[one_spot] = [T.same_spot_score(lesions[t - 1], lesions[t], T.SAME_SPOT["embedding"],
                                              emb[t - 1], emb[t]) for t in (1, 2)]
        # another classifier's embeddings are not read with these weights: the measures decide
        alone = T.spot_mismatches(lesions, emb, "0" * 64)
        assert all(m["checks"] == "measures" for m in alone) and (alone == []) == one_spot
    # every pair of three people's drawn spots scores above every pair of one spot (whether
    # these drawings cross the threshold depends on the model: on real held-out photos the
    # check catches 76 % of different-spot pairs, README "One spot?")
    assert min(scores[False]) > max(scores[True])
    same = T.same_spot_score(lesions[0], lesions[0], T.SAME_SPOT["embedding"], emb[0], emb[0])
    other = T.same_spot_score(lesions[0], lesions[0], T.SAME_SPOT["embedding"], emb[0], -emb[0])
    assert same < 0 < other  # the same measures, opposite embeddings: flagged by the cosine
