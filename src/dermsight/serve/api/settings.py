"""Settings of the REST API and web app: one pydantic model, also readable from the environment.

``dermsight serve`` builds a :class:`ServeSettings` from its options and hands it to the worker
processes as JSON in ``DERMSIGHT_SERVE_SETTINGS`` (uvicorn's ``--workers`` needs an import string,
so each worker rebuilds the app with :func:`dermsight.serve.api.app.create_app_from_env`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dermsight.errors import ConfigError
from dermsight.imaging import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES

ENV_VAR = "DERMSIGHT_SERVE_SETTINGS"

#: Room for the multipart framing and the small form fields (top_k, metadata, ...).
FORM_OVERHEAD = 64 * 1024


class ServeSettings(BaseModel):
    """Limits and options of one API process. Every limit bounds memory or CPU per request."""

    model_config = ConfigDict(extra="forbid")

    model_dir: Path | None = Field(
        None, description="Exported model folder; None = the default model under models/.")
    precision: str = Field("auto", description="Engine precision: auto, int8 or fp32.")
    threads: int | None = Field(
        None, ge=1, description="onnxruntime intra-op threads per inference (None = its default).")
    max_upload_bytes: int = Field(
        DEFAULT_MAX_UPLOAD_BYTES, ge=1, description="Largest accepted image file, in bytes "
        "(predictions and tracking uploads).")
    max_request_bytes: int | None = Field(
        None, ge=1, description="Largest accepted request body on any route; None = "
        "max_upload_bytes × max_batch_size + 64 KiB (the batch route's limit). Each route has "
        "its own, smaller limit too (see request_limits); all are checked on Content-Length "
        "and again while the body streams.")
    max_json_kb: int = Field(
        64, ge=1, description="Largest JSON (or other non-upload) request body, in KiB.")
    max_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Largest decoded image (width × height): bomb "
        "guard.")
    pixel_budget: int | None = Field(
        None, ge=1, description="Decoded pixels in flight at once across the process "
        "(predictions, batches and tracking uploads together); a request that would go over "
        "it gets 503 'busy' with Retry-After. None = 2 × max_pixels. At least max_pixels.")
    max_concurrency: int = Field(
        2, ge=1, description="Inferences run at once (threads of the inference pool).")
    max_pending: int = Field(
        64, ge=1, description="Requests waiting for an inference slot before 503 'busy'.")
    max_batch_size: int = Field(8, ge=1, description="Most files in one /v1/predict/batch call.")
    max_top_k: int = Field(10, ge=1, description="Largest top_k a client may ask for.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS; empty = CORS off.")
    web: bool = Field(True, description="Serve the web app at '/'.")
    track_database_url: str | None = Field(
        None, description="When set, mount the tracking routes on this database "
        "(dermsight.serve.api.routers.track.build_router(url)); see "
        "dermsight.serve.api.app.create_app.")

    @model_validator(mode="after")
    def _check(self) -> ServeSettings:
        if self.precision not in ("auto", "int8", "fp32"):
            raise ValueError(f"precision must be auto, int8 or fp32, got {self.precision!r}")
        if self.pixel_budget is not None and self.pixel_budget < self.max_pixels:
            raise ValueError(f"pixel_budget ({self.pixel_budget}) must be at least max_pixels "
                             f"({self.max_pixels}): the largest accepted image must fit")
        return self

    @property
    def request_limit(self) -> int:
        """The body size limit actually enforced."""
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return self.max_upload_bytes * self.max_batch_size + FORM_OVERHEAD

    @property
    def upload_limit(self) -> int:
        """The body limit of a route that takes one image (the image and a few form fields)."""
        return min(self.request_limit, self.max_upload_bytes + FORM_OVERHEAD)

    @property
    def json_limit(self) -> int:
        """The body limit of every route that takes no image (JSON bodies)."""
        return min(self.request_limit, self.max_json_kb * 1024)

    @property
    def pixels_in_flight(self) -> int:
        """The pixel budget actually enforced."""
        return self.pixel_budget if self.pixel_budget is not None else 2 * self.max_pixels

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        """Settings from ``DERMSIGHT_SERVE_SETTINGS`` (JSON); defaults when it is unset."""
        raw = (environ if environ is not None else os.environ).get(ENV_VAR)
        if not raw:
            return cls()
        try:
            return cls.model_validate(json.loads(raw))
        except (json.JSONDecodeError, ValidationError) as exc:
            raise ConfigError(f"{ENV_VAR} is not valid serve settings: {exc}") from exc
