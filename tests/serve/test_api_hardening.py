"""Hostile and careless clients: body limits per route (enforced while streaming, the API key
checked before the body), deep metadata JSON, the pixel budget, security headers on every page,
offline API docs, CORS methods, and tracking uploads under the serving app's limits."""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from servehelpers import CountingEngine, live_server, stream_until_answered

from dermsight.serve.api import ServeSettings, create_app


def jpeg(h: int = 96, w: int = 96, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = np.full((h, w, 3), (205, 160, 130), np.float32)
    rgb[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = (120, 70, 55)
    rgb += rng.normal(0, 6, rgb.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_model):
    from dermsight.serve.engine import Engine

    return Engine.load(tiny_model)


def _tracking_app(engine, folder, **settings):
    """The serving app with tracking on a SQLite file in ``folder``, and an API key."""
    from dermsight.track.service import Tracker

    url = f"sqlite:///{folder / 'track.db'}"
    tracker = Tracker(url, folder / "images")
    key = tracker.create_key("test")
    tracker.close()
    settings.setdefault("web", False)
    return create_app(engine, ServeSettings(track_database_url=url, **settings)), key


def _series(client, key) -> str:
    h = {"X-API-Key": key}
    subject = client.post("/v1/track/subjects", json={"label": "a"}, headers=h)
    assert subject.status_code == 201, subject.text
    series = client.post(f"/v1/track/subjects/{subject.json()['id']}/series",
                         json={"name": "arm"}, headers=h)
    assert series.status_code == 201, series.text
    return series.json()["id"]


def _upload(client, key, series, data, name="p.jpg"):
    return client.post(f"/v1/track/series/{series}/photos", headers={"X-API-Key": key},
                       files={"file": (name, data, "image/jpeg")})


# ---- body limits and authentication before the body ---------------------------------------

def test_a_json_route_takes_a_body_of_max_json_kb(engine, tmp_path):
    app, key = _tracking_app(engine, tmp_path, max_json_kb=8)
    with TestClient(app) as c:
        body = json.dumps({"label": "x" * 9000})
        r = c.post("/v1/track/subjects", content=body,
                   headers={"X-API-Key": key, "Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert r.json()["error"]["code"] == "payload_too_large"
        assert "8 KiB" in r.json()["error"]["message"]
        # the same body without a key is refused on its declared length, without a key lookup
        r = c.post("/v1/track/subjects", content=body,
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413
        assert c.post("/v1/track/subjects", json={"label": "ok"},
                      headers={"X-API-Key": key}).status_code == 201


def test_a_60mb_body_without_a_key_is_cut_off_and_healthz_stays_quick(engine, tmp_path):
    """Over a real socket, chunked (no Content-Length to refuse it on): the server answers
    long before 60 MB are sent, and /healthz answers meanwhile."""
    app, _ = _tracking_app(engine, tmp_path)
    health_s = []
    with live_server(app) as url:
        port = int(url.rsplit(":", 1)[1])

        def probe_health():
            for _ in range(5):
                t0 = time.perf_counter()
                assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
                health_s.append(time.perf_counter() - t0)
                time.sleep(0.05)

        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
            sock.sendall(b"POST /v1/track/subjects HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
            prober = threading.Thread(target=probe_health)
            prober.start()
            sent, reply = stream_until_answered(sock, b" " * (64 * 1024), 60 * 2**20)
            prober.join(30)
    status = reply.split(b" ", 2)[1] if reply.startswith(b"HTTP/1.1") else reply[:100]
    assert status in (b"401", b"413"), reply[:300]
    assert sent < 8 * 2**20, sent  # cut off after a few socket buffers, not 60 MB
    assert len(health_s) == 5 and max(health_s) < 1.0, health_s


def _asgi_call(app, method: str, path: str, headers: dict[str, str], body: bytes):
    """Call ``app`` directly; returns (status, response body, body chunks the app pulled)."""
    pulled, sent = [], []

    async def receive():
        pulled.append(len(body))
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}

    async def main():
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(main())
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], content, pulled


def test_the_api_key_is_checked_before_any_body_is_read(engine, tmp_path):
    app, key = _tracking_app(engine, tmp_path)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode() + jpeg() + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}",
               "content-length": str(len(body))}
    status, content, pulled = _asgi_call(app, "POST", "/v1/track/series/abc/photos", headers,
                                         body)
    assert status == 401, content
    assert json.loads(content)["error"]["code"] == "missing_api_key"
    assert pulled == []  # not one byte of the body was read
    status, content, pulled = _asgi_call(app, "POST", "/v1/track/subjects",
                                         {"content-type": "application/json",
                                          "x-api-key": key + "x"}, b'{"label": "a"}')
    assert status == 401 and pulled == []


# ---- metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("metadata", ["[" * 100_000 + "]" * 100_000,
                                      "[" * 3000 + "]" * 3000,
                                      '{"age": ' + "[" * 50 + "]" * 50 + "}"])
