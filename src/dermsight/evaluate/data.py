"""The rows ``dermsight evaluate`` scores: any source → the model's classes, skin tone, groups.

:func:`load_scored_set` reads one split of a dataset:

- when the source, root and options are the run's own and its prepared manifest exists, the rows
  come from that manifest (tone and quality already measured by ``prepare``);
- otherwise from the source adapter directly, so a folder ``prepare`` never saw works: every image
  is then read and measured on the fly with ``prepare``'s own code
  (:func:`dermsight.prepare.measure.measure_image`: validation, photo quality, skin tone / ITA /
  Monk estimate); unreadable images are left out and listed.

Dataset labels are mapped onto the model's classes by name (case, spaces, ``_`` and ``-``
ignored); rows whose label has no class are counted in ``unmapped`` and not scored. The group
columns fairness slices by (:data:`GROUP_COLUMNS`) are derived here when the data lacks them
(ITA category and light / medium / dark bucket from ITA, Fitzpatrick 1–2 / 3–4 / 5–6, age bands).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.errors import ConfigError, DataError
from dermsight.evaluate.fairness import ita_groups
from dermsight.features.skintone import fitzpatrick_group

#: Columns :func:`add_group_columns` provides (where the data allows), in report order.
GROUP_COLUMNS = ("tone_bucket", "ita_category", "fitzpatrick_group", "monk", "sex", "age_group")

#: Age bands used when a dataset gives ages but no band.
AGE_BANDS = ((0, 30, "0-29"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"),
             (75, 200, "75+"))


@dataclass
class ScoredSet:
    """One split of a dataset, ready to score. ``frame`` holds the scored rows with ``label``
    mapped onto the model's classes (``dataset_label`` keeps the original)."""

    frame: pd.DataFrame
    source: str
    root: str
    split: str
    origin: str
    label_map: dict[str, str]
    unmapped: dict[str, int] = field(default_factory=dict)
    unlabeled: int = 0
    excluded: list[dict] = field(default_factory=list)
    tone_measured: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"source": self.source, "root": self.root, "split": self.split,
                "origin": self.origin, "n_scored": int(len(self.frame)),
                "label_map": self.label_map, "unmapped_labels": self.unmapped,
                "n_unmapped": int(sum(self.unmapped.values())), "n_unlabeled": self.unlabeled,
                "excluded": self.excluded, "tone_measured_on_the_fly": self.tone_measured,
                "notes": self.notes}


def normalise_label(label) -> str:
    """Comparable form of a class name: lower case, runs of spaces / ``_`` / ``-`` → ``-``."""
    return re.sub(r"[\s_\-]+", "-", str(label).strip().lower()).strip("-")


