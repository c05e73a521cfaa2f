"""The tracking service: everything the API and the CLI do, in one place (no HTTP here).

:class:`Tracker` owns the database engine, the image store, the optional inference engine and
the optional trend model. Every method takes the caller's API key id and raises
:class:`~dermsight.errors.ApiError` (the serving app's error: an HTTP status, a stable code and
the field) when the subject or series is unknown (404) or belongs to another key (403), when
input is bad (400 / 422) or when the same photo is already in the series (409). A failing call
changes nothing.

Upload (:meth:`Tracker.add_photo`): decode (:mod:`dermsight.track.upload`: serving's limits and
decoder, EXIF orientation applied) → pixel hash, early duplicate check → face crop / quality /
skin tone / lesion measurements / prediction (outside any transaction) → in one transaction:
insert the row (the unique constraint on ``(series_id, pixel_sha256)`` settles races), write the
EXIF-free file (temp + rename), commit. If the commit fails the file is removed unless another
row uses it; a crash between the file write and the commit leaves an unreferenced file that
:meth:`Tracker.reconcile` (run at start-up) removes, so rows = files after every restart.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from dermsight import DISCLAIMER
from dermsight.errors import ApiError
from dermsight.features.skintone import compute_skin_tone
from dermsight.imaging import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, downscale
from dermsight.track import db
from dermsight.track.align import prepare_photo
from dermsight.track.lesion import measure_lesion
from dermsight.track.store import ImageStore, encode_clean, pixel_sha256, private_dirs
from dermsight.track.trend import (
    CLASSES,
    SeverityBaseline,
    TrendModel,
    default_trend_dir,
    spot_mismatches,
)
from dermsight.track.upload import decode_upload, parse_taken_at, utc

log = logging.getLogger("dermsight.track")

SERIES_KINDS = ("lesion", "face", "body_site")
#: the header a 401 answer carries: how to authenticate
KEY_CHALLENGE = {"WWW-Authenticate": "X-API-Key"}


class Tracker:
    """Subjects, series, photos and trends for API keys (see the module docstring)."""

    def __init__(self, url: str, store_root: str | Path, *, engine: Any = None,
                 trend_dir: str | Path | None = None, migrate: bool = True,
                 reconcile: bool = True) -> None:
        self.url = url
        self.db = db.make_engine(url)
        if migrate:
            db.migrate(self.db)
        self.Session = sessionmaker(self.db, expire_on_commit=False)
        self.store = ImageStore(store_root)
        self.engine = engine
        self.trend_model: TrendModel | None = None
        self.trend_note = "no trend model loaded: the severity baseline is used"
        if trend_dir is not None and (Path(trend_dir) / "trend.onnx").is_file():
            self.trend_model = TrendModel.load(trend_dir)
            self.trend_note = ""
        if reconcile:
            self.reconcile()

    @classmethod
    def from_dir(cls, data_dir: str | Path, url: str | None = None, **kwargs) -> Tracker:
        """Database ``<data_dir>/track.db`` (unless ``url``) and images ``<data_dir>/images``."""
        data_dir = Path(data_dir)
        private_dirs(data_dir)
        return cls(url or db.default_url(data_dir), data_dir / "images", **kwargs)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> Tracker:
        """A tracker on database ``url``; images in ``$DERMSIGHT_TRACK_STORE``, else beside a
        SQLite file (``<db folder>/images``), else ``runs/track/images``; the trend model in
        :func:`~dermsight.track.trend.default_trend_dir` when present."""
        from sqlalchemy.engine import make_url

        store = os.environ.get("DERMSIGHT_TRACK_STORE")
        if not store:
            try:
                parsed = make_url(url)
            except Exception:
                parsed = None
            if (parsed is not None and parsed.get_backend_name() == "sqlite"
                    and parsed.database not in (None, "", ":memory:")):
                store = str(Path(parsed.database).parent / "images")
            else:
                store = "runs/track/images"
        trend = default_trend_dir()
        kwargs.setdefault("trend_dir", trend if trend.is_dir() else None)
        return cls(url, store, **kwargs)

    @classmethod
    def from_env(cls, engine: Any = None, **kwargs) -> Tracker:
        """Configured by environment variables (all optional):

        ``DERMSIGHT_TRACK_DIR`` (default ``runs/track``): SQLite database and images;
        ``DERMSIGHT_TRACK_DB``: a database URL instead (e.g. ``postgresql://…``);
        ``DERMSIGHT_TRACK_STORE``: the image store (a folder or an fsspec URL) instead;
        ``DERMSIGHT_TREND_MODEL``: the ONNX trend model folder (default: the checkout's
        ``models/trend``, see :func:`~dermsight.track.trend.default_trend_dir`).
        """
        data_dir = Path(os.environ.get("DERMSIGHT_TRACK_DIR", "runs/track"))
        url = os.environ.get("DERMSIGHT_TRACK_DB") or None
        store = os.environ.get("DERMSIGHT_TRACK_STORE") or str(data_dir / "images")
        trend = default_trend_dir()
        if url is None:
            private_dirs(data_dir)
        return cls(url or db.default_url(data_dir), store, engine=engine,
                   trend_dir=trend if trend.is_dir() else None, **kwargs)

    def close(self) -> None:
        self.db.dispose()

    # ---- keys -------------------------------------------------------------------------------
    def create_key(self, name: str = "") -> str:
        with self.Session.begin() as s:
            return db.create_key(s, name)

    def authenticate(self, token: str | None) -> str:
        """The key id of ``token``; ApiError 401 when missing or invalid."""
        if not token:
            raise ApiError(401, "missing_api_key", "missing API key: send it in the "
                           "X-API-Key header", "X-API-Key", headers=KEY_CHALLENGE)
        with self.Session() as s:
            key = db.verify_key(s, token)
        if key is None:
            raise ApiError(401, "invalid_api_key", "invalid or revoked API key", "X-API-Key",
                           headers=KEY_CHALLENGE)
        return key.id

    # ---- ownership --------------------------------------------------------------------------
    @staticmethod
    def _subject(s: Session, key_id: str, subject_id: str) -> db.Subject:
        subj = s.get(db.Subject, subject_id)
        if subj is None:
            raise ApiError(404, "subject_not_found", f"subject '{subject_id}' not found",
                           "subject_id")
        if subj.key_id != key_id:
            raise ApiError(403, "forbidden",
                           f"subject '{subject_id}' belongs to another API key", "subject_id")
        return subj

    @staticmethod
    def _series(s: Session, key_id: str, series_id: str) -> db.Series:
        ser = s.get(db.Series, series_id)
        if ser is None:
            raise ApiError(404, "series_not_found", f"series '{series_id}' not found",
                           "series_id")
        if ser.subject.key_id != key_id:
            raise ApiError(403, "forbidden",
                           f"series '{series_id}' belongs to another API key", "series_id")
        return ser

    # ---- subjects and series ----------------------------------------------------------------
    def create_subject(self, key_id: str, label: str = "") -> dict:
        with self.Session.begin() as s:
            subj = db.Subject(key_id=key_id, label=label)
            s.add(subj)
            s.flush()
            return self._subject_dict(subj, [])

    def list_subjects(self, key_id: str) -> list[dict]:
        with self.Session() as s:
            subs = s.scalars(select(db.Subject).where(db.Subject.key_id == key_id)
                             .order_by(db.Subject.created_at)).all()
            return [self._subject_dict(x, x.series) for x in subs]

    def get_subject(self, key_id: str, subject_id: str) -> dict:
        with self.Session() as s:
            subj = self._subject(s, key_id, subject_id)
            return self._subject_dict(subj, subj.series)

    def create_series(self, key_id: str, subject_id: str, name: str = "",
                      body_site: str | None = None, kind: str = "lesion") -> dict:
        if kind not in SERIES_KINDS:
            raise ApiError(422, "invalid_kind", f"kind must be one of {SERIES_KINDS}, "
                           f"got '{kind}'", "kind")
        with self.Session.begin() as s:
            self._subject(s, key_id, subject_id)
            ser = db.Series(subject_id=subject_id, name=name, body_site=body_site, kind=kind)
            s.add(ser)
            s.flush()
            return self._series_dict(ser, 0)

    def delete_subject(self, key_id: str, subject_id: str) -> dict:
        """Erase a subject, its series, photo rows and (unshared) image files."""
        with self.Session.begin() as s:
            subj = self._subject(s, key_id, subject_id)
            uris = list(s.scalars(select(db.Photo.storage_uri).join(db.Series)
                                  .where(db.Series.subject_id == subject_id)))
            n_series = len(subj.series)
            s.delete(subj)
        removed = self._remove_unreferenced(set(uris))
        db.erase_freed(self.db)  # the deleted rows must not stay readable in the WAL
        return {"subject_id": subject_id, "series_deleted": n_series,
                "photos_deleted": len(uris), "files_deleted": removed}

    def _remove_unreferenced(self, uris: set[str]) -> int:
        removed = 0
        with self.Session() as s:
            for uri in uris:
                used = s.scalar(select(func.count()).select_from(db.Photo)
                                .where(db.Photo.storage_uri == uri))
                if not used:
                    self.store.delete(uri)
                    removed += 1
        return removed

    # ---- photos -----------------------------------------------------------------------------
    def add_photo(self, key_id: str, series_id: str, data: bytes, *,
                  taken_at: str | datetime | None = None, filename: str = "upload",
                  engine: Any = None, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
                  max_pixels: int = DEFAULT_MAX_PIXELS, photo_type: str | None = None) -> dict:
        """Store one photo in a series (see the module docstring); ``engine`` overrides the
        tracker's inference engine for this call; ``max_bytes`` and ``max_pixels`` bound the
        upload (the serving app passes its own limits).

        With a routed engine (:class:`~dermsight.serve.served.ServedModels`) the photo is
        routed as in ``/v1/predict`` (``photo_type`` forces its kind): a photo that is not of
        skin is not stored (422 ``not_skin``), and a series keeps one kind of photo (409
        ``photo_type_mismatch`` naming both kinds)."""
        when = taken_at if isinstance(taken_at, datetime) else parse_taken_at(taken_at)
        with self.Session() as s:  # ownership first: a stranger learns nothing from the image
            kind = self._series(s, key_id, series_id).kind
        rgb, exif_time = decode_upload(data, filename, max_bytes=max_bytes, max_pixels=max_pixels)
        phash = pixel_sha256(rgb)
        with self.Session() as s:
            self._check_duplicate(s, series_id, phash)
        when = utc(when or exif_time or db.utcnow())
        analysis = self.analyse(rgb, kind, engine if engine is not None else self.engine,
                                photo_type=photo_type, filename=filename)
        self._check_photo_type(series_id, analysis)
        clean = encode_clean(rgb)
        uri = None
        created = False
        try:
            with self.Session.begin() as s:
                self._series(s, key_id, series_id)  # still there, still ours
                photo = db.Photo(series_id=series_id, taken_at=when, pixel_sha256=phash,
                                 content_sha256="", storage_uri="", width=rgb.shape[1],
                                 height=rgb.shape[0], **analysis)
                s.add(photo)
                try:
                    s.flush()
                except IntegrityError:
                    raise ApiError(409, "duplicate_photo",
                                   f"this photo ('{filename}') is already in series "
                                   f"'{series_id}'", "file") from None
                uri, sha, created = self.store.put(clean)
                photo.content_sha256, photo.storage_uri = sha, uri
                s.flush()
                out = self._photo_dict(photo)
        except BaseException:
            if created and uri is not None:
                self._remove_unreferenced({uri})
            raise
        return out

    def _check_duplicate(self, s: Session, series_id: str, phash: str) -> None:
        dup = s.scalar(select(db.Photo.id).where(db.Photo.series_id == series_id,
                                                 db.Photo.pixel_sha256 == phash))
        if dup is not None:
            raise ApiError(409, "duplicate_photo", f"this photo is already in series "
                           f"'{series_id}' (photo '{dup}')", "file")

    def _check_photo_type(self, series_id: str, analysis: dict) -> None:
        """A series keeps the kind of photo (dermoscopy / clinical) of its first routed photo."""
        new = json.loads(analysis.get("prediction_json") or "{}").get("photo_type")
        if new is None:
            return
        with self.Session() as s:
            stored = s.scalars(select(db.Photo.prediction_json).where(
                db.Photo.series_id == series_id)).all()
        kinds = {json.loads(p).get("photo_type") for p in stored if p} - {None}
        if kinds and new not in kinds:
            raise ApiError(409, "photo_type_mismatch",
                           f"series '{series_id}' holds {', '.join(sorted(kinds))} photos and "
                           f"this one was read as {new}: start a new series for it, or send "
                           f"photo_type={sorted(kinds)[0]} if it was misjudged", "file")

    def analyse(self, rgb: np.ndarray, kind: str, engine: Any = None, *,
                photo_type: str | None = None, filename: str = "upload") -> dict:
        """Row fields from the photo: quality/flag, tone, lesion measures, prediction.

        Raises:
            ApiError: 422 ``not_skin`` when a routed engine refuses the photo."""
        prep = prepare_photo(rgb, kind)
        img = prep.rgb
        small = downscale(img, 512)
        tone = compute_skin_tone(small)
        lesion = measure_lesion(small)
        quality = dict(prep.quality)
        quality["face_box"] = prep.face_box
        quality["notes"] = prep.notes
        fields: dict[str, Any] = {
            "quality_json": json.dumps(quality), "tone_json": json.dumps(tone),
            "lesion_json": json.dumps(lesion), "severity": float(lesion["severity"]),
            "flagged": prep.flagged,
            "flag_reason": " ".join(prep.reasons) if prep.reasons else None,
        }
        if engine is not None:
            routed = hasattr(engine, "route")
            try:
                pred = engine.predict([img], top_k=3,
                                      **({"photo_types": photo_type} if routed else {}))[0]
            except ValueError as exc:  # an unknown forced kind
                raise ApiError(422, "invalid_option", str(exc), "photo_type") from None
            if getattr(pred, "refused", False):
                raise ApiError(422, "not_skin", f"'{filename}' was not stored: {pred.message}",
                               "file")
            d = pred.to_dict() if hasattr(pred, "to_dict") else dict(pred)
            d.pop("embedding", None)
            # whose embedding space this is (a routed engine names the model that answered)
            d["model_id"] = d.get("model_id") or getattr(engine, "model_id", None)
            fields["prediction_json"] = json.dumps(d, default=float)
            emb = getattr(pred, "embedding", None)
            if emb is not None:
                emb = np.asarray(emb, dtype=np.float32).ravel()
                fields["embedding"] = emb.tobytes()
                fields["embedding_dim"] = int(emb.size)
        return fields

    def image(self, key_id: str, photo_id: str) -> bytes:
        with self.Session() as s:
            photo = s.get(db.Photo, photo_id)
            if photo is None:
                raise ApiError(404, "photo_not_found", f"photo '{photo_id}' not found",
                               "photo_id")
            self._series(s, key_id, photo.series_id)
            uri = photo.storage_uri
        return self.store.read(uri)

    # ---- timeline and trend -----------------------------------------------------------------
    def timeline(self, key_id: str, series_id: str) -> dict:
        with self.Session() as s:
            ser = self._series(s, key_id, series_id)
            photos = db.photos_of(s, series_id)
            return {**self._series_dict(ser, len(photos)),
                    "photos": [self._photo_dict(p) for p in photos],
                    "disclaimer": DISCLAIMER}

    def trend(self, key_id: str, series_id: str) -> dict:
        """Trend over the series' unflagged photos, oldest first (model and baseline); none
        when consecutive photos do not look like the same spot (``mismatches`` says which)."""
        with self.Session() as s:
            self._series(s, key_id, series_id)
            photos = db.photos_of(s, series_id)
        used = [p for p in photos if not p.flagged]
        excluded = [{"photo_id": p.id, "reason": p.flag_reason} for p in photos if p.flagged]
        out: dict[str, Any] = {"series_id": series_id, "n_photos": len(photos),
                               "n_used": len(used), "excluded": excluded,
                               "classes": list(CLASSES), "mismatches": [],
                               "disclaimer": DISCLAIMER}
        if len(used) < 2:
            out.update(trend=None, baseline=None,
                       message="a trend needs at least 2 photos that pass the quality check")
            return out
        lesions = [json.loads(p.lesion_json) if p.lesion_json else {} for p in used]
        dims = {p.embedding_dim for p in used}
        ids = {(json.loads(p.prediction_json) if p.prediction_json else {}).get("model_id")
               for p in used}
        one_space = None not in dims and len(dims) == 1 and None not in ids and len(ids) == 1
        mismatches = spot_mismatches(
            lesions, np.stack([np.frombuffer(p.embedding, dtype=np.float32) for p in used])
            if one_space else None, next(iter(ids)) if one_space else None)
        if mismatches:
            for m in mismatches:
                a, b = used[m["index"] - 1], used[m["index"]]
                m.update(photo_ids=[a.id, b.id],
                         taken_at=[utc(a.taken_at).isoformat(), utc(b.taken_at).isoformat()])
            when = "; ".join(" and ".join(t[:10] for t in m["taken_at"]) for m in mismatches)
            out.update(trend=None, baseline=None, mismatches=mismatches,
                       message=f"the photos do not look like the same spot (taken {when}): "
                               "no trend is given. Keep one lesion or area per series: photos "
                               "of another spot belong in a series of their own.")
            return out
        t0 = utc(used[0].taken_at)
        days = [(utc(p.taken_at) - t0).total_seconds() / 86400.0 for p in used]
        baseline = (self.trend_model.baseline if self.trend_model is not None
                    else SeverityBaseline())
        score = SeverityBaseline.score(lesions)
        bp = baseline.predict_proba(np.array([score]))[0]
        k = int(np.argmax(bp))
        out["baseline"] = {"label": CLASSES[k], "probability": float(bp[k]),
                           "severity_log_change": score, "method": "severity_baseline",
                           "probabilities": dict(zip(CLASSES, map(float, bp)))}
        model = self.trend_model
        if model is None:
            out["trend"] = {**out["baseline"], "note": self.trend_note}
        elif dims != {model.emb_dim}:
            out["trend"] = {**out["baseline"],
                            "note": f"photos lack embeddings of size {model.emb_dim} "
                                    "(no inference engine, or a different model): "
                                    "the severity baseline is used"}
        elif ids != {model.embedding_model}:
            out["trend"] = {**out["baseline"],
                            "note": "the photos were embedded by another classifier than the "
                                    "one the trend model was trained on (model changed, or "
                                    "trend model not retrained): the severity baseline is used"}
        else:
            emb = np.stack([np.frombuffer(p.embedding, dtype=np.float32) for p in used])
            out["trend"] = {**model.predict_series(emb, lesions, days), "method": "trend_model"}
        return out

    # ---- consistency -------------------------------------------------------------------------
    def reconcile(self, grace_s: float = 0.0) -> dict:
        """Remove image files no row references; report rows whose file is missing."""
        with self.Session() as s:
            referenced = set(s.scalars(select(db.Photo.storage_uri)))
        rep = self.store.reconcile(referenced, grace_s=grace_s)
        if rep.removed_orphans or rep.removed_temporaries or rep.missing_files:
            log.warning("track store reconciled: %d orphan files and %d temporaries removed, "
                        "%d rows without file", len(rep.removed_orphans),
                        len(rep.removed_temporaries), len(rep.missing_files))
        return {"removed_orphans": rep.removed_orphans,
                "removed_temporaries": rep.removed_temporaries,
                "missing_files": rep.missing_files}

    def counts(self) -> dict:
        with self.Session() as s:
            return {t: int(s.scalar(select(func.count()).select_from(m)))
                    for t, m in (("subjects", db.Subject), ("series", db.Series),
                                 ("photos", db.Photo))}

    # ---- serialisation -----------------------------------------------------------------------
    @staticmethod
    def _subject_dict(subj: db.Subject, series: list[db.Series]) -> dict:
        return {"id": subj.id, "label": subj.label,
                "created_at": utc(subj.created_at).isoformat(),
                "series": [Tracker._series_dict(x, None) for x in series]}

    @staticmethod
    def _series_dict(ser: db.Series, n_photos: int | None) -> dict:
        d = {"id": ser.id, "subject_id": ser.subject_id, "name": ser.name,
             "body_site": ser.body_site, "kind": ser.kind,
             "created_at": utc(ser.created_at).isoformat()}
        if n_photos is not None:
            d["n_photos"] = n_photos
        return d

    @staticmethod
    def _photo_dict(p: db.Photo) -> dict:
        def load(x):
            return json.loads(x) if x else None

        return {"id": p.id, "series_id": p.series_id,
                "taken_at": utc(p.taken_at).isoformat(),
                "uploaded_at": utc(p.uploaded_at).isoformat() if p.uploaded_at else None,
                "content_sha256": p.content_sha256, "width": p.width, "height": p.height,
                "prediction": load(p.prediction_json), "quality": load(p.quality_json),
                "tone": load(p.tone_json), "lesion": load(p.lesion_json),
                "severity": p.severity, "has_embedding": p.embedding is not None,
                "flagged": p.flagged, "flag_reason": p.flag_reason}


__all__ = ["Tracker"]
