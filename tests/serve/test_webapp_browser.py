"""The web app end to end in a real headless browser (Debian's chromium, driven by Playwright).

Skips when /usr/bin/chromium is absent. Screenshots go to ``$DERMSIGHT_TEST_ARTIFACTS``
(default: ``test-artifacts/`` at the repository root, ignored by git).

Run as a script to make the README's screenshot of the app serving a real model::

    python tests/serve/test_webapp_browser.py --out docs/webapp.png [--model MODEL_DIR]
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from servehelpers import CHROMIUM, artifacts_dir, browser_page, live_server


def photo(path: Path, *, dark: bool = False, size: int = 160) -> Path:
    """A synthetic skin photo with a lesion (no real data); ``dark=True``: badly under-exposed."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.empty((size, size, 3), np.float32)
    img[...] = (198, 150, 118)
    blob = ((yy - size / 2) ** 2 + ((xx - size / 2) * 1.3) ** 2) < (size / 5) ** 2
    img[blob] = (105, 62, 48)
    img += rng.normal(0, 5, img.shape)
    if dark:
        img *= 0.08
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def analyse(page, url: str, image: Path) -> None:
    page.goto(url)
    # locator waits, not wait_for_function: the app's CSP forbids the eval that would need
    page.locator("#model-line", has_text="classes").wait_for()
    page.get_by_label("Choose a photo").set_input_files(str(image))
    page.get_by_role("button", name="Analyse photo").click()
    page.locator("#results").wait_for(state="visible", timeout=30_000)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def server_url(tiny_model):
    pytest.importorskip("playwright.sync_api")
    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.engine import Engine

    engine = Engine.load(tiny_model)
    with live_server(create_app(engine, ServeSettings())) as url:
        yield url, engine


def test_upload_predict_gradcam_and_screenshot(server_url, tmp_path):
    url, engine = server_url
    with browser_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("requestfailed", lambda req: errors.append(f"request failed: {req.url}"))
        analyse(page, url, photo(tmp_path / "lesion.png"))

        bars = page.locator("#top-k .bar-row")
        assert bars.count() == 3
        for i in range(3):
            assert bars.nth(i).is_visible()
            assert "%" in bars.nth(i).locator(".bar-value").inner_text()
        conformal = page.locator("#conformal")
        assert conformal.is_visible()
        assert conformal.inner_text().startswith("Most likely")
        disclaimer = page.locator("#disclaimer")
        assert disclaimer.is_visible() and "Not medical advice" in disclaimer.inner_text()
        assert "Monk skin tone" in page.locator("#tone-text").inner_text()
        assert page.locator("#tone-swatch").is_visible()

        # the metadata form is generated from the model's schema
        schema = engine.metadata_schema or {}
        for name in list(schema.get("numeric") or {}) + list(schema.get("categorical") or {}):
            assert page.locator(f"#meta-{name}").count() == 1

        # Grad-CAM toggle, by keyboard: focus the checkbox and press space
        page.locator("#cam-toggle").focus()
        page.keyboard.press("Space")
        cam = page.locator("#cam-img")
        cam.wait_for(state="visible", timeout=30_000)
        assert cam.get_attribute("src").startswith("data:image/png;base64,")
        assert cam.get_attribute("alt")
        assert not page.locator("#preview-img").is_visible()
        page.screenshot(path=str(artifacts_dir() / "webapp.png"), full_page=True)
        page.locator("#cam-toggle").click()
        assert page.locator("#preview-img").is_visible() and not cam.is_visible()
        assert not errors, errors


def test_a_dark_photo_shows_the_retake_panel(server_url, tmp_path):
    url, _ = server_url
    with browser_page(width=390, height=844) as page:  # a phone-sized viewport
        analyse(page, url, photo(tmp_path / "dark.png", dark=True))
        retake = page.locator("#retake")
        assert retake.is_visible()
        assert page.locator("#retake-tips li").count() >= 1
        assert "dark" in page.locator("#retake-tips").inner_text().lower()
        assert page.locator("#disclaimer").is_visible()
        page.screenshot(path=str(artifacts_dir() / "webapp-retake-phone.png"), full_page=True)


