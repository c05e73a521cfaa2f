"""Erasure that really erases (SQLite secure_delete and a WAL checkpoint), private files and
folders, error messages that name the upload, and the standalone app's guards."""

from __future__ import annotations

import json
import stat

import pytest
from fastapi.testclient import TestClient
from trackhelpers import photo_bytes

from dermsight.serve.api.app import create_track_app
from dermsight.track.service import Tracker

SECRET = "Zqxj-Wvuk-Label"


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _db_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("track.db")}


def test_delete_leaves_no_trace_in_the_database_or_its_wal(tmp_path):
    tracker = Tracker.from_dir(tmp_path / "data")
    try:
        key = tracker.authenticate(tracker.create_key())
        keep = tracker.create_subject(key, "someone else")
        subject = tracker.create_subject(key, SECRET)
        series = tracker.create_series(key, subject["id"], f"{SECRET} series", "arm")
        tracker.add_photo(key, series["id"], photo_bytes(1), taken_at="2026-01-01")
        tracker.create_series(key, keep["id"], "other")
        files = _db_files(tmp_path / "data")
        assert any(SECRET.encode() in data for data in files.values())  # the probe sees it
        tracker.delete_subject(key, subject["id"])
        for name, data in _db_files(tmp_path / "data").items():
            assert SECRET.encode() not in data, name
        assert [s["label"] for s in tracker.list_subjects(key)] == ["someone else"]
        with tracker.db.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
    finally:
        tracker.close()


def test_database_and_image_files_are_private(tmp_path):
    tracker = Tracker.from_dir(tmp_path / "data")
    try:
        key = tracker.authenticate(tracker.create_key())
        subject = tracker.create_subject(key, "a")
        series = tracker.create_series(key, subject["id"], "arm")
        tracker.add_photo(key, series["id"], photo_bytes(2))
        data = tmp_path / "data"
        assert _mode(data) == 0o700
        db_files = [p for p in data.iterdir() if p.name.startswith("track.db")]
        assert {p.name for p in db_files} >= {"track.db"}
        for p in db_files:
            assert _mode(p) == 0o600, p.name
        images = data / "images"
        stored = [p for p in images.rglob("*")]
        assert any(p.is_file() for p in stored)
        assert _mode(images) == 0o700
        for p in stored:
            assert _mode(p) == (0o600 if p.is_file() else 0o700), p
    finally:
        tracker.close()


def test_a_sqlite_url_in_a_new_folder_makes_it_private(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'new' / 'deeper' / 'track.db'}",
                      tmp_path / "new" / "images")
    try:
        assert _mode(tmp_path / "new") == 0o700 and _mode(tmp_path / "new" / "deeper") == 0o700
        assert _mode(tmp_path / "new" / "deeper" / "track.db") == 0o600
    finally:
        tracker.close()


@pytest.fixture
def app_client(tmp_path):
    tracker = Tracker(f"sqlite:///{tmp_path / 'track.db'}", tmp_path / "images")
    with TestClient(create_track_app(tracker)) as c:
        yield c, tracker
    tracker.close()


def _series(client, key) -> str:
    h = {"X-API-Key": key}
    subject = client.post("/v1/track/subjects", json={}, headers=h).json()["id"]
    return client.post(f"/v1/track/subjects/{subject}/series", json={}, headers=h).json()["id"]


def test_a_bad_upload_is_named_not_shown_as_a_buffer_object(app_client):
    client, tracker = app_client
    key = tracker.create_key()
    series = _series(client, key)
    r = client.post(f"/v1/track/series/{series}/photos", headers={"X-API-Key": key},
                    files={"file": ("holiday.jpg", b"GIF89a but not really", "image/jpeg")})
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["field"] == "file" and "holiday.jpg" in error["message"]
    assert "BytesIO" not in error["message"] and "0x" not in error["message"]


def test_the_standalone_app_has_the_serving_guards(app_client):
    client, tracker = app_client
    page = client.get("/track/series/abc")
    assert "<style" not in page.text and "style=" not in page.text  # the CSP allows neither
    assert "/track/static/timeline.css" in page.text
    for path in ("/track/series/abc", "/track/static/timeline.css", "/docs"):
        r = client.get(path)
        assert r.status_code == 200, path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "no-referrer", path
    r = client.post("/v1/track/subjects", content=json.dumps({"label": "x" * 70_000}),
                    headers={"X-API-Key": tracker.create_key(),
                             "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
