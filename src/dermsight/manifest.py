"""The manifest: one table, one row per image, that every source produces and every stage reads.

Columns are declared once here (name → pandas dtype → meaning); ``conform`` brings a source's
frame to this schema, checks value ranges and raises :class:`DataError` naming the column.
List-valued fields (``symptoms``, ``textures``, ``tips``) are ``|``-joined strings; ``soft_labels``
and ``extra`` are JSON objects stored as strings so the Parquet file reads anywhere.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.errors import DataError
from dermsight.io import atomic_open

LIST_SEP = "|"

# name: (dtype, description). Order here is the column order on disk.
CORE_COLUMNS: dict[str, tuple[str, str]] = {
    "image_id": ("string", "the dataset's own image id (unique within the manifest)"),
    "image_uri": ("string", "local path or fsspec URL of the image file"),
    "case_id": ("string", "case / contribution the image belongs to (SCIN case, HAM lesion, ...)"),
    "group_id": ("string", "unit no split may cut (patient, lesion or case; merged over "
                 "duplicates)"),
    "label": ("string", "diagnosis label (argmax of soft_labels when only soft labels exist)"),
    "soft_labels": ("string", "JSON {class: weight} summing to 1, or missing"),
    "split": ("string", "train | val | test (set by prepare, or kept from an official split)"),
    "source": ("string", "registered source name that produced the row"),
    "mask_uri": ("string", "lesion mask path/URL when the dataset ships one"),
}

METADATA_COLUMNS: dict[str, tuple[str, str]] = {
    "age": ("Float32", "age in years"),
    "age_group": ("string", "age band when only a band is known, e.g. '18-29'"),
    "sex": ("string", "female | male | other"),
    "body_site": ("string", "anatomical site, lower-case snake_case"),
    "symptoms": ("string", "'|'-joined symptom names (itch, bleed, grew, pain, ...)"),
    "textures": ("string", "'|'-joined texture names (SCIN)"),
    "duration": ("string", "how long the condition has lasted (SCIN categories, lower-case)"),
    "fitzpatrick": ("Int8", "Fitzpatrick skin type 1-6 (dermatologist label where available)"),
    "fitzpatrick_self": ("Int8", "self-reported Fitzpatrick type 1-6"),
    "monk": ("Int8", "Monk skin tone 1-10 (rounded mean of the available graders)"),
    "diameter_mm": ("Float32", "largest lesion diameter in mm"),
    "shot_type": ("string", "close_up | at_an_angle | at_distance"),
    "extra": ("string", "JSON object of any further source-specific fields"),
}

# Columns `prepare` adds. Sources never set these.
PREPARE_COLUMNS: dict[str, tuple[str, str]] = {
    "width": ("Int32", "decoded image width in pixels"),
    "height": ("Int32", "decoded image height in pixels"),
    "phash": ("string", "64-bit perceptual hash, hex"),
    "duplicate_cluster": ("string", "id of the near-duplicate cluster (missing when unique)"),
    "ita": ("Float32", "individual typology angle in degrees, median over skin pixels"),
    "ita_category": ("string", "very_light | light | intermediate | tan | brown | dark (Chardon)"),
    "tone_bucket": ("string", "light | medium | dark"),
    "monk_estimate": ("Int8", "nearest Monk tone 1-10 to the median skin colour"),
    "skin_fraction": ("Float32", "share of pixels in the skin mask"),
    "q_brightness_mean": ("Float32", "mean luminance 0-1"),
    "q_brightness_std": ("Float32", "luminance standard deviation"),
    "q_underexposed": ("Float32", "share of near-black pixels"),
    "q_overexposed": ("Float32", "share of near-white pixels"),
    "q_contrast": ("Float32", "RMS / percentile contrast"),
    "q_highlight": ("Float32", "99th-percentile luminance 0-1 (what the dark check reads)"),
    "q_shadow": ("Float32", "share of the frame in hard shadow, against the skin's own level"),
    "q_sharpness": ("Float32", "noise-compensated fine-detail sharpness, worst of 4 directions "
                    "(~0 blurred, clean photos 0.2-1)"),
    "q_laplacian_var": ("Float32", "variance of the Laplacian of the luma at the working size"),
    "q_glare": ("Float32", "share of the frame covered by the largest glare patch"),
    "q_color_cast": ("Float32", "Mahalanobis distance of the grey-world a*b* from typical "
                     "well-lit photos (>3 strong cast)"),
    "q_subject_fraction": ("Float32", "share of the frame the subject fills"),
    "lighting_ok": ("boolean", "True when the photo passes every quality check"),
    "tips": ("string", "'|'-joined retake tips a person understands"),
}

SOURCE_COLUMNS = {**CORE_COLUMNS, **METADATA_COLUMNS}
ALL_COLUMNS = {**CORE_COLUMNS, **METADATA_COLUMNS, **PREPARE_COLUMNS}
SPLITS = ("train", "val", "test")

_RANGES = {"fitzpatrick": (1, 6), "fitzpatrick_self": (1, 6), "monk": (1, 10),
           "monk_estimate": (1, 10), "age": (0, 120)}


def _cast(series: pd.Series, dtype: str, column: str) -> pd.Series:
    try:
        if dtype in ("Int8", "Int32"):
            num = pd.to_numeric(series, errors="raise")
            if num.dropna().mod(1).ne(0).any():
                bad = num[num.notna() & num.mod(1).ne(0)].iloc[0]
                raise ValueError(f"non-integer value {bad!r}")
            return num.round().astype(dtype)
        if dtype == "Float32":
            return pd.to_numeric(series, errors="raise").astype(dtype)
        if dtype == "boolean":
            return series.astype("boolean")
        out = series.astype("string")
        return out.mask(out.str.strip().eq(""))
    except (ValueError, TypeError) as exc:
        raise DataError(f"manifest column '{column}' cannot be read as {dtype}: {exc}") from None


def empty_manifest(columns: dict[str, tuple[str, str]] = SOURCE_COLUMNS) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, (t, _) in columns.items()})


def conform(df: pd.DataFrame, *, source: str, columns: dict | None = None) -> pd.DataFrame:
    """Return ``df`` with exactly the schema's columns, typed and range-checked.

    Unknown columns are an error (put source-specific fields in ``extra``).
    """
    columns = columns or SOURCE_COLUMNS
    unknown = [c for c in df.columns if c not in columns]
    if unknown:
        raise DataError(f"{source}: columns {unknown} are not in the manifest schema")
    n = len(df)
    out = {}
    for col, (dtype, _) in columns.items():
        if col in df.columns:
            out[col] = _cast(df[col].reset_index(drop=True), dtype, col)
        else:
            out[col] = pd.Series(pd.array([pd.NA] * n, dtype=dtype))
    frame = pd.DataFrame(out)
    frame["source"] = frame["source"].fillna(source)
    validate(frame, source=source)
    return frame


def validate(frame: pd.DataFrame, *, source: str = "manifest") -> None:
    """Check the invariants every stage relies on; raise DataError naming the column."""
    for col in ("image_id", "image_uri", "group_id"):
        if col in frame and frame[col].isna().any():
            row = int(np.flatnonzero(frame[col].isna().to_numpy())[0])
            raise DataError(f"{source}: column '{col}' is empty in row {row}")
    if "image_id" in frame:
        dup = frame["image_id"][frame["image_id"].duplicated()]
        if len(dup):
            raise DataError(f"{source}: column 'image_id' repeats {dup.iloc[0]!r}")
    for col, (lo, hi) in _RANGES.items():
        if col in frame:
            vals = frame[col].dropna()
            bad = vals[(vals < lo) | (vals > hi)]
            if len(bad):
                raise DataError(f"{source}: column '{col}' has {bad.iloc[0]} outside {lo}-{hi}")
    if "split" in frame:
        bad = set(frame["split"].dropna()) - set(SPLITS)
        if bad:
            raise DataError(f"{source}: column 'split' has unknown value(s) {sorted(bad)}")
    if "soft_labels" in frame:
        for i, text in frame["soft_labels"].dropna().items():
            parse_soft_labels(text, where=f"{source}: column 'soft_labels' row {i}")


def parse_soft_labels(text: str | None, *, where: str = "soft_labels") -> dict[str, float] | None:
    """Parse a ``soft_labels`` cell; check weights are non-negative and sum to 1 (±1e-3)."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or text is pd.NA:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc})") from None
    if not isinstance(value, dict) or not value:
        raise DataError(f"{where}: expected a non-empty JSON object, got {text!r}")
    weights = {str(k): float(v) for k, v in value.items()}
    if any(w < 0 for w in weights.values()) or abs(sum(weights.values()) - 1) > 1e-3:
        raise DataError(f"{where}: weights must be >= 0 and sum to 1, got {weights}")
    return weights


