"""Decoding uploads (EXIF orientation, bad files, bombs), the CAM overlay, `dermsight predict`."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from dermsight.cli import app
from dermsight.errors import DataError
from dermsight.imaging import decode_rgb
from dermsight.serve.overlay import cam_overlay_png


def _jpeg(rgb: np.ndarray, orientation: int | None = None) -> bytes:
    img = Image.fromarray(rgb)
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif[0x010F] = "TestCam"
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def test_decode_applies_exif_orientation_and_drops_exif():
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = 255  # left half white
    out = decode_rgb(_jpeg(rgb, orientation=6))  # rotate 90° clockwise on display
    assert out.shape == (40, 20, 3) and out.dtype == np.uint8
    assert out[:20].mean() > 200 and out[20:].mean() < 50  # white half is now on top
    assert isinstance(out, np.ndarray)  # pixels only: no EXIF object travels on


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (b"this is not an image at all", "not a readable image"),
])
def test_bad_bytes_raise_a_data_error_naming_the_image(data, reason):
    with pytest.raises(DataError, match=f"upload.jpg: .*{reason}"):
        decode_rgb(data, name="upload.jpg")


def test_truncated_and_bomb():
    data = _jpeg(np.full((64, 64, 3), 120, np.uint8))
    with pytest.raises(DataError, match="truncated|corrupt"):
        decode_rgb(data[: len(data) // 2])
    with pytest.raises(DataError, match="too large"):
        decode_rgb(data, max_pixels=1000)


def test_cam_overlay_png():
    rgb = np.full((30, 50, 3), 100, np.uint8)
    png = cam_overlay_png(rgb, np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (50, 30)


@pytest.mark.slow
def test_predict_cli_files_and_folders(tiny_model, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)).save(
            folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"nope")
    single = tmp_path / "one.jpg"
    single.write_bytes(_jpeg(np.full((50, 50, 3), 180, np.uint8)))
    runner = CliRunner()
    out = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", "--model", str(tiny_model), str(folder),
                                 str(single), "--csv", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5
    bad = [r for r in rows if r["ok"] == "False"]
    assert [r["file"].endswith("broken.jpg") for r in bad] == [True]
    assert "not a readable image" in bad[0]["error"]
    assert "skipped" in result.output and "broken.jpg" in result.output
    result = runner.invoke(app, ["predict", "--model", str(tiny_model), str(single), "--json",
                                 "-q"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout[: result.stdout.rindex("]") + 1])
    assert records[0]["ok"] and records[0]["top_k"][0]["label"]
    result = runner.invoke(app, ["predict", "--model", str(tiny_model), str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such file or folder" in result.output


def _grey16_lesion_png() -> bytes:
    """The issue's 16-bit grey PNG, as a photo: skin at 40000, a darker lesion at 20000."""
    a = np.full((128, 128), 40000, np.uint16)
    yy, xx = np.mgrid[0:128, 0:128]
    a[(yy - 64) ** 2 + (xx - 64) ** 2 < 30 ** 2] = 20000
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_16_bit_grey_png_decodes_as_a_person_sees_it():
    rgb = decode_rgb(_grey16_lesion_png())
    assert rgb.shape == (128, 128, 3)
    assert rgb[64, 64].tolist() == [78, 78, 78] and rgb[2, 2].tolist() == [156, 156, 156]


def test_predict_on_a_16_bit_grey_png_is_not_over_exposed(monkeypatch):
    from fastapi.testclient import TestClient

    from dermsight.features.quality import TIPS
    from dermsight.serve.api import ServeSettings, create_app
    from dermsight.serve.engine import ENV_MODEL_DIR, Engine, default_model_dir

    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    if not (default_model_dir() / "model.json").is_file():
        pytest.skip("no default model folder (models/ham10000) in this checkout")
    app_ = create_app(Engine.load(threads=1), ServeSettings(web=False))
    with TestClient(app_) as client:
        res = client.post("/v1/predict", files={"file": ("g16.png", _grey16_lesion_png(),
                                                         "image/png")})
    assert res.status_code == 200, res.text
    assert TIPS["overexposed"] not in res.json()["lighting"]["tips"]
