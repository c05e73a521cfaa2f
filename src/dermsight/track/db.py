"""The tracking database: API keys → subjects → series → photos (SQLAlchemy 2).

SQLite (WAL journal, busy timeout, foreign keys on, ``secure_delete``) by default, PostgreSQL by
URL (``postgresql+psycopg://user:pw@host/db``). A SQLite file and the folder it is created in
are private to the server's user (0600 / 0700); :func:`erase_freed` runs after every erasure.
The schema is created and upgraded by the Alembic migrations in ``dermsight/track/migrations``
(:func:`migrate`), never by ``create_all``.

API keys are ``dsk_<key_id>_<secret>``: only ``sha256(token)`` is stored, looked up by the public
``key_id`` and compared in constant time (:func:`verify_key`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from dermsight.errors import ConfigError
from dermsight.track import store

log = logging.getLogger("dermsight.track")

KEY_PREFIX = "dsk"
MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    subjects: Mapped[list[Subject]] = relationship(back_populates="key")


class Subject(Base):
    __tablename__ = "subjects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    key_id: Mapped[str] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True, nullable=False)
    label: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    key: Mapped[ApiKey] = relationship(back_populates="subjects")
    series: Mapped[list[Series]] = relationship(
        back_populates="subject", cascade="all, delete-orphan", passive_deletes=True)


class Series(Base):
    """One body site or lesion followed over time. ``kind`` 'face' crops photos to the face."""

    __tablename__ = "series"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    subject_id: Mapped[str] = mapped_column(
        ForeignKey("subjects.id", ondelete="CASCADE"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    body_site: Mapped[str | None] = mapped_column(String(100), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), nullable=False, default="lesion")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    subject: Mapped[Subject] = relationship(back_populates="series")
    photos: Mapped[list[Photo]] = relationship(
        back_populates="series", cascade="all, delete-orphan", passive_deletes=True,
        order_by="Photo.taken_at")


class Photo(Base):
    """One visit's photo. ``content_sha256`` addresses the stored (EXIF-free) image file."""

    __tablename__ = "photos"
    __table_args__ = (UniqueConstraint("series_id", "pixel_sha256", name="uq_photo_series_pixels"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    series_id: Mapped[str] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), index=True, nullable=False)
    taken_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    uploaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    pixel_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True, nullable=False)
    storage_uri: Mapped[str] = mapped_column(Text, nullable=False)
    width: Mapped[int] = mapped_column(Integer, nullable=False)
    height: Mapped[int] = mapped_column(Integer, nullable=False)
    prediction_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    quality_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    tone_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    lesion_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    severity: Mapped[float | None] = mapped_column(Float, nullable=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    embedding_dim: Mapped[int | None] = mapped_column(Integer, nullable=True)
    flagged: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    flag_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    series: Mapped[Series] = relationship(back_populates="photos")


# ---- engine --------------------------------------------------------------------------------

def default_url(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir) / 'track.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.execute("PRAGMA secure_delete=ON")  # deleted content is overwritten with zeros
    cur.close()


def _create_private_file(path: Path) -> None:
    """Create an empty ``path`` with mode 0600 unless it exists (SQLite gives its -wal and -shm
    files the mode of the database file)."""
    store.private_dirs(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, store.FILE_MODE))
    except FileExistsError:
        pass


def erase_freed(engine: Engine) -> None:
    """After an erasure: copy SQLite's write-ahead log into the database and truncate it, so the
    deleted rows' old page images no longer sit in ``-wal`` (``secure_delete`` has zeroed them
    in the database file). PostgreSQL needs a VACUUM instead (see the README); nothing is done
    here for it."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
    if busy:
        log.warning("the WAL checkpoint after an erasure could not finish (readers busy): "
                    "the deleted rows leave the -wal file at the next checkpoint")


def make_engine(url: str) -> Engine:
    """An engine for ``url``: SQLite gets WAL + foreign keys; ``postgresql://`` uses psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError
        raise ConfigError(f"track database URL '{url}' is not valid: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database))
        engine = create_engine(parsed, connect_args={"timeout": 60, "check_same_thread": False},
                               pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` on ``engine`` (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


# ---- API keys ------------------------------------------------------------------------------

def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_key(session: Session, name: str = "") -> str:
    """Create an API key and return its token (shown once; only its hash is stored)."""
    key_id = secrets.token_hex(6)
    token = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, token_sha256=_digest(token), name=name))
    session.flush()
    return token


def verify_key(session: Session, token: str | None) -> ApiKey | None:
    """The active key ``token`` belongs to, or None. Compares hashes in constant time."""
    if not token:
        return None
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    key = session.get(ApiKey, parts[1])
    # compare against a dummy digest when the id is unknown so timing does not reveal ids
    expected = key.token_sha256 if key is not None else "0" * 64
    ok = hmac.compare_digest(expected, _digest(token))
    if key is None or not ok or key.revoked:
        return None
    return key


def photos_of(session: Session, series_id: str) -> list[Photo]:
    return list(session.scalars(
        select(Photo).where(Photo.series_id == series_id).order_by(Photo.taken_at, Photo.id)))
