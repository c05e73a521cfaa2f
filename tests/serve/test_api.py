"""REST API: predictions, model info, probes, OpenAPI, limits and every kind of bad input."""

from __future__ import annotations

import base64
import io
import json
import logging
import socket

import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from PIL import Image
from servehelpers import live_server, stream_until_answered

from dermsight import DISCLAIMER
from dermsight.serve.api import ServeSettings, create_app

MAX_UPLOAD = 200_000


def lesion_rgb(h: int = 96, w: int = 96, seed: int = 0) -> np.ndarray:
    """A skin-coloured photo with a darker lesion in the middle (synthetic, no real data)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float32)
    img[...] = (205, 160, 130)
    r = ((yy - h / 2) ** 2 / (h / 5) ** 2 + (xx - w / 2) ** 2 / (w / 4) ** 2)
    img[r < 1] = (120, 70, 55)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(rgb: np.ndarray, fmt: str = "JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg(**kw) -> bytes:
    return encode(lesion_rgb(**kw))


@pytest.fixture(scope="module")
def engine(tiny_model):
    from dermsight.serve.engine import Engine

    return Engine.load(tiny_model)


@pytest.fixture(scope="module")
def settings() -> ServeSettings:
    return ServeSettings(max_upload_bytes=MAX_UPLOAD, max_pixels=2_000_000, max_batch_size=4)


@pytest.fixture(scope="module")
def client(engine, settings):
    with TestClient(create_app(engine, settings)) as c:
        yield c


def post(client, data: bytes, *, ctype: str = "image/jpeg", name: str = "photo.jpg", **form):
    return client.post("/v1/predict", files={"file": (name, data, ctype)},
                       data={k: str(v) for k, v in form.items()})


def metadata_example(engine) -> dict:
    """A valid metadata dict built from the model's schema."""
    schema = engine.metadata_schema or {}
    out = {}
    for name, bounds in (schema.get("numeric") or {}).items():
        lo, hi = bounds.get("min"), bounds.get("max")
        out[name] = (lo + hi) / 2 if lo is not None and hi is not None else 40
    for name, values in (schema.get("categorical") or {}).items():
        if values:
            out[name] = values[0]
    return out


# ---- valid requests ------------------------------------------------------------------------

def test_predict_returns_a_full_prediction_with_the_disclaimer(client, engine):
    res = post(client, jpeg())
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["disclaimer"] == DISCLAIMER
    labels = [s["label"] for s in body["top_k"]]
    probs = [s["probability"] for s in body["top_k"]]
    assert len(labels) == 3 and probs == sorted(probs, reverse=True)
    assert set(body["probabilities"]) == set(engine.classes)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert labels[0] == max(body["probabilities"], key=body["probabilities"].get)
    assert body["conformal_set"] and set(body["conformal_set"]) <= set(engine.classes)
    assert body["conformal_text"]
    assert isinstance(body["lighting"]["ok"], bool)
    assert isinstance(body["lighting"]["tips"], list)
    assert {"ita", "category", "bucket", "monk"} <= set(body["skin_tone"])
    assert body["image"] == {"width": 96, "height": 96}
    assert body["cam_png_base64"] is None


def test_top_k_and_metadata_change_the_answer_shape(client, engine):
    n = len(engine.classes)
    meta = metadata_example(engine)
    res = post(client, jpeg(), top_k=n, metadata=json.dumps(meta))
    assert res.status_code == 200, res.text
    assert len(res.json()["top_k"]) == n
    if meta:  # the same fields as plain form fields
        res = post(client, jpeg(), top_k=1, **meta)
        assert res.status_code == 200, res.text
        assert len(res.json()["top_k"]) == 1


def test_cam_returns_a_png_overlay(client):
    res = post(client, encode(lesion_rgb(80, 120)), cam="true")
    assert res.status_code == 200, res.text
    png = base64.b64decode(res.json()["cam_png_base64"])
    overlay = Image.open(io.BytesIO(png))
    assert overlay.format == "PNG"
    assert overlay.size[0] / overlay.size[1] == pytest.approx(120 / 80, rel=0.05)


