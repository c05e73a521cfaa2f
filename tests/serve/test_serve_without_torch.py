"""`make quickstart` installs only `.[serve]`: the whole serving app (CLI, REST API, web app,
tracking, trend) must work with PyTorch and the other training packages absent."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

TRAINING_ONLY = ("torch", "torchvision", "timm", "lightning", "albumentations", "pytorch_grad_cam",
                 "onnx", "onnxscript", "safetensors")

CODE = """
import importlib.abc, io, sys
TRAINING_ONLY = {training_only!r}
tried = []

class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in TRAINING_ONLY:
            tried.append(name)
            raise ImportError(f"{{name}} is not installed (serve-only set-up)")
        return None

sys.meta_path.insert(0, Absent())

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

import dermsight.cli  # the `dermsight serve` entry point
from dermsight.serve.api import ServeSettings, create_app
from dermsight.serve.engine import Engine
from dermsight.track.service import Tracker


def png(seed):
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal((205, 160, 130), 8, (96, 96, 3)), 0, 255).astype(np.uint8)
    img[30:66, 30:66] = (120, 70, 55)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


url = "sqlite:///{db}"
app = create_app(Engine.load(threads=1), ServeSettings(track_database_url=url))
with TestClient(app) as c:
    assert c.get("/").status_code == 200
    r = c.post("/v1/predict", files={{"file": ("a.png", png(0), "image/png")}},
               data={{"cam": "true"}})
    assert r.status_code == 200, r.text
    key = Tracker(url, "{images}", migrate=False, reconcile=False).create_key("t")
    h = {{"X-API-Key": key}}
    subj = c.post("/v1/track/subjects", json={{}}, headers=h).json()["id"]
    ser = c.post(f"/v1/track/subjects/{{subj}}/series", json={{}}, headers=h).json()["id"]
    for i, day in enumerate(("2026-01-01", "2026-02-01")):
        r = c.post(f"/v1/track/series/{{ser}}/photos", headers=h, data={{"taken_at": day}},
                   files={{"file": ("p.png", png(i + 1), "image/png")}})
        assert r.status_code == 201, r.text
    assert c.get(f"/v1/track/series/{{ser}}/trend", headers=h).status_code == 200
assert not tried, f"serving tried to import {{sorted(set(tried))}}"
print("ok")
"""


def test_the_serving_app_works_without_the_training_packages(tmp_path, monkeypatch):
    from dermsight.serve.engine import ENV_MODEL_DIR, default_model_dir

    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no default model folder (models/ham10000) in this checkout")
    code = CODE.format(training_only=TRAINING_ONLY, db=tmp_path / "track.db",
                       images=tmp_path / "images")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("ok")
