"""Request and response bodies of the tracking routes (:mod:`dermsight.serve.api.routers.track`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class SubjectIn(BaseModel):
    label: str = Field("", max_length=200,
                       description="your own reference; do not put names or identifiers here")


class SeriesIn(BaseModel):
    name: str = Field("", max_length=200)
    body_site: str | None = Field(None, max_length=100)
    kind: str = Field("lesion", description="lesion | face | body_site ('face' crops to the face)")


class SeriesOut(BaseModel):
    id: str
    subject_id: str
    name: str
    body_site: str | None
    kind: str
    created_at: str
    n_photos: int | None = None


class SubjectOut(BaseModel):
    id: str
    label: str
    created_at: str
    series: list[SeriesOut]


class PhotoOut(BaseModel):
    id: str
    series_id: str
    taken_at: str
    uploaded_at: str | None
    content_sha256: str
    width: int
    height: int
    prediction: dict[str, Any] | None
    quality: dict[str, Any] | None
    tone: dict[str, Any] | None
    lesion: dict[str, Any] | None
    severity: float | None
    has_embedding: bool
    flagged: bool
    flag_reason: str | None


class TimelineOut(SeriesOut):
    photos: list[PhotoOut]
    disclaimer: str


class TrendResult(BaseModel):
    label: str
    probability: float
    probabilities: dict[str, float]
    method: str
    note: str | None = None
    severity_log_change: float | None = None


class TrendOut(BaseModel):
    series_id: str
    n_photos: int
    n_used: int
    excluded: list[dict[str, Any]]
    classes: list[str]
    trend: TrendResult | None
    baseline: TrendResult | None
    mismatches: list[dict[str, Any]] = Field(
        default_factory=list, description="consecutive photos that do not look like the same "
        "spot (then there is no trend): their ids, capture times and the compared measures")
    message: str | None = None
    disclaimer: str


class DeletedOut(BaseModel):
    subject_id: str
    series_deleted: int
    photos_deleted: int
    files_deleted: int