def test_batch_keeps_order_and_isolates_a_bad_file(client):
    files = [("files", ("a.jpg", jpeg(seed=1), "image/jpeg")),
             ("files", ("b.jpg", b"not an image at all", "image/jpeg")),
             ("files", ("c.png", encode(lesion_rgb(seed=2), "PNG"), "image/png"))]
    res = client.post("/v1/predict/batch", files=files, data={"top_k": "2"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["disclaimer"] == DISCLAIMER
    results = body["results"]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["prediction"]["disclaimer"] == DISCLAIMER
    assert len(results[2]["prediction"]["top_k"]) == 2
    assert results[1]["prediction"] is None
    assert results[1]["error"]["code"] == "invalid_image"
    assert results[1]["error"]["field"] == "files[1]"


def test_batch_is_the_same_as_single_predictions(client):
    images = [jpeg(seed=3), jpeg(seed=4)]
    files = [("files", (f"{i}.jpg", b, "image/jpeg")) for i, b in enumerate(images)]
    res = client.post("/v1/predict/batch", files=files)
    batch = [r["prediction"]["probabilities"] for r in res.json()["results"]]
    for img, probs in zip(images, batch):
        single = post(client, img).json()["probabilities"]
        for k, v in single.items():
            assert probs[k] == pytest.approx(v, abs=1e-5)


def test_model_info(client, engine, settings):
    res = client.get("/v1/model")
    assert res.status_code == 200
    body = res.json()
    assert body["classes"] == list(engine.classes)
    assert set(body["display_names"]) == set(engine.classes)
    assert body["metadata_schema"] == json.loads(json.dumps(engine.metadata_schema))
    assert body["limits"]["max_upload_bytes"] == settings.max_upload_bytes
    assert body["disclaimer"] == DISCLAIMER


def test_probes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_readyz_is_503_until_a_model_is_loaded():
    # No engine and a lifespan that is not run: the state of a server still loading.
    app = create_app(None, ServeSettings(web=False))
    c = TestClient(app)  # not entered: startup (model loading) does not run
    assert c.get("/readyz").status_code == 503
    res = post(c, jpeg())
    assert res.status_code == 503 and res.json()["error"]["code"] == "not_ready"
    assert c.get("/healthz").status_code == 200


def test_a_model_that_fails_to_load_stops_the_startup(tmp_path):
    app = create_app(None, ServeSettings(model_dir=tmp_path / "missing", web=False))
    with pytest.raises(Exception, match="missing"), TestClient(app):
        pass


def test_openapi_documents_the_routes_and_models(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/predict/batch", "/v1/model", "/healthz", "/readyz"} <= set(
        spec["paths"])
    schemas = spec["components"]["schemas"]
    assert "disclaimer" in schemas["Prediction"]["properties"]
    assert "ErrorBody" in schemas
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in body
    assert client.get("/docs").status_code == 200


def test_extra_routers_are_mounted(engine):
    router = APIRouter(prefix="/v1/track")

    @router.get("/ping")
    def ping() -> dict:
        return {"pong": True}

    with TestClient(create_app(engine, ServeSettings(web=False), extra_routers=[router])) as c:
        assert c.get("/v1/track/ping").json() == {"pong": True}
        assert c.get("/").status_code == 404


def test_cors_is_off_by_default_and_configurable(engine, client):
    res = client.get("/v1/model", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in res.headers
    app = create_app(engine, ServeSettings(cors_origins=["https://example.org"]))
    with TestClient(app) as c:
        res = c.get("/v1/model", headers={"Origin": "https://example.org"})
        assert res.headers["access-control-allow-origin"] == "https://example.org"


def test_settings_round_trip_through_the_environment(tmp_path):
    s = ServeSettings(model_dir=tmp_path, max_concurrency=3, cors_origins=["http://a"])
    assert ServeSettings.from_env({"DERMSIGHT_SERVE_SETTINGS": s.to_env()}) == s
    assert ServeSettings.from_env({}) == ServeSettings()
    from dermsight.errors import ConfigError

    with pytest.raises(ConfigError, match="DERMSIGHT_SERVE_SETTINGS"):
        ServeSettings.from_env({"DERMSIGHT_SERVE_SETTINGS": '{"max_concurrency": 0}'})


# ---- bad input and abuse -------------------------------------------------------------------

def _bomb_png() -> bytes:
    """A tiny file that decodes to 3000 × 3000 px (9 Mpx, over the 2 Mpx test limit)."""
    return encode(np.zeros((3000, 3000, 3), np.uint8), "PNG", optimize=True)


def _chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b"\0" * size
        sent += size


def _bad_requests(engine):
    meta_schema = engine.metadata_schema or {}
    good = jpeg()
    cases = [
        ("not an image", lambda c: post(c, b"hello, I am text, not a photo"),
         422, "invalid_image", "file"),
        ("truncated", lambda c: post(c, good[: len(good) // 2]), 422, "invalid_image", "file"),
        ("0-byte file", lambda c: post(c, b""), 422, "empty_file", "file"),
        ("wrong content type", lambda c: post(c, good, ctype="text/plain", name="x.txt"),
         415, "unsupported_media_type", "file"),
        ("JSON body", lambda c: c.post("/v1/predict", json={"file": "x"}),
         415, "unsupported_media_type", None),
        ("missing file", lambda c: c.post("/v1/predict", data={"top_k": "3"},
                                          files={"other": ("a", b"b", "image/jpeg")}),
         422, "validation_error", "file"),
        ("over the size limit", lambda c: post(c, b"\xff\xd8" + b"\0" * (MAX_UPLOAD + 10)),
         413, "payload_too_large", "file"),
        ("declared body over the limit", lambda c: c.post(
            "/v1/predict", content=b"x" * 10,
            headers={"Content-Type": "multipart/form-data; boundary=x",
                     "Content-Length": str(10**9)}),
         413, "payload_too_large", "file"),
        ("streamed body over the limit", lambda c: c.post(
            "/v1/predict", content=_chunks(MAX_UPLOAD * 8),
            headers={"Content-Type": "multipart/form-data; boundary=x"}),
         413, "payload_too_large", "file"),
        ("decompression bomb", lambda c: post(c, _bomb_png(), ctype="image/png"),
         413, "image_too_large", "file"),
        ("unknown metadata field", lambda c: post(c, good, favourite_colour="blue"),
         422, "invalid_metadata", "favourite_colour"),
        ("metadata not JSON", lambda c: post(c, good, metadata="{age: 3"),
         422, "invalid_metadata", "metadata"),
        ("top_k zero", lambda c: post(c, good, top_k=0), 422, "out_of_range", "top_k"),
        ("top_k too large", lambda c: post(c, good, top_k=99), 422, "out_of_range", "top_k"),
        ("top_k not a number", lambda c: post(c, good, top_k="three"),
         422, "validation_error", "top_k"),
        ("too many files", lambda c: c.post("/v1/predict/batch", files=[
            ("files", (f"{i}.jpg", good, "image/jpeg")) for i in range(5)]),
         413, "too_many_files", "files"),
    ]
    for name in meta_schema.get("categorical") or {}:
        cases.append((f"unknown value of {name}", lambda c, n=name: post(c, good, **{n: "zzz"}),
                      422, "invalid_metadata", name))
        break
    for name, bounds in (meta_schema.get("numeric") or {}).items():
        hi = bounds.get("max")
        if hi is not None:
            cases.append((f"{name} out of range", lambda c, n=name, h=hi: post(
                c, good, **{n: h + 1000}), 422, "invalid_metadata", name))
        cases.append((f"{name} not a number", lambda c, n=name: post(c, good, **{n: "old"}),
                      422, "invalid_metadata", name))
        break
    return cases


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, engine):
    for name, send, status, code, field in _bad_requests(engine):
        res = send(client)
        assert res.status_code == status, (name, res.status_code, res.text)
        error = res.json()["error"]
        assert error["code"] == code, (name, error)
        assert error["field"] == field, (name, error)
        assert error["message"], name
        ok = post(client, jpeg())  # the server still answers a valid request
        assert ok.status_code == 200, (name, ok.text)


def test_a_1gb_chunked_upload_is_cut_off_at_the_limit(engine):
    """Over a real socket: the server answers 413 and closes long before 1 GB is sent."""
    app = create_app(engine, ServeSettings(max_upload_bytes=MAX_UPLOAD, max_batch_size=1,
                                           web=False))
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            head = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
                    b"Content-Type: image/jpeg\r\n\r\n")
            sock.sendall(f"{len(head):x}\r\n".encode() + head + b"\r\n")
            sent, reply = stream_until_answered(sock, b"\0" * (64 * 1024), 2**30)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert b"payload_too_large" in reply
    assert sent < 32 * 2**20  # stopped after a few MB (socket buffers), not 1 GB


def _gps_jpeg(orientation: int) -> bytes:
    """A 64 × 32 JPEG with an Orientation tag and a GPS position (and a camera serial)."""
    img = Image.fromarray(lesion_rgb(32, 64))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCamCo"
    gps = {1: "N", 2: (51.0, 30.0, 26.123), 3: "W", 4: (0.0, 7.0, 39.456)}
    exif[0x8825] = gps
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_exif_orientation_is_applied_and_gps_never_echoed_or_logged(client, caplog):
    data = _gps_jpeg(orientation=6)  # 90° rotation: 64 × 32 stored, 32 × 64 shown
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the GPS really is there
    with caplog.at_level(logging.DEBUG):
        caplog.clear()
        res = post(client, data, cam="true")
        batch = client.post("/v1/predict/batch", files={"files": ("g.jpg", data, "image/jpeg")})
    assert res.status_code == 200, res.text
    assert res.json()["image"] == {"width": 32, "height": 64}
    png = Image.open(io.BytesIO(base64.b64decode(res.json()["cam_png_base64"])))
    assert not png.getexif()
    for text in (res.text, batch.text, caplog.text):
        for secret in ("26.123", "39.456", "SecretCamCo", "GPS", "51.0", "Exif"):
            assert secret not in text
