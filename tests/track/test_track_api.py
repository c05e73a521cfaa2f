"""The /v1/track API: keys (401/403), subjects, series, uploads, timeline, trend, delete."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image
from trackhelpers import photo_bytes, stored_files


def _setup(client, tracker, kind="lesion"):
    key = tracker.create_key("test")
    h = {"X-API-Key": key}
    subj = client.post("/v1/track/subjects", json={"label": "s1"}, headers=h)
    assert subj.status_code == 201, subj.text
    ser = client.post(f"/v1/track/subjects/{subj.json()['id']}/series",
                      json={"name": "left forearm", "body_site": "arm", "kind": kind}, headers=h)
    assert ser.status_code == 201, ser.text
    return h, subj.json()["id"], ser.json()["id"]


def _upload(client, h, series_id, data, taken_at=None, name="p.jpg"):
    form = {"taken_at": taken_at} if taken_at is not None else {}
    return client.post(f"/v1/track/series/{series_id}/photos", headers=h, data=form,
                       files={"file": (name, data, "image/jpeg")})


def test_missing_and_invalid_keys_are_401(client, tracker):
    r = client.get("/v1/track/subjects")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    key = tracker.create_key()
    for bad in ("nonsense", key + "x", key.replace("dsk_", "dsk_0"), "dsk_ab_cd"):
        r = client.get("/v1/track/subjects", headers={"X-API-Key": bad})
        assert r.status_code == 401, bad
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/track/subjects", headers={"X-API-Key": key}).status_code == 200


def test_other_keys_subjects_are_403_and_unchanged(client, tracker):
    h, subj, ser = _setup(client, tracker)
    assert _upload(client, h, ser, photo_bytes(1), "2026-01-01T10:00:00Z").status_code == 201
    other = {"X-API-Key": tracker.create_key("other")}
    before = tracker.counts()
    assert client.get(f"/v1/track/subjects/{subj}", headers=other).status_code == 403
    assert client.get(f"/v1/track/series/{ser}/timeline", headers=other).status_code == 403
    assert client.get(f"/v1/track/series/{ser}/trend", headers=other).status_code == 403
    assert client.delete(f"/v1/track/subjects/{subj}", headers=other).status_code == 403
    r = client.post(f"/v1/track/subjects/{subj}/series", json={}, headers=other)
    assert r.status_code == 403
    r = _upload(client, other, ser, photo_bytes(2))
    assert r.status_code == 403 and r.json()["error"]["field"] == "series_id"
    pid = client.get(f"/v1/track/series/{ser}/timeline", headers=h).json()["photos"][0]["id"]
    assert client.get(f"/v1/track/photos/{pid}/image", headers=other).status_code == 403
    assert client.get("/v1/track/subjects", headers=other).json() == []
    assert tracker.counts() == before


def test_unknown_ids_are_404(client, tracker):
    h, _, _ = _setup(client, tracker)
    assert client.get("/v1/track/subjects/nope", headers=h).status_code == 404
    r = _upload(client, h, "nope", photo_bytes(3))
    assert r.status_code == 404 and r.json()["error"]["code"] == "series_not_found"
    assert client.post("/v1/track/subjects/nope/series", json={},
                       headers=h).status_code == 404


def test_upload_timeline_and_trend(client, tracker):
    h, subj, ser = _setup(client, tracker)
    r = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
    assert r["trend"] is None and "at least 2" in r["message"]
    for i, day in enumerate(["2026-01-01", "2026-01-15T09:30:00+02:00", "2026-02-01T00:00:00Z"]):
        r = _upload(client, h, ser, photo_bytes(10 + i), day)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["lesion"]["severity"] >= 0 and body["tone"]["ita_category"]
        assert "ok" in body["quality"]
    tl = client.get(f"/v1/track/series/{ser}/timeline", headers=h).json()
    assert [p["taken_at"][:10] for p in tl["photos"]] == ["2026-01-01", "2026-01-15",
                                                          "2026-02-01"]
    assert tl["photos"][1]["taken_at"] == "2026-01-15T07:30:00+00:00"
    assert "not a diagnosis" in tl["disclaimer"]
    tr = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
    n_ok = sum(not p["flagged"] for p in tl["photos"])
    assert tr["n_used"] == n_ok
    if n_ok >= 2:
        assert tr["trend"]["label"] in ("improved", "stable", "worsened")
        assert 0 < tr["trend"]["probability"] <= 1
    img = client.get(f"/v1/track/photos/{tl['photos'][0]['id']}/image", headers=h)
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"


def test_flagged_photos_are_stored_but_left_out_of_the_trend(client, tracker):
    import io

    import numpy as np

    h, _, ser = _setup(client, tracker)
    _upload(client, h, ser, photo_bytes(20), "2026-01-01")
    _upload(client, h, ser, photo_bytes(21), "2026-01-10")
    dark = np.full((96, 128, 3), 6, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(dark).save(buf, format="PNG")
    r = _upload(client, h, ser, buf.getvalue(), "2026-01-20", name="dark.png")
    assert r.status_code == 201 and r.json()["flagged"], r.json()
    assert "dark" in r.json()["flag_reason"].lower()
    tr = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
    assert r.json()["id"] in [e["photo_id"] for e in tr["excluded"]]
    assert tr["n_photos"] == 3 and tr["n_used"] == tr["n_photos"] - len(tr["excluded"])


def test_photos_of_different_spots_get_no_trend(client, tracker):
    from trackhelpers import OTHER_SPOTS, SAME_SPOT, spot_bytes

    days = ["2026-01-01", "2026-02-01", "2026-03-01"]
    h, _, ser = _setup(client, tracker)
    for day, photo in zip(days, SAME_SPOT):
        assert _upload(client, h, ser, spot_bytes(**photo), day).status_code == 201
    tr = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
    assert tr["n_used"] == 3 and tr["mismatches"] == []
    assert tr["trend"]["label"] in ("improved", "stable", "worsened")
    h, _, ser = _setup(client, tracker)
    ids = [_upload(client, h, ser, spot_bytes(**photo), day).json()["id"]
           for day, photo in zip(days, OTHER_SPOTS)]
    tr = client.get(f"/v1/track/series/{ser}/trend", headers=h).json()
    assert tr["n_used"] == 3 and tr["trend"] is None and tr["baseline"] is None
    assert "do not look like the same spot" in tr["message"] and "2026-01-01" in tr["message"]
    first = tr["mismatches"][0]
    assert first["photo_ids"] == ids[:2] and first["taken_at"][0].startswith("2026-01-01")
    assert first["score"] > 0 and first["skin_l"] > 20


@pytest.mark.parametrize("taken_at", ["yesterday", "2026-13-01", "01/02/2026", "2999-01-01",
                                      "1800-01-01T00:00:00"])
def test_bad_timestamps_are_422_and_change_nothing(client, tracker, taken_at):
    h, _, ser = _setup(client, tracker)
    before, files = tracker.counts(), stored_files(tracker)
    r = _upload(client, h, ser, photo_bytes(30), taken_at)
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "taken_at"
    assert tracker.counts() == before and stored_files(tracker) == files


@pytest.mark.parametrize("data,code", [(b"", "empty_file"), (b"not an image at all",
                                       "invalid_image"), (photo_bytes(5)[:200], "invalid_image")])
def test_non_images_are_422_and_change_nothing(client, tracker, data, code):
    h, _, ser = _setup(client, tracker)
    before = tracker.counts()
    r = _upload(client, h, ser, data, name="x.jpg")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and "x.jpg" in r.json()["error"]["message"]
    assert tracker.counts() == before and stored_files(tracker) == []


def test_duplicate_photo_is_409_and_changes_nothing(client, tracker):
    h, subj, ser = _setup(client, tracker)
    data = photo_bytes(40)
    assert _upload(client, h, ser, data).status_code == 201
    before, files = tracker.counts(), stored_files(tracker)
    r = _upload(client, h, ser, data)
    assert r.status_code == 409 and r.json()["error"]["code"] == "duplicate_photo"
    # the same pixels re-saved as PNG are the same photo
    import io

    png = io.BytesIO()
    Image.open(io.BytesIO(data)).save(png, format="PNG")
    assert _upload(client, h, ser, png.getvalue(), name="p.png").status_code == 409
    assert tracker.counts() == before and stored_files(tracker) == files
    # ... but may go into another series
    ser2 = client.post(f"/v1/track/subjects/{subj}/series", json={"name": "b"}, headers=h)
    assert _upload(client, h, ser2.json()["id"], data).status_code == 201


def test_stored_copy_has_no_exif(client, tracker):
    import io

    h, _, ser = _setup(client, tracker)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    exif[0x0112] = 6  # orientation: rotate 90° on display
    exif.get_ifd(0x8769)[36867] = "2025:05:04 12:00:00"
    data = photo_bytes(50, size=(64, 160), exif=exif)
    r = _upload(client, h, ser, data)
    assert r.status_code == 201
    body = r.json()
    assert (body["width"], body["height"]) == (64, 160)  # EXIF orientation applied
    assert body["taken_at"].startswith("2025-05-04T12:00:00")  # EXIF capture time used
    stored = tracker.store.read(tracker.store.uri_for(body["content_sha256"]))
    assert b"PhoneMaker" not in stored and b"Exif" not in stored
    im = Image.open(io.BytesIO(stored))
    assert dict(im.getexif()) == {} and im.size == (64, 160)


def test_16_bit_grey_upload_is_stored_grey_not_white(client, tracker):
    import io

    import numpy as np

    from dermsight.track.upload import decode_upload

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 20000, np.uint16)).save(buf, format="PNG")
    rgb, _ = decode_upload(buf.getvalue())  # the decoder of every tracking upload
    assert (rgb == 78).all()
    h, _, ser = _setup(client, tracker)
    r = _upload(client, h, ser, buf.getvalue(), name="g16.png")
    assert r.status_code == 201, r.text
    stored = tracker.store.read(tracker.store.uri_for(r.json()["content_sha256"]))
    assert abs(np.asarray(Image.open(io.BytesIO(stored)).convert("L")).mean() - 78) < 2


def test_delete_subject_erases_rows_and_files(client, tracker):
    h, subj, ser = _setup(client, tracker)
    other_h, _, other_ser = _setup(client, tracker)
    shared = photo_bytes(60)
    for i in range(3):
        assert _upload(client, h, ser, photo_bytes(61 + i)).status_code == 201
    assert _upload(client, h, ser, shared).status_code == 201
    assert _upload(client, other_h, other_ser, shared).status_code == 201
    assert len(stored_files(tracker)) == 4
    r = client.delete(f"/v1/track/subjects/{subj}", headers=h)
    assert r.status_code == 200
    assert r.json() == {"subject_id": subj, "series_deleted": 1, "photos_deleted": 4,
                        "files_deleted": 3}
    assert tracker.counts() == {"subjects": 1, "series": 1, "photos": 1}
    assert len(stored_files(tracker)) == 1  # the other key's copy of the shared photo stays
    assert client.get(f"/v1/track/subjects/{subj}", headers=h).status_code == 404
    assert client.get(f"/v1/track/series/{other_ser}/timeline",
                      headers=other_h).json()["n_photos"] == 1


def _concurrent(client, tracker, n_clients, per_client):
    h, _, ser = _setup(client, tracker)

    def work(c):
        codes = []
        for i in range(per_client):
            r = _upload(client, h, ser, photo_bytes(10_000 + c * per_client + i, size=(48, 64)))
            codes.append(r.status_code)
        return codes

    with ThreadPoolExecutor(n_clients) as ex:
        codes = [c for cs in ex.map(work, range(n_clients)) for c in cs]
    assert codes == [201] * (n_clients * per_client)
    n = tracker.counts()["photos"]
    assert n == n_clients * per_client == len(stored_files(tracker))
    assert tracker.reconcile() == {"removed_orphans": [], "removed_temporaries": [],
                                   "missing_files": []}


def test_concurrent_uploads_store_every_photo_once(client, tracker):
    _concurrent(client, tracker, 4, 5)


@pytest.mark.slow
def test_concurrent_uploads_16_clients_x_100(client, tracker):
    _concurrent(client, tracker, 16, 100)


def test_openapi_lists_the_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/track/subjects", "/v1/track/subjects/{subject_id}",
              "/v1/track/series/{series_id}/photos", "/v1/track/series/{series_id}/timeline",
              "/v1/track/series/{series_id}/trend"):
        assert p in paths


def test_timeline_page_is_offline_and_shows_the_disclaimer(client):
    r = client.get("/track/series/abc")
    assert r.status_code == 200 and "Not medical advice" in r.text
    assert "http://" not in r.text and "https://" not in r.text
    js = client.get("/track/static/timeline.js")
    assert js.status_code == 200 and "/v1/track" in js.text and "https://" not in js.text