def test_deeply_nested_metadata_is_422_naming_the_field(engine, metadata):
    with TestClient(create_app(engine, ServeSettings(web=False))) as c:
        r = c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")},
                   data={"metadata": metadata})
        assert r.status_code == 422, r.text[:300]
        assert r.json()["error"] == {"code": "invalid_metadata", "field": "metadata",
                                     "message": r.json()["error"]["message"]}
        assert re.search(r"nested|bytes", r.json()["error"]["message"])
        r = c.post("/v1/predict/batch", files=[("files", ("a.jpg", jpeg(), "image/jpeg"))],
                   data={"metadata": metadata})
        assert r.status_code == 422 and r.json()["error"]["field"] == "metadata"
        ok = c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        assert ok.status_code == 200


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_an_age(engine, value):
    assert "age" in (engine.metadata_schema.get("numeric") or {})
    with TestClient(create_app(engine, ServeSettings(web=False))) as c:
        r = c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")},
                   data={"metadata": json.dumps({"age": value})})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["field"] == "age"
        assert "number" in r.json()["error"]["message"]
        r = c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")},
                   data={"metadata": json.dumps({"age": 45})})
        assert r.status_code == 200


# ---- the pixel budget -----------------------------------------------------------------------

def _fill_budget(app, leave: int = 0) -> None:
    budget = app.state.dermsight.budget
    budget.used = budget.total - leave


def test_beyond_the_pixel_budget_predictions_get_503_with_retry_after(engine):
    app = create_app(engine, ServeSettings(web=False, max_pixels=100_000, pixel_budget=100_000))
    with TestClient(app) as c:
        _fill_budget(app, leave=96 * 96 - 1)
        r = c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")})
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "busy" and r.headers["retry-after"] == "2"
        r = c.post("/v1/predict/batch", files=[("files", ("a.jpg", jpeg(), "image/jpeg"))])
        assert r.status_code == 503 and r.headers["retry-after"] == "2"
        _fill_budget(app, leave=96 * 96)  # exactly enough
        assert c.post("/v1/predict", files={"file": ("a.jpg", jpeg(), "image/jpeg")}
                      ).status_code == 200
        assert app.state.dermsight.budget.used == app.state.dermsight.budget.total - 96 * 96


def test_a_batch_decodes_a_run_of_files_at_a_time(engine):
    """Files of 0.3 Mpx with max_pixels 0.5 Mpx: one file per run, so a batch of four holds
    the pixels of one file and the engine sees one image per call; small files share a run."""
    counting = CountingEngine(engine)
    app = create_app(counting, ServeSettings(web=False, max_pixels=500_000,
                                             pixel_budget=500_000))
    big = [("files", (f"{i}.jpg", jpeg(480, 640, seed=i), "image/jpeg")) for i in range(4)]
    small = [("files", (f"{i}.jpg", jpeg(seed=i), "image/jpeg")) for i in range(4)]
    with TestClient(app) as c:
        r = c.post("/v1/predict/batch", files=big)
        assert r.status_code == 200, r.text
        assert [x["prediction"] is not None for x in r.json()["results"]] == [True] * 4
        assert counting.batch_sizes == [1, 1, 1, 1]
        counting.batch_sizes.clear()
        assert c.post("/v1/predict/batch", files=small).status_code == 200
        assert counting.batch_sizes == [4]
        # the big batch needs the pixels of one file of the budget, no more
        _fill_budget(app, leave=480 * 640)
        assert c.post("/v1/predict/batch", files=big).status_code == 200
        _fill_budget(app, leave=480 * 640 - 1)
        assert c.post("/v1/predict/batch", files=big).status_code == 503


