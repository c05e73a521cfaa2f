"""Schema (Alembic = models), API keys, SQLite WAL, and the content-addressed store."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session
from trackhelpers import photo_bytes

from dermsight.track import db
from dermsight.track.store import ImageStore, encode_clean, pixel_sha256


def test_migrations_create_exactly_the_models_schema_and_are_idempotent(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = db.make_engine(db_url)
    db.migrate(engine)
    db.migrate(engine)  # upgrade head twice: a no-op
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_bad_database_url_is_a_clear_error():
    from dermsight.errors import ConfigError

    with pytest.raises(ConfigError, match="not valid"):
        db.make_engine("not a url")


def test_api_keys_are_stored_hashed_and_verified(db_url):
    engine = db.make_engine(db_url)
    db.migrate(engine)
    with Session(engine) as s, s.begin():
        token = db.create_key(s, "k")
    with Session(engine) as s:
        row = s.get(db.ApiKey, token.split("_")[1])
        assert token not in row.token_sha256 and len(row.token_sha256) == 64
        assert db.verify_key(s, token).id == row.id
        assert db.verify_key(s, token[:-1]) is None
        assert db.verify_key(s, None) is None
        row.revoked = True
        s.commit()
        assert db.verify_key(s, token) is None
    engine.dispose()


def test_store_is_content_addressed_and_atomic(tmp_path):
    store = ImageStore(tmp_path / "img")
    data = b"\xff\xd8 fake jpeg bytes"
    uri, sha, created = store.put(data)
    assert created and uri.endswith(f"{sha[:2]}/{sha[2:4]}/{sha}.jpg")
    assert store.put(data) == (uri, sha, False)
    assert store.read(uri) == data
    assert [u for u, _ in store.list()] == [uri]
    # no temporary files are left behind
    assert not [p for p in (tmp_path / "img").rglob("*") if p.name.startswith(".")]


def test_reconcile_removes_orphans_and_temporaries_and_reports_missing(tmp_path):
    store = ImageStore(tmp_path / "img")
    keep, _, _ = store.put(b"keep")
    orphan, _, _ = store.put(b"orphan")
    tmp = tmp_path / "img" / "ab" / ".x.jpg.123.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(b"partial")
    missing = store.uri_for("f" * 64)
    rep = store.reconcile({keep, missing})
    assert rep.removed_orphans == [orphan] and rep.removed_temporaries == [str(tmp)]
    assert rep.missing_files == [missing]
    assert [u for u, _ in store.list()] == [keep]
    # a grace period protects files that may belong to uploads in flight
    young, _, _ = store.put(b"young")
    assert store.reconcile({keep}, grace_s=60).removed_orphans == []
    old = time.time() - 120
    os.utime(young, (old, old))
    assert store.reconcile({keep}, grace_s=60).removed_orphans == [young]


def test_store_works_on_an_fsspec_url():
    store = ImageStore("memory://dermsight-test-store")
    uri, sha, created = store.put(b"abc")
    assert created and uri.startswith("memory://") and store.exists(uri)
    assert store.read(uri) == b"abc"
    assert [u for u, _ in store.list()] == [uri]
    orphan, _, _ = store.put(b"def")
    assert store.reconcile({uri}).removed_orphans == [orphan]
    store.delete(uri)
    assert not store.exists(uri)


def test_clean_encoding_is_deterministic_and_pixel_hash_ignores_container():
    import io

    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(photo_bytes(1))).convert("RGB"))
    assert encode_clean(rgb) == encode_clean(rgb.copy())
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, format="PNG")
    again = np.asarray(Image.open(io.BytesIO(png.getvalue())).convert("RGB"))
    assert pixel_sha256(rgb) == pixel_sha256(again)
    assert pixel_sha256(rgb) != pixel_sha256(rgb[:, ::-1])
