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
    monk: int | None = Field(
        None, description="Monk Skin Tone (1-10): derived from the learned skin-type estimate "
        "when there is one (not validated: no Monk labels were available), else the nearest "
        "to the measured colour.")
    monk_from_ita: int | None = Field(None, description="Monk tone nearest the measured colour.")
    skin_type: int | None = Field(
        None, description="Estimated Fitzpatrick skin type (1-6), learned from dermatologists' "
        "labels on clinical photos; None with skin_type_reason when there is none.")
    skin_type_expected: float | None = Field(None, description="The estimate before rounding.")
    skin_type_reason: str | None = Field(None, description="Why there is no estimate.")
    skin_fraction: float | None = Field(
        None, description="Share of the photo measured as clear skin (low: a rough estimate).")


class ImageSize(BaseModel):
    width: int
    height: int


class Route(BaseModel):
    photo_type: str = Field(description="dermoscopy, clinical or not_skin.")
    forced: bool = Field(False, description="True when the caller chose the kind "
                         "(photo_type form field) instead of the router.")
    probabilities: dict[str, float] = Field(
        default_factory=dict, description="The router's probability of each kind (empty when "
        "forced, or when a single model is served without a router).")
    looks_like: list[ClassScore] = Field(
        default_factory=list, description="The everyday objects (ImageNet classes) the photo "
        "looks most like to the router's backbone.")


class GroupScore(BaseModel):
    label: str
    probability: float = Field(ge=0.0, le=1.0)


class Prediction(BaseModel):
    photo_type: str | None = Field(
        None, description="The kind of photo: dermoscopy, clinical or not_skin.")
    model: str | None = Field(None, description="The model folder that answered (None when "
                              "the photo was refused).")
    refused: bool = Field(False, description="True when the photo gets no assessment (not a "
                          "photo of skin, or no model for its kind): then top_k, probabilities "
                          "and the conformal set are empty and message says why.")
    message: str | None = Field(None, description="Why the photo was refused, and what to do.")
    route: Route | None = Field(None, description="The router's decision.")
    summary: str | None = Field(
        None, description="The answer at the level the model is sure of, e.g. 'Most likely an "
        "inflammatory, non-cancerous condition (87 %): acne or folliculitis.' (models with a "
        "label hierarchy).")
    groups: dict[str, list[GroupScore]] | None = Field(
        None, description="Probabilities summed over the coarser levels of the diagnosis "
        "(e.g. three_partition_label: malignant / benign / non-neoplastic).")
    top_k: list[ClassScore] = Field(description="The k most probable classes, best first.")
    probabilities: dict[str, float] = Field(description="Every class's probability.")
    conformal_set: list[str] = Field(
        description="Classes that together contain the true one with the stated coverage.")
    conformal_text: str = Field(description="The conformal set in plain words.")
    conformal_coverage: float | None = Field(
        None, description="Target coverage of the conformal set, e.g. 0.9.")
    lighting: Lighting | None = None
    skin_tone: SkinTone | None = None
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


class ServedModel(BaseModel):
    photo_type: str = Field(description="The kind of photo this model answers.")
    folder: str
    name: str | None = None
    version: str | None = None
    classes: list[str]
    display_names: dict[str, str] = Field(default_factory=dict)
    input_size: list[int] | None = None
    precision: str | None = None
    metadata_schema: dict[str, Any] = Field(default_factory=dict)
    conformal_coverage: float | None = None
    metrics: dict[str, Any] = Field(default_factory=dict, description="Validation metrics.")
    hierarchy: dict[str, Any] | None = None
    info: dict[str, Any] = Field(default_factory=dict, description="The full model.json.")


class RouterInfo(BaseModel):
    folder: str
    precision: str | None = None
    photo_types: list[str]
    refuse_threshold: float
    info: dict[str, Any] = Field(default_factory=dict, description="router.json without the "
                                 "ImageNet class list.")


class ModelInfo(BaseModel):
    routed: bool = Field(False, description="True when a photo-type router sends each photo "
                         "to the model for its kind; the top-level fields describe the first "
                         "model (dermoscopy), 'models' every one.")
    models: dict[str, ServedModel] = Field(default_factory=dict,
                                           description="Every served model by photo kind.")
    router: RouterInfo | None = None
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
