"""Tracking inside the serving app, with a real exported model (``tiny_model``) and a real
ONNX trend model: per-photo predictions and embeddings, and a trend from the model."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from trackhelpers import photo_bytes


@pytest.fixture
def engine(tiny_model):
    from dermsight.serve.engine import Engine

    return Engine.load(tiny_model)


def _trend_model(tmp_path, emb_dim, embedding_model, name="trend"):
    from dermsight.track import trend as T

    rng = np.random.default_rng(0)
    seqs, ys = [], []
    for i in range(60):
        n = int(rng.integers(2, 5))
        les = [{"severity": 1.0 + (i % 3 - 1) * 0.5 * t, "area": 0.1} for t in range(n)]
        seqs.append(T.sequence_features(rng.normal(size=(n, emb_dim)), les,
                                        list(np.arange(n) * 7.0), emb_dim))
        ys.append(i % 3)
    net = T.train_trend(seqs, np.array(ys), epochs=3, hidden=8)
    out = tmp_path / name
    T.export_trend(net, out, {"classes": list(T.CLASSES), "embedding_dim": emb_dim,
                              "embedding_model": embedding_model,
                              "baseline": {"low": -0.2, "high": 0.2}})
    return out


@pytest.mark.slow
def test_serving_app_mounts_tracking_with_predictions_and_trend(engine, tmp_path, monkeypatch):
    from dermsight.serve.api import ServeSettings, create_app

    emb_dim = int(engine.predict([np.full((64, 64, 3), 128, np.uint8)])[0].embedding.size)
    assert engine.model_id and len(engine.model_id) == 64
    monkeypatch.setenv("DERMSIGHT_TREND_MODEL",
                       str(_trend_model(tmp_path, emb_dim, engine.model_id)))
    url = f"sqlite:///{tmp_path / 'db' / 'track.db'}"
    app = create_app(engine, ServeSettings(track_database_url=url, web=False))
    with TestClient(app) as client:
        tracker_key = None
        from dermsight.track.service import Tracker

        t = Tracker(url, tmp_path / "db" / "images", migrate=False, reconcile=False)
        tracker_key = t.create_key("engine")
        h = {"X-API-Key": tracker_key}
        subj = client.post("/v1/track/subjects", json={}, headers=h).json()["id"]
        ser = client.post(f"/v1/track/subjects/{subj}/series", json={"name": "a"},
                          headers=h).json()["id"]
        for i, day in enumerate(["2026-01-01", "2026-01-08", "2026-01-20"]):
            r = client.post(f"/v1/track/series/{ser}/photos", headers=h,
                            data={"taken_at": day},
                            files={"file": ("p.jpg", photo_bytes(200 + i), "image/jpeg")})
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["has_embedding"]
            probs = body["prediction"]["probabilities"]
            assert abs(sum(probs.values()) - 1) < 1e-3 and set(probs) == set(engine.classes)
        tr = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
        assert tr["n_used"] >= 2
        assert tr["trend"]["method"] == "trend_model"
        assert abs(sum(tr["trend"]["probabilities"].values()) - 1) < 1e-4
        assert client.get(f"/track/series/{ser}").status_code == 200
        t.close()

    # a trend model trained on another classifier's embeddings is not applied to these photos
    other = Tracker(url, tmp_path / "db" / "images", migrate=False, reconcile=False,
                    trend_dir=_trend_model(tmp_path, emb_dim, "0" * 64, name="other"))
    try:
        tr = other.trend(other.authenticate(tracker_key), ser)
        assert tr["trend"]["method"] == "severity_baseline"
        assert "another classifier" in tr["trend"]["note"]
    finally:
        other.close()
