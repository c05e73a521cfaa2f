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


class _Routed:
    """A routed engine (the ServedModels surface tracking uses) that reads photos as
    ``kind``, or as the kind the caller forces; ``not_skin`` is refused."""

    model_id = "routed"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def route(self, images, forced=None):  # marks the engine as routed
        raise NotImplementedError

    def predict(self, images, top_k=3, photo_types=None):
        from dermsight.phototype import check_photo_type
        from dermsight.serve.engine import Prediction

        kind = check_photo_type(photo_types) or self.kind
        refused = kind == "not_skin"
        return [Prediction(
            probabilities={} if refused else {"a": 1.0}, top_k=[] if refused else [("a", 1.0)],
            conformal_set=[], conformal_text="", conformal_coverage=None, lighting={},
            skin_tone={}, embedding=np.zeros(0 if refused else 4, np.float32),
            photo_type=kind, model=None if refused else f"{kind}-model", refused=refused,
            message="This doesn't look like a close-up photo of skin." if refused else None,
            model_id=None if refused else f"{kind}-id") for _ in images]


def test_tracking_refuses_non_skin_and_keeps_one_kind_per_series(tracker):
    from dermsight.errors import ApiError

    key = tracker.authenticate(tracker.create_key("k"))
    subject = tracker.create_subject(key, "")["id"]
    series = tracker.create_series(key, subject, "arm", None, "lesion")["id"]
    with pytest.raises(ApiError, match="'cat.jpg' was not stored: This doesn't look") as err:
        tracker.add_photo(key, series, photo_bytes(0), filename="cat.jpg",
                          engine=_Routed("not_skin"))
    assert err.value.status == 422 and err.value.code == "not_skin"
    assert tracker.timeline(key, series)["photos"] == []
    first = tracker.add_photo(key, series, photo_bytes(1), engine=_Routed("clinical"))
    assert first["prediction"]["photo_type"] == "clinical"
    assert first["prediction"]["model"] == "clinical-model"
    assert first["prediction"]["model_id"] == "clinical-id"
    with pytest.raises(ApiError, match="holds clinical photos and this one was read as "
                       "dermoscopy") as err:
        tracker.add_photo(key, series, photo_bytes(2), engine=_Routed("dermoscopy"))
    assert err.value.status == 409
    # the user knows better: forcing the series' kind stores it
    again = tracker.add_photo(key, series, photo_bytes(2), engine=_Routed("dermoscopy"),
                              photo_type="clinical")
    assert again["prediction"]["photo_type"] == "clinical"
    assert len(tracker.timeline(key, series)["photos"]) == 2
