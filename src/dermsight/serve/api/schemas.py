"""Request and response models of the REST API (they make the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from dermsight import DISCLAIMER


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. invalid_image.",
                      examples=["invalid_image"])
    message: str = Field(description="What went wrong, naming the file or field.")
    field: str | None = Field(None, description="The request field at fault, if any.",
                              examples=["file"])


class ErrorBody(BaseModel):
    error: ErrorDetail


class ClassScore(BaseModel):
    label: str = Field(description="Class name, as in GET /v1/model's classes.")
    probability: float = Field(ge=0.0, le=1.0, description="Calibrated probability.")


class Lighting(BaseModel):
    score: float | None = Field(
        None, description="The model's probability that the photo is too poor to use (0-1); "
        "None when the model has no photo-quality head.")
    ok: bool = Field(description="False when the photo should be retaken.")
    checks: list[Any] = Field(default_factory=list, description="The failed quality checks.")
    tips: list[str] = Field(default_factory=list, description="One retake tip per failed check.")


class SkinTone(BaseModel):
    ita: float | None = Field(None, description="Individual Typology Angle in degrees.")
    category: str | None = Field(None, description="Chardon ITA category, e.g. intermediate.")
    bucket: str | None = Field(None, description="light, medium or dark.")
    monk: int | None = Field(None, description="Nearest Monk Skin Tone (1-10).")
    skin_fraction: float | None = Field(
        None, description="Share of the photo measured as clear skin (low: a rough estimate).")


class ImageSize(BaseModel):
    width: int
    height: int


class Prediction(BaseModel):
    top_k: list[ClassScore] = Field(description="The k most probable classes, best first.")
    probabilities: dict[str, float] = Field(description="Every class's probability.")
    conformal_set: list[str] = Field(
        description="Classes that together contain the true one with the stated coverage.")
    conformal_text: str = Field(description="The conformal set in plain words.")
    conformal_coverage: float | None = Field(
        None, description="Target coverage of the conformal set, e.g. 0.9.")
    lighting: Lighting
    skin_tone: SkinTone
    image: ImageSize = Field(description="Size of the image as analysed (EXIF orientation "
                             "applied). No EXIF data is kept or returned.")
    warnings: list[str] = Field(default_factory=list)
    cam_png_base64: str | None = Field(
        None, description="Grad-CAM overlay (PNG, base64) when cam=true was asked for.")
    model_version: str | None = None
    disclaimer: str = Field(DISCLAIMER, description="Always present: not medical advice.")


class BatchItem(BaseModel):
    index: int = Field(description="Position of the file in the request (0-based).")
    prediction: Prediction | None = None
    error: ErrorDetail | None = None


class BatchResponse(BaseModel):
    results: list[BatchItem]
    disclaimer: str = DISCLAIMER


class ModelInfo(BaseModel):
    name: str | None = None
    version: str | None = None
    classes: list[str]
    display_names: dict[str, str] = Field(
        default_factory=dict, description="Readable name of each class.")
    input_size: list[int] | None = Field(None, description="[height, width] of the model input.")
    precision: str | None = None
    metadata_schema: dict[str, Any] = Field(
        description="Optional metadata fields: numeric ranges and categorical values.")
    temperature: float | None = None
    conformal_coverage: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Validation metrics.")
    limits: dict[str, int] = Field(default_factory=dict, description="Request limits.")
    info: dict[str, Any] = Field(default_factory=dict, description="The full model.json.")
    disclaimer: str = DISCLAIMER


class Health(BaseModel):
    status: str = "ok"


class Ready(BaseModel):
    status: str = Field(description="ready or loading")
    model_version: str | None = None
