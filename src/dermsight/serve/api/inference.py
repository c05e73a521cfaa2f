"""What the prediction routers do between parsing a request and answering it.

Uploads are checked (content type, size), metadata form fields are validated against the
model's metadata schema (so an error names the field), and images are decoded and predicted in
the inference pool. Only pixels leave the decoder: EXIF (GPS included) is applied for
orientation by :func:`~dermsight.imaging.decode_rgb` and then dropped; nothing here
logs or returns it.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import UploadFile

from dermsight.errors import ConfigError, DataError
from dermsight.serve.api import schemas
from dermsight.serve.api.errors import ApiError, image_error
from dermsight.serve.api.settings import ServeSettings

if TYPE_CHECKING:
    from dermsight.serve.engine import Engine

#: Form fields that are request options, not patient metadata.
RESERVED_FIELDS = frozenset({"file", "files", "cam", "top_k", "metadata", "photo_type"})

#: The ``metadata`` JSON field: at most this many bytes and this much nesting (an object, or a
#: list of objects whose values may be lists: 3 deep, and one to spare). Checked before parsing.
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 4

#: Content types accepted for an image part (browsers send image/*; some clients send
#: application/octet-stream; the bytes are sniffed by the decoder either way).
_GENERIC_TYPES = ("application/octet-stream", "")


def check_photo_type(value: str | None) -> str | None:
    """The ``photo_type`` form field: None or "auto" lets the router decide."""
    from dermsight.phototype import check_photo_type as check

    try:
        return check(value, where="photo_type")
    except ValueError as exc:
        raise ApiError(422, "invalid_option", str(exc), "photo_type") from None


def check_top_k(top_k: int, engine: Engine, settings: ServeSettings) -> int:
    highest = min(settings.max_top_k, getattr(engine, "max_classes", None)
                  or len(engine.classes))
    if not 1 <= top_k <= highest:
        raise ApiError(422, "out_of_range",
                       f"top_k must be between 1 and {highest}, got {top_k}", "top_k")
    return top_k


async def read_upload(upload: UploadFile, settings: ServeSettings, field: str) -> bytes:
    """The bytes of one uploaded image, after the content-type and size checks."""
    ctype = (upload.content_type or "").split(";")[0].strip().lower()
    if not (ctype.startswith("image/") or ctype in _GENERIC_TYPES):
        raise ApiError(415, "unsupported_media_type",
                       f"{field} must be an image (image/jpeg, image/png, ...), "
                       f"got content type {ctype!r}", field)
    if upload.size is not None and upload.size > settings.max_upload_bytes:
        raise ApiError(413, "payload_too_large",
                       f"{field} is {upload.size} bytes, over the limit of "
                       f"{settings.max_upload_bytes} bytes", field)
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "payload_too_large",
                       f"{field} is over the limit of {settings.max_upload_bytes} bytes", field)
    if not data:
        raise ApiError(422, "empty_file", f"{field} is empty (0 bytes)", field)
    return data


def _coerce(name: str, value: Any, schema: Mapping[str, Any]) -> Any:
    numeric = schema.get("numeric", {}) or {}
    categorical = schema.get("categorical", {}) or {}
    if name in numeric:
        if isinstance(value, bool):  # float(True) is 1.0: a boolean is not a number here
            raise ApiError(422, "invalid_metadata",
                           f"metadata field '{name}' must be a number, got {value!r}", name)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ApiError(422, "invalid_metadata",
                           f"metadata field '{name}' must be a number, got {value!r}",
                           name) from None
        if not math.isfinite(number):
            raise ApiError(422, "invalid_metadata",
                           f"metadata field '{name}' must be a finite number", name)
        bounds = numeric[name] or {}
        lo, hi = bounds.get("min"), bounds.get("max")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ApiError(422, "invalid_metadata",
                           f"metadata field '{name}' must be between {lo} and {hi}, "
                           f"got {number:g}", name)
        return number
    if name not in categorical:  # multi-label or schema-less fields: the engine checks them
        return value
    allowed = [str(a).lower() for a in categorical[name] or []]
    text = str(value).strip()
    if allowed and text.lower() not in allowed:
        raise ApiError(422, "invalid_metadata",
                       f"metadata field '{name}' has unknown value {text!r}; allowed: "
                       f"{', '.join(map(str, allowed))}", name)
    return text


def schema_fields(schema: Mapping[str, Any], extra: Iterable[str] = ()) -> set[str]:
    """Every metadata field name a model accepts."""
    names = set(extra)
    for kind in ("numeric", "categorical", "multi_label"):
        names |= set(schema.get(kind) or {})
    return names


def parse_metadata(items: Iterable[tuple[str, Any]], schema: Mapping[str, Any],
                   extra_fields: Iterable[str] = ()) -> dict[str, Any] | None:
    """Validate metadata ``(name, value)`` pairs against the model's metadata schema.

    Empty values mean "not given" (the model handles missing fields). Unknown names, unknown
    categorical values and numbers out of range raise an ApiError naming the field.
    """
    known = schema_fields(schema, extra_fields)
    out: dict[str, Any] = {}
    for name, value in items:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if name not in known:
            accepted = ", ".join(sorted(known)) or "none"
            raise ApiError(422, "invalid_metadata",
                           f"unknown metadata field '{name}'; this model accepts: {accepted}",
                           name)
        out[name] = _coerce(name, value, schema)
    return out or None


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` / ``{`` in JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_metadata_json(text: str) -> Any:
    """The ``metadata`` form field parsed, after the size and nesting limits (422 naming
    ``metadata`` otherwise: a deeply nested document would exhaust the parser's recursion)."""
    size = len(text.encode("utf-8"))
    if size > MAX_METADATA_BYTES:
        raise ApiError(422, "invalid_metadata",
                       f"metadata is {size} bytes, over the limit of {MAX_METADATA_BYTES}",
                       "metadata")
    depth = json_depth(text)
    if depth > MAX_METADATA_DEPTH:
        raise ApiError(422, "invalid_metadata",
                       f"metadata is nested {depth} levels deep, over the limit of "
                       f"{MAX_METADATA_DEPTH} (an object, or a list of one object per file)",
                       "metadata")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ApiError(422, "invalid_metadata",
                       f"metadata must be a JSON object: {reason}", "metadata") from None


def metadata_from_form(form: Mapping[str, Any], metadata_json: str | None,
                       schema: Mapping[str, Any], n_files: int,
                       extra_fields: Iterable[str] = ()) -> list[dict | None]:
    """Per-file metadata from the ``metadata`` JSON field (an object for every file, or a list
    with one object per file) and from plain form fields (applied to every file)."""
    per_file: list[list[tuple[str, Any]]] = [[] for _ in range(n_files)]
    if metadata_json:
        parsed = parse_metadata_json(metadata_json)
        if isinstance(parsed, dict):
            parsed = [parsed] * n_files
        if not (isinstance(parsed, list) and len(parsed) == n_files
                and all(isinstance(p, dict) for p in parsed)):
            raise ApiError(422, "invalid_metadata",
                           "metadata must be a JSON object, or a list of one object per file",
                           "metadata")
        for i, obj in enumerate(parsed):
            per_file[i].extend(obj.items())
    extras = []
    for key in dict.fromkeys(form.keys()):
        values = [v for v in form.getlist(key) if isinstance(v, str)] \
            if hasattr(form, "getlist") else [form[key]]
        if key in RESERVED_FIELDS or not values:
            continue
        # a repeated field (a multi-label field sent as several values) becomes "a|b"
        extras.append((key, values[0] if len(values) == 1 else "|".join(values)))
    extra_fields = list(extra_fields)
    return [parse_metadata([*extras, *items], schema, extra_fields) for items in per_file]


def decode(data: bytes, settings: ServeSettings, field: str) -> np.ndarray:
    from dermsight.imaging import decode_rgb

    try:
        return decode_rgb(data, max_pixels=settings.max_pixels, name=field)
    except DataError as exc:
        raise image_error(exc, field) from None


def _to_schema(pred: Any, rgb: np.ndarray, overlay: bytes | None,
               version: str | None) -> schemas.Prediction:
    lighting = dict(pred.lighting or {})
    tone = dict(pred.skin_tone or {})
    route = getattr(pred, "route", None)
    groups = getattr(pred, "groups", None)
    answer = dict(
        photo_type=getattr(pred, "photo_type", None), model=getattr(pred, "model", None),
        refused=bool(getattr(pred, "refused", False)), message=getattr(pred, "message", None),
        route=None if route is None else schemas.Route(
            photo_type=route["photo_type"], forced=bool(route.get("forced")),
            probabilities=route.get("probabilities") or {},
            looks_like=[schemas.ClassScore(**c) for c in route.get("looks_like") or []]),
        summary=getattr(pred, "summary", None),
        groups=None if groups is None else {
            level: [schemas.GroupScore(label=g, probability=min(1.0, float(p)))
                    for g, p in ranked] for level, ranked in groups.items()})
    if answer["refused"]:
        return schemas.Prediction(
            **answer, top_k=[], probabilities={}, conformal_set=[], conformal_text="",
            image=schemas.ImageSize(width=int(rgb.shape[1]), height=int(rgb.shape[0])),
            warnings=[str(w) for w in (pred.warnings or [])], model_version=None)
    return schemas.Prediction(
        **answer,
        top_k=[schemas.ClassScore(label=str(c), probability=float(p)) for c, p in pred.top_k],
        probabilities={str(k): float(v) for k, v in pred.probabilities.items()},
        conformal_set=[str(c) for c in pred.conformal_set],
        conformal_text=str(pred.conformal_text),
        conformal_coverage=pred.conformal_coverage,
        lighting=schemas.Lighting(
            score=_finite(lighting.get("score")), ok=bool(lighting.get("ok", True)),
            checks=list(lighting.get("checks", [])), tips=list(lighting.get("tips", []))),
        skin_tone=schemas.SkinTone(
            ita=_finite(tone.get("ita")), category=tone.get("category"),
            bucket=tone.get("bucket"), monk=tone.get("monk"),
            monk_from_ita=tone.get("monk_from_ita"), skin_type=tone.get("skin_type"),
            skin_type_expected=_finite(tone.get("skin_type_expected")),
            skin_type_reason=tone.get("skin_type_reason"),
            skin_fraction=_finite(tone.get("skin_fraction"))),
        image=schemas.ImageSize(width=int(rgb.shape[1]), height=int(rgb.shape[0])),
        warnings=[str(w) for w in (pred.warnings or [])],
        cam_png_base64=base64.b64encode(overlay).decode("ascii") if overlay else None,
        model_version=version,
    )


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def predict_images(engine: Engine, images: list[np.ndarray], metadata: list[dict | None],
                   *, top_k: int, cam: bool,
                   photo_type: str | None = None) -> list[schemas.Prediction]:
    """Run the engine (or the routed :class:`~dermsight.serve.served.ServedModels`) on decoded
    images (call it in the inference pool: it blocks); ``photo_type`` forces the kind."""
    from dermsight.serve.overlay import cam_overlay_png

    kwargs = {"photo_types": photo_type} if hasattr(engine, "route") else {}
    try:
        preds = engine.predict(images, metadata, top_k=top_k, cam=cam, **kwargs)
    except DataError as exc:  # metadata the engine rejects (after our own checks)
        raise ApiError(422, "invalid_metadata", str(exc), "metadata") from None
    except ConfigError as exc:  # e.g. a model exported without Grad-CAM outputs
        raise ApiError(422, "unsupported", str(exc), "cam" if cam else None) from None
    out = []
    for rgb, pred in zip(images, preds):
        overlay = cam_overlay_png(rgb, pred.cam) if cam and pred.cam is not None else None
        version = engine.version_of(pred) if hasattr(engine, "version_of") \
            else engine.info.get("version")
        out.append(_to_schema(pred, rgb, overlay, None if version is None else str(version)))
    return out


def decode_and_predict(engine: Engine, settings: ServeSettings, data: bytes, field: str,
                       metadata: dict | None, *, top_k: int, cam: bool,
                       photo_type: str | None = None) -> schemas.Prediction:
    rgb = decode(data, settings, field)
    return predict_images(engine, [rgb], [metadata], top_k=top_k, cam=cam,
                          photo_type=photo_type)[0]