def test_tracking_uploads_hold_the_pixel_budget(engine, tmp_path):
    app, key = _tracking_app(engine, tmp_path)
    with TestClient(app) as c:
        series = _series(c, key)
        _fill_budget(app, leave=96 * 96 - 1)
        r = _upload(c, key, series, jpeg())
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "busy" and "retry-after" in r.headers
        _fill_budget(app, leave=96 * 96)
        assert _upload(c, key, series, jpeg()).status_code == 201


def test_tracking_uploads_respect_the_concurrency_limit(engine, tmp_path):
    counting = CountingEngine(engine, delay=0.3)
    app, key = _tracking_app(counting, tmp_path, max_concurrency=1)

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            h = {"X-API-Key": key}
            subject = (await c.post("/v1/track/subjects", json={}, headers=h)).json()["id"]
            series = (await c.post(f"/v1/track/subjects/{subject}/series", json={},
                                   headers=h)).json()["id"]
            return await asyncio.gather(*[
                c.post(f"/v1/track/series/{series}/photos", headers=h,
                       files={"file": (f"{i}.jpg", jpeg(seed=i), "image/jpeg")})
                for i in range(3)])

    async def main():
        async with app.router.lifespan_context(app):
            return await go()

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [201] * 3, [r.text for r in responses]
    assert counting.peak == 1


# ---- tracking uploads under the serving limits ----------------------------------------------

def test_tracking_uploads_honour_max_upload_bytes(engine, tmp_path):
    photo = jpeg(128, 128)
    big = photo + b"\0" * (26 * 2**20)  # a valid JPEG (trailing bytes are ignored), 26 MB
    app, key = _tracking_app(engine, tmp_path, max_upload_bytes=30 * 2**20)
    with TestClient(app) as c:
        series = _series(c, key)
        assert _upload(c, key, series, big).status_code == 201  # no own 25 MB limit
    small_app, key = _tracking_app(engine, tmp_path / "small", max_upload_bytes=len(photo) - 1)
    with TestClient(small_app) as c:
        series = _series(c, key)
        r = _upload(c, key, series, photo, name="visit.jpg")
        assert r.status_code == 413, r.text
        assert r.json()["error"]["field"] == "file" and "visit.jpg" in r.json()["error"]["message"]


# ---- headers, docs, CORS --------------------------------------------------------------------

SECURITY = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
            "x-frame-options": "DENY"}


def test_every_page_asset_and_docs_page_has_the_security_headers(engine, tmp_path):
    app, _ = _tracking_app(engine, tmp_path, web=True)
    with TestClient(app) as c:
        for path in ("/", "/static/app.js", "/static/app.css", "/docs", "/redoc",
                     "/docs/assets/swagger-ui-bundle.js", "/track/series/abc",
                     "/track/static/timeline.js", "/track/static/timeline.css",
                     "/openapi.json", "/v1/model", "/healthz", "/nope"):
            r = c.get(path)
            assert r.status_code == (404 if path == "/nope" else 200), path
            for name, value in SECURITY.items():
                assert r.headers.get(name) == value, (path, name)
            csp = r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
            assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], path
        r = c.post("/v1/predict", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415 and r.headers["x-frame-options"] == "DENY"


def test_api_docs_are_served_from_local_assets(engine):
    with TestClient(create_app(engine, ServeSettings(web=False))) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page).text
            assert "http://" not in html and "https://" not in html and "//cdn" not in html
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), page  # no inline JS
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets, page
            for url in assets:
                r = c.get(url)
                assert r.status_code == 200 and len(r.content) > 100, url
        init = c.get("/docs/assets/swagger-init.js").text
        assert "SwaggerUIBundle(" in init and "/openapi.json" in c.get("/docs").text
        assert c.get("/docs/assets/../settings.py").status_code == 404


def test_cors_allows_the_methods_the_api_uses(engine, tmp_path):
    app, _ = _tracking_app(engine, tmp_path, cors_origins=["https://example.org"])
    with TestClient(app) as c:
        for method in ("GET", "POST", "DELETE"):
            r = c.options("/v1/track/subjects/abc", headers={
                "Origin": "https://example.org", "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "x-api-key"})
            assert r.status_code == 200, (method, r.text)
            assert method in r.headers["access-control-allow-methods"]


def test_serve_takes_a_pixel_budget_of_at_least_the_largest_image(tiny_model):
    from typer.testing import CliRunner

    from dermsight.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "--model", str(tiny_model),
                                      "--pixel-budget-mp", "0.5"])
    assert result.exit_code == 2
    assert "pixel_budget" in result.output and "at least max_pixels" in result.output
