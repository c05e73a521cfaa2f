"""The web app's files as served (no browser) and the `dermsight serve` command."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dermsight.cli import app as cli
from dermsight.features.skintone import MONK_SRGB
from dermsight.serve.api import ServeSettings, create_app
from dermsight.serve.web import STATIC_DIR


@pytest.fixture(scope="module")
def client(tiny_model):
    from dermsight.serve.engine import Engine

    with TestClient(create_app(Engine.load(tiny_model), ServeSettings())) as c:
        yield c


def test_index_is_served_with_the_disclaimer_and_a_strict_csp(client):
    res = client.get("/")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/html")
    assert "Not medical advice" in res.text
    csp = res.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for asset in ("/static/app.js", "/static/app.css"):
        assert asset in res.text
        assert client.get(asset).status_code == 200


def test_the_page_loads_nothing_from_elsewhere():
    """Offline: no CDN, no external font, no absolute URL in the page's files."""
    for path in STATIC_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), path.name
        assert "@import" not in text and "fetch(\"http" not in text, path.name


def test_page_accessibility_basics():
    html = (STATIC_DIR / "index.html").read_text()
    assert '<html lang="en">' in html
    for img in re.findall(r"<img[^>]*>", html, flags=re.S):
        assert "alt=" in img, img
    for input_id in re.findall(r'<input id="([^"]+)"', html):
        assert f'for="{input_id}"' in html, input_id  # every input has a label
    assert 'capture="environment"' in html and 'accept="image/*"' in html
    assert 'aria-live="polite"' in html and 'role="alert"' in html
    assert 'name="viewport"' in html


def test_monk_colours_match_the_skin_tone_module():
    js = (STATIC_DIR / "app.js").read_text()
    table = re.search(r"MONK_HEX = \[(.*?)\];", js, flags=re.S).group(1)
    colours = re.findall(r"#([0-9a-f]{6})", table)
    assert colours == ["".join(f"{int(v):02x}" for v in rgb) for rgb in MONK_SRGB]


def test_web_can_be_switched_off(tiny_model):
    from dermsight.serve.engine import Engine

    with TestClient(create_app(Engine.load(tiny_model), ServeSettings(web=False))) as c:
        assert c.get("/").status_code == 404
        assert c.get("/healthz").status_code == 200


def test_serve_command_fails_cleanly_on_a_missing_model(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "error:" in result.output and "nope" in result.output
    assert "Traceback" not in result.output


def test_serve_command_rejects_bad_settings(tiny_model):
    result = CliRunner().invoke(cli, ["serve", "--model", str(tiny_model), "--concurrency", "0"])
    assert result.exit_code == 2
    assert "max_concurrency" in result.output
