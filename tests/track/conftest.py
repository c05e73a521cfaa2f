"""Fixtures for the tracking tests: a Tracker on SQLite, and on PostgreSQL when
``DERMSIGHT_TEST_POSTGRES_URL`` points at a reachable server (each test gets its own database)."""

from __future__ import annotations

import os
import time
import uuid

import pytest

PG_ENV = "DERMSIGHT_TEST_POSTGRES_URL"


def _pg_base() -> str | None:
    url = os.environ.get(PG_ENV)
    if not url:
        return None
    try:
        import psycopg

        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"),
                             connect_timeout=3):
            return url
    except Exception:
        return None


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path):
    """A fresh, empty database URL (SQLite file, or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'track.db'}"
        return
    base = _pg_base()
    if base is None:
        pytest.skip(f"{PG_ENV} unset or unreachable")
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"dermsight_test_{uuid.uuid4().hex[:12]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(base).set(database=name)
    yield url.render_as_string(hide_password=False)
    _drop_database(plain, name)


def _drop_database(url: str, name: str, tries: int = 5) -> None:
    """DROP DATABASE … WITH (FORCE); retried, because FORCE may not terminate a session of
    another role (an autovacuum worker that has just started on the new database)."""
    import psycopg

    for attempt in range(tries):
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg.errors.InsufficientPrivilege:
            if attempt == tries - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


@pytest.fixture
def tracker(db_url, tmp_path):
    from dermsight.track.service import Tracker

    t = Tracker(db_url, tmp_path / "images")
    yield t
    t.close()


@pytest.fixture
def client(tracker):
    from fastapi.testclient import TestClient

    from dermsight.serve.api.app import create_track_app

    with TestClient(create_track_app(tracker)) as c:
        yield c