def test_a_bad_file_shows_the_error_and_the_app_recovers(server_url, tmp_path):
    url, _ = server_url
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    with browser_page() as page:
        page.goto(url)
        page.locator("#model-line", has_text="classes").wait_for()
        page.get_by_label("Choose a photo").set_input_files(str(bad))
        page.get_by_role("button", name="Analyse photo").click()
        status = page.locator("#status")
        page.locator("#status.error").wait_for()
        assert "Could not analyse" in status.inner_text()
        page.get_by_label("Choose a photo").set_input_files(str(photo(tmp_path / "ok.png")))
        page.get_by_role("button", name="Analyse photo").click()
        page.locator("#results").wait_for(state="visible", timeout=30_000)
        assert page.locator("#top-k .bar-row").count() == 3


@pytest.fixture(scope="module")
def routed_url(tiny_model, tmp_path_factory):
    """The app serving two tiny models (dermoscopy, clinical) behind the committed router."""
    import json
    import shutil

    pytest.importorskip("playwright.sync_api")
    router = Path(__file__).resolve().parents[2] / "models" / "router"
    if not (router / "router.json").is_file():
        pytest.skip("models/router is not committed in this checkout")
    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.served import ServedModels

    root = tmp_path_factory.mktemp("routed") / "models"
    for folder, kind in (("derm", "dermoscopy"), ("clin", "clinical")):
        shutil.copytree(tiny_model, root / folder)
        info = json.loads((root / folder / "model.json").read_text())
        (root / folder / "model.json").write_text(json.dumps({**info, "photo_type": kind}))
    shutil.copytree(router, root / "router")
    with live_server(create_app(ServedModels.load(root), ServeSettings())) as url:
        yield url


def test_router_refuses_a_cat_and_the_user_can_correct_the_kind(routed_url, tmp_path):
    from skimage import data as skdata

    cat = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).save(cat)
    with browser_page(width=390, height=844) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        analyse(page, routed_url, cat)
        assert "photo-type router" in page.locator("#model-line").inner_text()
        refusal = page.locator("#refusal")
        assert refusal.is_visible()
        assert "doesn't look like a close-up photo of skin" in refusal.inner_text()
        assert not page.locator("#top-k").is_visible()
        assert not page.locator("#conformal").is_visible()
        assert page.locator("#route-line").inner_text().startswith(
            "Looks like something other than a close-up photo of skin")
        assert page.locator("#disclaimer").is_visible()
        page.screenshot(path=str(artifacts_dir() / "webapp-refusal-phone.png"), full_page=True)

        # the user knows better: analyse it as a clinical photo
        page.get_by_role("button", name="Analyse as a clinical photo").click()
        page.locator("#route-line", has_text="You chose a clinical photo").wait_for()
        assert "analysed with the clinical model" in page.locator("#route-line").inner_text()
        assert not refusal.is_visible()
        assert page.locator("#top-k .bar-row").count() == 3

        # a dermoscopy photo, chosen in the form
        page.locator("#photo-type").select_option("dermoscopy")
        page.get_by_label("Choose a photo").set_input_files(str(photo(tmp_path / "spot.png")))
        page.get_by_role("button", name="Analyse photo").click()
        page.locator("#route-line", has_text="dermoscopy model").wait_for()
        assert page.locator("#top-k .bar-row").count() == 3
        assert not errors, errors


def main() -> None:
    """Screenshot of the app serving the real models (models/ behind the router unless
    --model)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="models folder or one model folder (default: models/)")
    parser.add_argument("--crop", default=None,
                        help="top,bottom,left,right: analyse this crop of the image")
    parser.add_argument("--image", default=None,
                        help="photo to analyse (default: scikit-image's 'astronaut' photo)")
    parser.add_argument("--out", default="docs/webapp.png")
    parser.add_argument("--cam", action="store_true", help="show the Grad-CAM overlay")
    args = parser.parse_args()

    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.served import ServedModels

    engine = ServedModels.load(args.model)
    work = Path(artifacts_dir())
    if args.image:
        image = Path(args.image)
    else:
        from skimage import data

        image = work / "skimage-astronaut.png"
        buf = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buf, format="PNG")
        image.write_bytes(buf.getvalue())
    if args.crop:
        top, bottom, left, right = (int(v) for v in args.crop.split(","))
        cropped = work / f"crop-{image.stem}.png"
        Image.fromarray(np.asarray(Image.open(image).convert("RGB"))[top:bottom, left:right]
                        ).save(cropped)
        image = cropped
    with live_server(create_app(engine, ServeSettings())) as url, browser_page(1200, 980) as page:
        analyse(page, url, image)
        if args.cam:
            page.locator("#cam-toggle").check()
            page.locator("#cam-img").wait_for(state="visible", timeout=60_000)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
    print(f"wrote {args.out} ({engine.model_dir})")


if __name__ == "__main__":
    main()
