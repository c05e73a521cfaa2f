"""`dermsight track …` end to end on a temporary SQLite database."""

from __future__ import annotations

import json

import pytest
from trackhelpers import photo_bytes
from typer.testing import CliRunner

from dermsight.cli import app

runner = CliRunner()


def _run(*args, ok=True):
    r = runner.invoke(app, ["track", *args])
    if ok:
        assert r.exit_code == 0, r.output
    return r


def test_track_cli_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DERMSIGHT_TREND_MODEL", str(tmp_path / "no-model"))
    d = ["--data-dir", str(tmp_path / "t")]
    assert "database ready" in _run("init-db", *d).output
    key = _run("create-key", "--name", "me", *d).output.strip()
    assert key.startswith("dsk_")
    k = ["--key", key]
    subj = _run("add-subject", *k, *d).output.strip()
    ser = _run("add-series", subj, "--name", "arm", "--kind", "lesion", *k, *d).output.strip()
    photos = []
    for i in range(3):
        p = tmp_path / f"p{i}.jpg"
        p.write_bytes(photo_bytes(300 + i))
        photos.append(p)
    _run("add-photo", ser, str(photos[0]), "--taken-at", "2026-01-01", "--no-predict", *k, *d)
    out = _run("add-photo", ser, str(photos[1]), str(photos[2]), "--no-predict", *k, *d).output
    assert out.count("p1.jpg") == 1 and out.count("p2.jpg") == 1
    dup = _run("add-photo", ser, str(photos[0]), "--no-predict", *k, *d, ok=False)
    assert dup.exit_code == 2 and "already in series" in dup.output
    tl = json.loads(_run("timeline", ser, "--json", *k, *d).output)
    assert tl["n_photos"] == 3 and tl["photos"][0]["taken_at"].startswith("2026-01-01")
    assert "not a diagnosis" in _run("timeline", ser, *k, *d).output
    tr = json.loads(_run("trend", ser, "--json", *k, *d).output)
    assert tr["n_photos"] == 3
    bad = _run("timeline", ser, "--key", "dsk_x_y", *d, ok=False)
    assert bad.exit_code == 2 and "invalid or revoked API key" in bad.output
    other = _run("create-key", *d).output.strip()
    forb = _run("delete-subject", subj, "--yes", "--key", other, *d, ok=False)
    assert forb.exit_code == 2 and "another API key" in forb.output
    out = _run("delete-subject", subj, "--yes", *k, *d).output
    assert "3 photos, 3 files" in out
    assert not [p for p in (tmp_path / "t" / "images").rglob("*.jpg")]


def test_track_cli_bad_input_is_a_clear_error(tmp_path):
    d = ["--data-dir", str(tmp_path / "t")]
    r = _run("add-subject", *d, ok=False)
    assert r.exit_code == 2 and "missing API key" in r.output
    key = _run("create-key", *d).output.strip()
    r = _run("add-photo", "nope", str(tmp_path / "missing.jpg"), "--no-predict", "--key", key,
             *d, ok=False)
    assert r.exit_code == 2 and "cannot read photo" in r.output and "missing.jpg" in r.output
    (tmp_path / "p.jpg").write_bytes(photo_bytes(1))
    r = _run("add-photo", "nope", str(tmp_path / "p.jpg"), "--no-predict", "--key", key, *d,
             ok=False)
    assert r.exit_code == 2 and "series 'nope' not found" in r.output


def test_track_trend_finds_the_trend_model_from_any_folder(tmp_path, monkeypatch):
    from pathlib import Path

    from dermsight.cli_track import _tracker
    from dermsight.track.trend import ENV_TREND_DIR, MODEL_FILE, default_trend_dir

    monkeypatch.delenv(ENV_TREND_DIR, raising=False)
    project = Path(__file__).resolve().parents[2] / "models" / "trend"
    if not (project / MODEL_FILE).is_file():
        pytest.skip("no trend model (models/trend) in this checkout")
    monkeypatch.chdir(tmp_path)  # not the repository root
    assert default_trend_dir() == project
    t = _tracker(tmp_path / "t", None, None)
    try:
        assert t.trend_model is not None and t.trend_note == ""
    finally:
        t.close()
    monkeypatch.setenv(ENV_TREND_DIR, str(tmp_path / "elsewhere"))
    assert default_trend_dir() == tmp_path / "elsewhere"


def test_track_cli_routes_photos_with_the_committed_models(tmp_path, monkeypatch):
    from pathlib import Path

    from PIL import Image
    from skimage import data as skdata

    if not (Path(__file__).resolve().parents[2] / "models" / "router" / "router.json").is_file():
        pytest.skip("models/router is not committed in this checkout")
    monkeypatch.setenv("DERMSIGHT_TREND_MODEL", str(tmp_path / "no-model"))
    d = ["--data-dir", str(tmp_path / "t")]
    _run("init-db", *d)
    k = ["--key", _run("create-key", *d).output.strip()]
    ser = _run("add-series", _run("add-subject", *k, *d).output.strip(), *k, *d).output.strip()
    cat = tmp_path / "cat.png"
    Image.fromarray(skdata.chelsea()).save(cat)
    refused = _run("add-photo", ser, str(cat), *k, *d, ok=False)
    assert refused.exit_code == 2 and "was not stored" in refused.output
    forced = _run("add-photo", ser, str(cat), "--photo-type", "clinical", *k, *d).output
    assert "cat.png" in forced
    timeline = json.loads(_run("timeline", ser, "--json", *k, *d).output)
    assert [p["prediction"]["model"] for p in timeline["photos"]] == ["fitzpatrick17k"]