def map_labels(labels: pd.Series, classes: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """``({dataset label: model class}, {unmapped dataset label: row count})``."""
    by_norm = {normalise_label(c): c for c in classes}
    counts = labels.dropna().astype(str).value_counts()
    mapping, unmapped = {}, {}
    for lab, n in counts.items():
        cls = by_norm.get(normalise_label(lab))
        if cls is None:
            unmapped[str(lab)] = int(n)
        else:
            mapping[str(lab)] = cls
    return mapping, unmapped


def _same_root(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    if "://" in str(a) or "://" in str(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def run_manifest_path(cfg) -> Path | None:
    """The prepared manifest the run trained on, or None when it does not exist (any more)."""
    path = cfg.prepared_dir() / "manifest.parquet"
    return path if path.is_file() else None


def load_scored_set(classes: list[str], *, source: str, root: str | None, split: str = "test",
                    source_options: dict | None = None, run_config=None, workers: int = 1,
                    progress: bool = False) -> ScoredSet:
    """Read split ``split`` of ``source`` at ``root`` and map its labels onto ``classes``.

    ``run_config`` (the run's :class:`~dermsight.config.Config`) lets the run's own prepared
    manifest be reused when source, root and options are the run's. A source that gives no
    split at all is scored whole (said in ``notes``).

    Raises:
        DataError: the split is empty, no image could be read, or no label is a model class.
    """
    from dermsight.manifest import read_manifest
    from dermsight.sources import create_source

    data_cfg = run_config.data if run_config is not None else None
    own = data_cfg is not None and data_cfg.source == source and (
        root is None or _same_root(root, data_cfg.root))
    if own and source_options is None:
        source_options = dict(data_cfg.source_options)
    if own and root is None:
        root = data_cfg.root
    manifest = run_manifest_path(run_config) if own and (
        source_options == dict(data_cfg.source_options)) else None
    notes: list[str] = []
    if manifest is not None:
        frame = read_manifest(manifest.parent)
        origin = f"prepared manifest {manifest}"
    else:
        if root is None:
            raise ConfigError(f"--root is required: source '{source}' is not the one the run "
                              "was trained on")
        frame = create_source(source, root, **(source_options or {})).load()
        origin = f"source '{source}' read directly (not prepared)"

    if frame["split"].notna().any():
        counts = frame["split"].value_counts().to_dict()
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if len(frame) == 0:
            raise DataError(f"split '{split}' of source '{source}' at '{root}' is empty; the "
                            f"data has splits {counts}")
    else:
        notes.append(f"the source gives no split: all {len(frame)} images are scored as "
                     f"'{split}'")

    labelled = frame["label"].notna()
    unlabeled = int((~labelled).sum())
    mapping, unmapped = map_labels(frame["label"], classes)
    if not mapping:
        found = sorted(frame["label"].dropna().astype(str).unique().tolist())
        raise DataError(f"none of the labels of '{source}' split '{split}' ({found[:20]}"
                        f"{' …' if len(found) > 20 else ''}) is one of the model's classes "
                        f"{classes}: nothing to score")
    frame = frame.assign(dataset_label=frame["label"])
    frame["label"] = frame["label"].map(lambda v: mapping.get(str(v)) if pd.notna(v) else None)
    frame = frame[frame["label"].notna()].reset_index(drop=True)
    if "soft_labels" in frame.columns:  # score against the (mapped) hard label
        frame["soft_labels"] = pd.NA
    if unmapped:
        notes.append(f"{sum(unmapped.values())} images with labels that are not model classes "
                     f"are not scored: {unmapped}")
    if unlabeled:
        notes.append(f"{unlabeled} images without a label are not scored")

    excluded: list[dict] = []
    measured = False
    if "ita" not in frame.columns or frame["ita"].isna().all():
        frame, excluded = measure_frame(frame, run_config, workers=workers, progress=progress)
        measured = True
        if len(frame) == 0:
            first = excluded[0] if excluded else {"path": "?", "reason": "?"}
            raise DataError(f"none of the images of '{source}' split '{split}' could be read; "
                            f"first problem: {first['path']}: {first['reason']}")
    return ScoredSet(frame=add_group_columns(frame), source=source, root=str(root), split=split,
                     origin=origin, label_map=mapping, unmapped=unmapped, unlabeled=unlabeled,
                     excluded=excluded, tone_measured=measured, notes=notes)


def measure_frame(frame: pd.DataFrame, run_config=None, *, workers: int = 1,
                  progress: bool = False) -> tuple[pd.DataFrame, list[dict]]:
    """Measure every image of ``frame`` with ``prepare``'s code (quality, skin tone, validation);
    returns the readable rows with the measured columns, and the excluded images."""
    from dermsight.config import PrepareConfig
    from dermsight.prepare.measure import MeasureSettings
    from dermsight.prepare.pipeline import measure_all

    prep = run_config.prepare if run_config is not None else PrepareConfig()
    settings = MeasureSettings(min_side=prep.images.min_side, max_pixels=prep.images.max_pixels,
                               feature_size=prep.images.feature_size, quality=prep.quality)
    masks = [None if pd.isna(m) else m for m in frame["mask_uri"]] \
        if "mask_uri" in frame.columns else [None] * len(frame)
    results = measure_all(frame["image_uri"].tolist(), masks, settings, workers=workers,
                          progress=progress)
    ok = np.array([r["ok"] for r in results], bool)
    excluded = [{"image_id": str(i), "path": str(u), "reason": r["reason"]}
                for i, u, r in zip(frame["image_id"], frame["image_uri"], results) if not r["ok"]]
    keep = frame[ok].reset_index(drop=True)
    skip = {"ok", "thumb", "phash", "tips", "reason"}
    measured = pd.DataFrame([{k: v for k, v in r.items() if k not in skip}
                             for r in results if r["ok"]])
    for col in measured.columns:
        keep[col] = measured[col].to_numpy()
    return keep, excluded


def _age_band(v) -> str | None:
    if pd.isna(v):
        return None
    for lo, hi, name in AGE_BANDS:
        if lo <= float(v) < hi:
            return name
    return None


def add_group_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`GROUP_COLUMNS` filled where the data allows (object dtype,
    None = unknown): ITA category / bucket from ``ita`` when absent, Fitzpatrick 1–2 / 3–4 /
    5–6 from ``fitzpatrick``, age bands from ``age`` when ``age_group`` is empty."""
    out = frame.copy()
    ita = out["ita"] if "ita" in out.columns else pd.Series(np.nan, index=out.index)
    ita = pd.to_numeric(ita, errors="coerce").astype("float64")
    for col, kind in (("ita_category", "category"), ("tone_bucket", "bucket")):
        computed = ita_groups(ita.to_numpy(), kind=kind)
        have = out[col].astype(object) if col in out.columns else pd.Series(None, index=out.index)
        out[col] = [h if isinstance(h, str) and h else c for h, c in zip(have, computed)]
    fitz = out["fitzpatrick"] if "fitzpatrick" in out.columns else pd.Series(pd.NA,
                                                                               index=out.index)
    out["fitzpatrick_group"] = [fitzpatrick_group(v) for v in fitz]
    age = pd.to_numeric(out["age"], errors="coerce") if "age" in out.columns else \
        pd.Series(np.nan, index=out.index)
    given = out["age_group"].astype(object) if "age_group" in out.columns else \
        pd.Series(None, index=out.index)
    out["age_group"] = [g if isinstance(g, str) and g else _age_band(a)
                        for g, a in zip(given, age)]
    for col in ("monk", "sex"):
        if col not in out.columns:
            out[col] = None
        out[col] = [None if pd.isna(v) else (str(int(v)) if col == "monk" else str(v))
                    for v in out[col]]
    return out


def group_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Object array (n,) of ``column`` with missing values as None."""
    if column not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    return np.array([None if pd.isna(v) else v for v in frame[column]], dtype=object)
