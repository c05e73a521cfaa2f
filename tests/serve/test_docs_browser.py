"""/docs (Swagger UI) and /redoc in a real headless browser: they render from local assets under
their CSP, and nothing is fetched from another origin."""

from __future__ import annotations

from pathlib import Path

import pytest
from servehelpers import CHROMIUM, browser_page, live_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def server_url(tiny_model):
    pytest.importorskip("playwright.sync_api")
    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.engine import Engine

    with live_server(create_app(Engine.load(tiny_model), ServeSettings(web=False))) as url:
        yield url


@pytest.mark.parametrize("path,selector,least", [("/docs", ".opblock", 5),
                                                 ("/redoc", "[data-section-id]", 5)])
def test_api_docs_render_offline_under_their_csp(server_url, path, selector, least):
    elsewhere, problems = [], []
    with browser_page() as page:
        page.on("request", lambda r: None if r.url.startswith((server_url, "data:", "blob:"))
                else elsewhere.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.goto(server_url + path)
        page.wait_for_selector(selector, timeout=30_000)
        assert page.locator(selector).count() >= least
        assert "/v1/predict" in page.content()
    # ReDoc's footer asks for its logo on cdn.redoc.ly: the CSP refuses it (nothing leaves)
    allowed = [u for u in elsewhere if not u.startswith("https://cdn.redoc.ly/")]
    assert allowed == []
    csp = [p for p in problems if "Content Security Policy" in p and "cdn.redoc.ly" not in p]
    assert csp == []
