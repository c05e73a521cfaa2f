"""Inference runs in a bounded thread pool: never on the event loop, never over the limit."""

from __future__ import annotations

import asyncio
import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image
from servehelpers import CountingEngine

from dermsight.serve.api import ServeSettings, create_app


def jpeg() -> bytes:
    rgb = np.full((64, 64, 3), (200, 150, 120), np.uint8)
    rgb[20:44, 24:40] = (110, 60, 50)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def engine(tiny_model):
    from dermsight.serve.engine import Engine

    return Engine.load(tiny_model)


def _run(app, coro_fn):
    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await coro_fn(c)

    return asyncio.run(main())


def _predict(c: httpx.AsyncClient, data: bytes):
    return c.post("/v1/predict", files={"file": ("a.jpg", data, "image/jpeg")})


def test_concurrent_inferences_are_bounded(engine):
    slow = CountingEngine(engine, delay=0.15)
    app = create_app(slow, ServeSettings(max_concurrency=2, web=False))
    data = jpeg()

    async def go(c):
        return await asyncio.gather(*[_predict(c, data) for _ in range(6)])

    responses = _run(app, go)
    assert [r.status_code for r in responses] == [200] * 6
    assert slow.peak == 2


def test_the_event_loop_stays_free_while_predicting(engine):
    slow = CountingEngine(engine, delay=0.8)
    app = create_app(slow, ServeSettings(max_concurrency=1, web=False))

    async def go(c):
        task = asyncio.create_task(_predict(c, jpeg()))
        while slow.running == 0:
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        health = await c.get("/healthz")
        waited = time.perf_counter() - t0
        still_running = slow.running == 1
        return health, waited, still_running, await task

    health, waited, still_running, pred = _run(app, go)
    assert health.status_code == 200 and still_running
    assert waited < 0.5
    assert pred.status_code == 200


def test_too_many_waiting_requests_get_503_busy(engine):
    slow = CountingEngine(engine, delay=0.3)
    app = create_app(slow, ServeSettings(max_concurrency=1, max_pending=1, web=False))
    data = jpeg()

    async def go(c):
        return await asyncio.gather(*[_predict(c, data) for _ in range(5)])

    responses = _run(app, go)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 503 in codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["error"]["code"] == "busy"
    assert busy.headers["retry-after"] == "1"
    assert slow.peak == 1
