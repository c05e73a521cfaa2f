"""The photo-type router and the served models: folder discovery, routing, refusal, output."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from dermsight.errors import ConfigError, DataError
from dermsight.serve.files import format_records
from dermsight.serve.served import ServedModels

REPO = Path(__file__).resolve().parents[2]
ROUTER = REPO / "models" / "router"
needs_router = pytest.mark.skipif(not (ROUTER / "router.json").is_file(),
                                  reason="models/router is not committed in this checkout")


def _model(src: Path, dest: Path, photo_type: str | None) -> Path:
    shutil.copytree(src, dest)
    info = json.loads((dest / "model.json").read_text())
    if photo_type is None:
        info.pop("photo_type", None)
    else:
        info["photo_type"] = photo_type
    (dest / "model.json").write_text(json.dumps(info))
    return dest


@pytest.fixture
def root(tmp_path, tiny_model) -> Path:
    """A models folder: two tiny models (dermoscopy, clinical), the committed router and the
    committed trend model."""
    out = tmp_path / "models"
    out.mkdir()
    _model(tiny_model, out / "derm", "dermoscopy")
    _model(tiny_model, out / "clin", "clinical")
    if (ROUTER / "router.json").is_file():
        shutil.copytree(ROUTER, out / "router")
    shutil.copytree(REPO / "models" / "trend", out / "trend")
    (out / ".staging-left-by-a-killed-run").mkdir()
    return out


def _rgb(seed: int = 0, size: int = 96) -> np.ndarray:
    return np.random.default_rng(seed).integers(60, 200, (size, size, 3), dtype=np.uint8)


@needs_router
def test_loads_every_folder_and_routes_forced_kinds_to_their_model(root):
    served = ServedModels.load(root)
    assert set(served.engines) == {"dermoscopy", "clinical"} and served.routed
    preds = served.predict([_rgb(0), _rgb(1)], photo_types=["clinical", "dermoscopy"])
    assert [p.model for p in preds] == ["clin", "derm"]
    assert [p.photo_type for p in preds] == ["clinical", "dermoscopy"]
    assert all(p.route["forced"] and not p.refused and p.probabilities for p in preds)
    assert preds[0].model_id == served.engines["clinical"].model_id
    description = served.describe()
    assert description["router"]["photo_types"] == ["dermoscopy", "clinical", "not_skin"]
    assert description["models"]["clinical"]["folder"] == "clin"


@needs_router
def test_a_cat_and_a_rocket_get_no_diagnosis(root):
    served = ServedModels.load(root)
    photos = [skdata.chelsea(), skdata.rocket(), skdata.coffee()]
    for pred in served.predict(photos):
        assert pred.refused and pred.photo_type == "not_skin" and pred.model is None
        assert pred.probabilities == {} and pred.top_k == [] and pred.conformal_set == []
        assert "doesn't look like a close-up photo of skin" in pred.message
        assert pred.route["probabilities"]["not_skin"] >= served.router.refuse_threshold
    # the user knows better: forcing the kind gets an answer from that kind's model
    forced = served.predict([skdata.chelsea()], photo_types="clinical")[0]
    assert not forced.refused and forced.model == "clin"


def test_single_model_folder_is_served_alone(tiny_model):
    served = ServedModels.load(tiny_model)
    assert not served.routed and list(served.engines) == ["any"]
    pred = served.predict([_rgb()])[0]
    assert pred.model == tiny_model.name and pred.probabilities and not pred.refused
    assert not pred.route["forced"]


def test_a_folder_that_is_not_a_model_stops_loading_and_is_named(root):
    (root / "notes").mkdir()
    with pytest.raises(ConfigError, match=r"notes is not a model folder"):
        ServedModels.load(root)


def test_a_model_without_its_photo_type_is_named(root):
    _model(root / "derm", root / "old", None)
    shutil.rmtree(root / "derm")
    with pytest.raises(ConfigError, match=r"old/model.json: 'photo_type' must be one of"):
        ServedModels.load(root)


def test_a_corrupt_model_json_is_named(root):
    (root / "clin" / "model.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"clin/model.json is not valid JSON"):
        ServedModels.load(root)


@pytest.mark.parametrize(("change", "message"), [
    ({"format_version": 2}, r"field 'format_version' is 2; this dermsight reads version 1"),
    ({"format_version": None}, r"field 'format_version' is missing"),
    ({"conformal": {"method": "raps", "threshold": 0.5}}, r"field 'conformal.method'"),
])
def test_an_old_or_broken_model_json_names_the_file_and_field(root, change, message):
    path = root / "clin" / "model.json"
    info = {k: v for k, v in {**json.loads(path.read_text()), **change}.items()
            if v is not None}
    path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match=rf"clin/model.json: {message}.*export the model"):
        ServedModels.load(root)


def test_two_models_for_one_kind_are_an_error(root):
    _model(root / "derm", root / "derm2", "dermoscopy")
    with pytest.raises(ConfigError, match="two models answer dermoscopy photos"):
        ServedModels.load(root)


def test_several_models_need_a_router(root):
    shutil.rmtree(root / "router", ignore_errors=True)
    with pytest.raises(ConfigError, match="no photo-type router"):
        ServedModels.load(root)


def test_an_unknown_forced_kind_is_a_clear_error(tiny_model):
    served = ServedModels.load(tiny_model)
    with pytest.raises(ValueError, match="photo_type must be one of auto, dermoscopy, clinical"):
        served.predict([_rgb()], photo_types="xray")
    with pytest.raises(DataError, match="2 entries for 1 images"):
        served.predict([_rgb()], photo_types=["clinical", "clinical"])


@needs_router
def test_csv_has_kind_model_and_one_column_per_class_of_the_answering_model(root, tmp_path):
    from PIL import Image

    from dermsight.serve.files import predict_files

    served = ServedModels.load(root)
    files = []
    for name, rgb in (("cat.png", skdata.chelsea()), ("noise.png", _rgb(3))):
        files.append(tmp_path / name)
        Image.fromarray(rgb).save(files[-1])
    records = predict_files(served, files, progress=False)
    records += predict_files(served, [files[1]], progress=False, photo_type="clinical")
    rows = list(csv.DictReader(io.StringIO(format_records(records, "csv"))))
    classes = served.engines["clinical"].classes
    assert [r["refused"] for r in rows] == ["True", "True", "False"]  # noise is not skin either
    assert rows[0]["photo_type"] == "not_skin" and rows[0]["model"] == ""
    assert all(rows[0][c] == "" for c in classes) and "look like" in rows[0]["message"]
    assert rows[2]["model"] == "clin" and rows[2]["photo_type"] == "clinical"
    assert abs(sum(float(rows[2][c]) for c in classes) - 1.0) < 1e-4
    text = format_records(records, "text")
    assert "no assessment (not_skin)" in text and "[clinical → clin]" in text


@pytest.mark.shared_data
def test_shared_data_photos_route_to_their_kind():
    from dermsight.imaging import decode_image
    from dermsight.io import read_bytes
    from dermsight.serve.router import Router

    data = REPO.parent / "shared" / "data"
    if not (data / "ham10000").is_dir() or not (data / "fitzpatrick17k").is_dir():
        pytest.skip("../shared/data is not available on this machine")
    if not (ROUTER / "router.json").is_file():
        pytest.skip("models/router is not committed in this checkout")
    ham = sorted((data / "ham10000" / "images").glob("*.jpg"))[:12]
    fitz = sorted((data / "fitzpatrick17k" / "images").glob("*.jpg"))[:12]
    router = Router.load(ROUTER)
    images = [decode_image(read_bytes(str(p)), max_pixels=10**8)[0] for p in ham + fitz]
    kinds = [r.photo_type for r in router.classify(images)]
    assert kinds[:12].count("dermoscopy") >= 11 and kinds[12:].count("clinical") >= 11


@needs_router
def test_api_routes_forces_refuses_and_describes_every_model(root):
    from fastapi.testclient import TestClient
    from PIL import Image

    from dermsight.serve.api import ServeSettings, create_app

    buf = io.BytesIO()
    Image.fromarray(skdata.chelsea()).save(buf, "PNG")
    cat = ("cat.png", buf.getvalue(), "image/png")
    with TestClient(create_app(ServedModels.load(root), ServeSettings(web=False))) as client:
        refused = client.post("/v1/predict", files={"file": cat}).json()
        assert refused["refused"] and refused["photo_type"] == "not_skin"
        assert refused["model"] is None and refused["top_k"] == []
        assert refused["probabilities"] == {} and refused["conformal_set"] == []
        assert "close-up photo of skin" in refused["message"] and refused["disclaimer"]
        forced = client.post("/v1/predict", files={"file": cat},
                             data={"photo_type": "clinical"}).json()
        assert not forced["refused"] and forced["model"] == "clin"
        assert forced["route"]["forced"] and len(forced["top_k"]) == 3
        bad = client.post("/v1/predict", files={"file": cat}, data={"photo_type": "xray"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "photo_type"
        batch = client.post("/v1/predict/batch", files=[("files", cat), ("files", cat)],
                            data={"photo_type": "dermoscopy"}).json()
        assert [r["prediction"]["model"] for r in batch["results"]] == ["derm", "derm"]
        info = client.get("/v1/model").json()
        assert info["routed"] and set(info["models"]) == {"dermoscopy", "clinical"}
        assert info["models"]["clinical"]["folder"] == "clin"
        assert info["router"]["photo_types"] == ["dermoscopy", "clinical", "not_skin"]
        assert client.get("/healthz").status_code == 200  # still serving after the 422
