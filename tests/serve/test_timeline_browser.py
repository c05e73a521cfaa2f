"""The tracking timeline page (/track/series/<id>) in a real headless browser: the key form,
photo cards from the API, the trend panel, an upload from the page, a wrong key's error."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from servehelpers import CHROMIUM, artifacts_dir, browser_page, live_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


def _photo(seed: int) -> bytes:
    """A small synthetic skin photo with a dark blob whose size grows with ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    img = np.empty((h, w, 3), np.float32)
    img[...] = (205, 160, 135)
    yy, xx = np.mgrid[0:h, 0:w]
    r = 0.15 + 0.03 * seed
    img[((yy - h / 2) / (r * h)) ** 2 + ((xx - w / 2) / (r * w)) ** 2 <= 1] = (110, 70, 55)
    img += rng.normal(0, 5, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tracking_server(tiny_model, tmp_path_factory):
    pytest.importorskip("playwright.sync_api")
    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.engine import Engine
    from dermsight.track.service import Tracker

    folder = tmp_path_factory.mktemp("timeline")
    url = f"sqlite:///{folder / 'track.db'}"
    tracker = Tracker(url, folder / "images")  # migrates; the app's own Tracker shares the file
    key = tracker.create_key("browser")
    tracker.close()
    app = create_app(Engine.load(tiny_model), ServeSettings(track_database_url=url, web=False))
    with live_server(app) as base:
        h = {"X-API-Key": key}
        subject = httpx.post(f"{base}/v1/track/subjects", json={}, headers=h).json()["id"]
        series = httpx.post(f"{base}/v1/track/subjects/{subject}/series",
                            json={"name": "left forearm"}, headers=h).json()["id"]
        for i, day in enumerate(["2026-01-01T09:00:00Z", "2026-02-01T09:00:00Z"]):
            r = httpx.post(f"{base}/v1/track/series/{series}/photos", headers=h,
                           data={"taken_at": day},
                           files={"file": (f"p{i}.jpg", _photo(i), "image/jpeg")}, timeout=60)
            assert r.status_code == 201, r.text
        yield base, key, series, folder


def test_timeline_shows_photos_trend_and_takes_an_upload(tracking_server):
    base, key, series, folder = tracking_server
    upload = folder / "third.jpg"
    upload.write_bytes(_photo(2))
    with browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{base}/track/series/{series}")
        assert page.locator("#disclaimer").is_visible()
        assert "Not medical advice" in page.locator("#disclaimer").inner_text()
        page.locator("#apikey").fill(key)
        page.get_by_role("button", name="Show").click()
        cards = page.locator("#photos .visit")
        page.locator("#photos .visit >> nth=1").wait_for(timeout=30_000)
        assert cards.count() == 2
        assert "left forearm" in page.locator("#series-title").inner_text()
        page.locator("#trend", has_text="photos used").wait_for(timeout=30_000)
        assert "2 of 2 photos used" in page.locator("#trend").inner_text()
        # the stored (EXIF-free) copies are fetched with the key and shown
        page.locator("#photos .visit img[src^='blob:'] >> nth=1").wait_for(timeout=30_000)
        assert "model:" in cards.nth(0).inner_text()

        # an upload from the page, with its own date, appears as a third card
        page.locator("#file").set_input_files(str(upload))
        page.locator("#taken").fill("2026-03-01T09:00")
        page.get_by_role("button", name="Add photo").click()
        page.locator("#photos .visit >> nth=2").wait_for(timeout=30_000)
        assert cards.count() == 3
        page.locator("#trend", has_text="of 3 photos used").wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir() / "timeline.png"), full_page=True)
        assert not errors, errors


def test_timeline_with_a_wrong_key_says_so(tracking_server):
    base, _, series, _ = tracking_server
    with browser_page() as page:
        page.goto(f"{base}/track/series/{series}")
        page.locator("#apikey").fill("not-a-key")
        page.get_by_role("button", name="Show").click()
        page.locator("#error").filter(has_text="key").wait_for(timeout=30_000)
        assert page.locator("#photos .visit").count() == 0
        assert page.locator("#disclaimer").is_visible()