def dump_soft_labels(weights: dict[str, float]) -> str:
    """Normalise ``weights`` to sum to 1 and serialise them (keys sorted, 4 decimals)."""
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError(f"soft label weights sum to {total}")
    return json.dumps({k: round(v / total, 4) for k, v in sorted(weights.items())})


def join_list(items) -> str | None:
    items = [str(i) for i in items if i is not None and str(i) != ""]
    return LIST_SEP.join(items) if items else None


def split_list(text) -> list[str]:
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return []
    return [t for t in str(text).split(LIST_SEP) if t]


def write_manifest(frame: pd.DataFrame, path: str | Path) -> None:
    """Write the manifest as Parquet, atomically."""
    with atomic_open(path, "wb") as fh:
        frame.to_parquet(fh, index=False)


def read_manifest(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.parquet"
    if not path.exists():
        raise DataError(f"manifest '{path}' not found (run `dermsight prepare` first)")
    frame = pd.read_parquet(path)
    missing = [c for c in CORE_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"manifest '{path}' lacks column(s) {missing}")
    return frame


def schema_markdown() -> str:
    """The schema as a Markdown table (the README's copy is generated from this)."""
    lines = ["| column | type | set by | meaning |", "|---|---|---|---|"]
    for group, cols in (("source", CORE_COLUMNS), ("source", METADATA_COLUMNS),
                        ("prepare", PREPARE_COLUMNS)):
        for name, (dtype, desc) in cols.items():
            lines.append(f"| `{name}` | {dtype} | {group} | {desc} |")
    return "\n".join(lines)
