"""Patient details for batch predictions: ``dermsight predict --metadata FILE.csv``.

One row per image, matched by a column ``image_id`` (the file name with or without its
extension) or ``file`` (the path as given, or its file name). The other columns are named as the
models' metadata fields (``GET /v1/model`` lists them: ``age``, ``sex``, ``body_site``, …);
unknown columns are ignored with one note. Every value is checked against the models' metadata
schema: a bad one (an age of −5, sex "x", an unknown body site) is named by row and column, that
field is dropped for that image with a warning in its output row, and every other image is
unaffected. A file that cannot be read, has no id column or repeats an id is an error before any
prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dermsight.errors import DataError
from dermsight.io import read_csv

ID_COLUMNS = ("image_id", "file")


@dataclass
class MetadataTable:
    """Metadata and warnings per image key, and notes about the file as a whole."""

    path: str
    rows: dict[str, tuple[dict[str, Any], list[str]]]
    notes: list[str] = field(default_factory=list)

    def lookup(self, path: Path) -> tuple[dict[str, Any] | None, list[str]]:
        """The metadata of image ``path`` and its warnings; no row: None and a warning."""
        for key in (str(path), path.name, path.stem):
            if key in self.rows:
                meta, warnings = self.rows[key]
                return (dict(meta) or None), list(warnings)
        return None, [f"no row for this image in {self.path}: predicted from the photo alone"]


def _check(name: str, value: Any, schema: Mapping[str, Any]) -> tuple[Any, str | None]:
    numeric = schema.get("numeric") or {}
    categorical = schema.get("categorical") or {}
    multi = schema.get("multi_label") or {}
    if name in numeric:
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None, f"must be a number, got {value!r}"
        bounds = numeric[name] or {}
        lo, hi = bounds.get("min"), bounds.get("max")
        if not math.isfinite(number) or (lo is not None and number < lo) \
                or (hi is not None and number > hi):
            return None, f"must be between {lo} and {hi}, got {value!r}"
        return number, None
    text = str(value).strip().lower()
    if name in categorical:
        allowed = [str(a).lower() for a in categorical[name] or []]
        if text not in allowed:
            return None, f"unknown value {value!r} (allowed: {', '.join(allowed)})"
        return text, None
    if name in multi:
        items = [i.strip() for i in text.split("|") if i.strip()]
        bad = [i for i in items if i not in [str(a).lower() for a in multi[name] or []]]
        if bad:
            return None, f"unknown value(s) {bad} (allowed: {', '.join(multi[name])})"
        return "|".join(items), None
    return value, None


def read_metadata_csv(path: str | Path, schema: Mapping[str, Any],
                      fields: tuple[str, ...] | list[str]) -> MetadataTable:
    """Read and check the metadata CSV (see the module docstring).

    Raises:
        DataError: the file cannot be read or parsed, has no ``image_id`` / ``file`` column, or
            lists one image twice (the message names the file, and the row).
    """
    where = str(path)
    frame = read_csv(where, source="--metadata", dtype=str, keep_default_na=False)
    id_col = next((c for c in ID_COLUMNS if c in frame.columns), None)
    if id_col is None:
        raise DataError(f"--metadata: table '{where}' has no id column ({' or '.join(ID_COLUMNS)}"
                        f" naming each image); it has {list(frame.columns)}")
    known = [c for c in frame.columns if c in fields]
    unknown = [c for c in frame.columns if c not in fields and c not in ID_COLUMNS]
    notes = []
    if unknown:
        notes.append(f"{where}: column(s) {unknown} are not metadata fields of the served "
                     f"models ({', '.join(fields) or 'none'}) and are ignored")
    rows: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for r, record in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        key = str(record[id_col]).strip()
        if not key:
            raise DataError(f"--metadata: '{where}' row {r} has an empty {id_col}")
        if key in rows:
            raise DataError(f"--metadata: '{where}' row {r} repeats {id_col} {key!r}")
        meta: dict[str, Any] = {}
        warnings: list[str] = []
        for name in known:
            value = record[name]
            if value is None or not str(value).strip():
                continue
            clean, problem = _check(name, value, schema)
            if problem:
                warnings.append(f"{where} row {r}, column '{name}': {problem}; that field is "
                                "dropped for this image")
            else:
                meta[name] = clean
        rows[key] = (meta, warnings)
        if id_col == "image_id":  # match the name with or without its extension
            stem = Path(key).stem
            rows.setdefault(stem, (meta, warnings))
    return MetadataTable(where, rows, notes)
