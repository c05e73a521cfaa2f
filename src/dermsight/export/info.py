"""model.json: what ``dermsight export`` writes for serving (:class:`dermsight.schemas.ModelJson`),
built from the run (classes, preprocessing, metadata encoder), its ``calibration.json``
(:class:`~dermsight.schemas.Calibration`), its own report and the newest evaluation of its
validation split (:class:`~dermsight.schemas.EvalReport`: metrics and skin-tone groups)."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from dermsight import __version__
from dermsight.errors import ConfigError
from dermsight.schemas import (
    Calibration,
    ConformalSettings,
    EvalReport,
    FittedOn,
    ModelJson,
    ServedConformal,
    ToneGroups,
    TrainReport,
    ValMetrics,
    display_names,
)

#: Plain-language names of the coarser diagnosis levels a source may define (Fitzpatrick17k's).
GROUP_DISPLAY_NAMES = {
    "malignant": "a possibly cancerous (malignant) condition",
    "benign": "a benign (non-cancerous) growth",
    "non-neoplastic": "an inflammatory or other non-cancerous condition",
    "inflammatory": "an inflammatory, non-cancerous condition",
    "benign-dermal": "a benign growth in the deeper skin (dermis)",
    "benign-epidermal": "a benign growth of the outer skin",
    "benign-melanocyte": "a benign mole",
    "genodermatoses": "an inherited skin condition",
    "malignant-epidermal": "a skin cancer or precancer of the outer skin",
    "malignant-melanoma": "a melanoma (a skin cancer)",
    "malignant-dermal": "a cancer in the deeper skin (dermis)",
    "malignant-cutaneous-lymphoma": "a lymphoma of the skin",
}
#: The coarser levels, coarsest first, read from the manifest's ``extra`` column.
HIERARCHY_LEVELS = ("three_partition_label", "nine_partition_label")
#: Plausible ranges of numeric metadata a form may accept (others: the range seen in the data).
NUMERIC_RANGES = {"age": (0.0, 120.0), "diameter_mm": (0.0, 300.0), "fitzpatrick": (1.0, 6.0)}


def metadata_schema(encoder, manifest) -> dict:
    """What a form may send: numeric fields with min / max, categorical and multi-label fields
    with their allowed (lower-case) values."""
    numeric = {}
    for f in encoder.numeric:
        lo, hi = NUMERIC_RANGES.get(f, (None, None))
        if lo is None and manifest is not None and f in manifest:
            vals = np.asarray(manifest[f].astype("float64").dropna())
            if len(vals):
                lo, hi = float(vals.min()), float(vals.max())
        numeric[f] = {"min": lo, "max": hi, "mean": encoder.means_[f]}
    return {"fields": list(encoder.fields), "numeric": numeric,
            "categorical": {f: list(encoder.categories_[f]) for f in encoder.categorical},
            "multi_label": {f: list(encoder.categories_[f]) for f in encoder.multi_label}}


# skin-tone groupings the serving engine can measure on a photo (Prediction.skin_tone keys)
GROUP_BY = {"tone_bucket": "bucket", "ita_category": "category"}
#: a threshold stored as +inf (null): above any LAC or APS score, every class in the set
NO_LIMIT = 2.0


def _threshold(value: float | None) -> float:
    return NO_LIMIT if value is None or not math.isfinite(value) else float(value)


def served_conformal(conformal: ConformalSettings, *, val_metrics: ValMetrics | None = None,
                     fitted_on: FittedOn | None = None) -> ServedConformal | None:
    """model.json's ``conformal`` from calibration.json's (None when it cannot be served: an
    infinite marginal threshold, or groups the engine cannot measure on a photo; export then
    fits its own on the validation split)."""
    if conformal.qhat is None or conformal.mode == "group" and conformal.group_by not in GROUP_BY:
        return None
    out = ServedConformal(method=conformal.method, threshold=conformal.qhat,
                          alpha=conformal.alpha, coverage=conformal.target, mode=conformal.mode,
                          source="calibration.json")
    if fitted_on is not None:
        out.fitted_on = fitted_on.dump()
    if val_metrics is not None:
        out.val_coverage = val_metrics.coverage
        out.val_mean_set_size = val_metrics.mean_set_size
    thresholds = {str(k): _threshold(v) for k, v in conformal.thresholds.items()}
    if conformal.mode == "class":
        out.thresholds = thresholds
    elif conformal.mode == "group":
        # one threshold per skin-tone group, chosen per photo from the tone the engine measures;
        # `threshold` (the marginal one) serves photos whose tone cannot be measured
        out.group_by = conformal.group_by
        out.group_thresholds = thresholds
    return out


def without_metadata(calibration: Calibration | None) -> dict | None:
    """The photo-alone path's own temperature and conformal settings (``dermsight evaluate``
    fits them for models with metadata); the engine uses them for a photo sent without any."""
    path = None if calibration is None else calibration.without_metadata
    if path is None:
        return None
    conformal = served_conformal(path.conformal, val_metrics=path.val_metrics,
                                 fitted_on=calibration.fitted_on)
    return {"temperature": path.temperature,
            "conformal": None if conformal is None else conformal.dump(),
            "val_metrics": None if path.val_metrics is None else path.val_metrics.dump()}


def fit_conformal(probs: np.ndarray, labels: np.ndarray, alpha: float) -> dict:
    """Marginal LAC thresholds fitted at export (the run has no calibration.json)."""
    from dermsight.evaluate.conformal import ConformalClassifier

    cc = ConformalClassifier(method="lac", alpha=alpha).fit(probs, labels)
    rep = cc.report(probs, labels)
    return {"method": "lac", "mode": "marginal", "alpha": alpha, "coverage": 1.0 - alpha,
            # +inf (too few calibration rows: every class in every set) as 2.0, above any
            # LAC or APS score, since JSON has no infinity
            "threshold": _threshold(cc.threshold_),
            "source": "fitted at export on the validation split (temperature as above); "
                      "coverage measured on the same rows is optimistic",
            "n_calibration": int(len(labels)), "val_coverage": rep["coverage"],
            "val_mean_set_size": rep["mean_set_size"]}

def label_hierarchy(manifest, classes) -> dict | None:
    """The coarser levels of the diagnosis (:data:`HIERARCHY_LEVELS`) as ``{"levels": [...],
    "parents": {level: {class: group}}, "display_names": {group: words}}``, from the manifest's
    ``extra`` column; a level is kept only when every class has exactly one group in it. None
    when the source defines no level."""
    if manifest is None or "extra" not in manifest.columns:
        return None
    extra = [json.loads(e) if isinstance(e, str) and e else (e or {})
             for e in manifest["extra"].tolist()]
    labels = manifest["label"].astype(str).tolist()
    parents: dict[str, dict[str, str]] = {}
    for level in HIERARCHY_LEVELS:
        seen: dict[str, set] = {}
        for label, e in zip(labels, extra):
            if isinstance(e, dict) and e.get(level):
                seen.setdefault(label, set()).add(str(e[level]))
        if all(len(seen.get(c, ())) == 1 for c in classes):
            parents[level] = {c: next(iter(seen[c])) for c in classes}
    if not parents:
        return None
    groups = sorted({g for level in parents.values() for g in level.values()})
    return {"levels": list(parents), "parents": parents,
            "display_names": {g: GROUP_DISPLAY_NAMES.get(g, g.replace("-", " "))
                              for g in groups}}


def _label_levels(run_dir: Path) -> dict | None:
    """The run's own figures at each label level (``levels.json`` written by
    ``benchmarks/label_levels.py``), for the model card."""
    report = _read_json(run_dir / "levels.json")
    own = next((v for k, v in report.items() if Path(k).parent.name == run_dir.name), None)
    if not isinstance(own, dict):
        return None
    source = next(k for k, v in report.items() if v is own)
    return {"source": source, "levels": own}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, json.JSONDecodeError):
        return {}


# attributes of an evaluation's fairness section the model card reports, most telling first
TONE_ATTRIBUTES = ("fitzpatrick_group", "tone_bucket", "monk_group", "ita_category")


def skin_tone_groups(run_dir: Path) -> dict | None:
    """Per-skin-tone validation figures for the model card.

    The run's ``groups.json`` when present; otherwise the fairness section of the newest
    ``dermsight evaluate`` report on the validation split (``<run>/eval-*-val/report.json``),
    by the first of :data:`TONE_ATTRIBUTES` it has with at least two groups: every figure of
    its groups, as evaluate reports them (:class:`~dermsight.schemas.ToneGroups`).
    """
    groups = _read_json(run_dir / "groups.json")
    if groups:
        return ToneGroups.model_validate(groups).dump()
    for path, report in _val_reports(run_dir):
        for attribute in TONE_ATTRIBUTES:
            section = report.fairness.get(attribute)
            if section is None or len(section.groups) < 2:
                continue
            return ToneGroups.from_attribute(attribute, section, split=report.split,
                                             source=str(path.relative_to(run_dir))).dump()
    return None


PATH_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "auroc_macro")


def _val_reports(run_dir: Path):
    """``(path, EvalReport)`` of the run's ``dermsight evaluate`` reports on the validation split
    (``<run>/eval-*-val/report.json``), newest first."""
    reports = sorted(run_dir.glob("eval-*-val/report.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(reports):
        yield path, EvalReport.parse(_read_json(path), path)


def _path_figures(metrics: dict, ece, coverage, mean_set_size) -> dict:
    return {**{k: metrics.get(k) for k in PATH_METRICS}, "ece": ece, "coverage": coverage,
            "mean_set_size": mean_set_size}


def metadata_paths(run_dir: Path) -> dict | None:
    """With and without metadata side by side, from the newest ``dermsight evaluate`` report on
    the validation split that scored the photo-alone path: each path's metrics, ECE (after its
    own temperature) and prediction-set coverage. None for a model without metadata."""
    for path, report in _val_reports(run_dir):
        alone = report.without_metadata
        if not alone:
            continue
        return {"source": str(path.relative_to(run_dir)), "split": report.split,
                "with_metadata": _path_figures(report.metrics, report.calibration.get("ece_after"),
                                               report.conformal.get("coverage"),
                                               report.conformal.get("mean_set_size")),
                "without_metadata": _path_figures(alone.get("metrics") or {},
                                                  alone.get("ece_after"), alone.get("coverage"),
                                                  alone.get("mean_set_size"))}
    return None


def train_command(run_dir: Path) -> str | None:
    """The `dermsight train` line of the run's weights.txt, when it has one."""
    try:
        text = (run_dir / "weights.txt").read_text()
    except OSError:
        return None
    return next((ln.strip() for ln in text.splitlines()
                 if ln.strip().startswith("dermsight train")), None)


def build_info(loaded, run_dir: Path, module, files: dict, parity: dict, quant: dict | None,
               conformal: dict | None, calibration: Calibration | None, manifest, opset: int,
               started: float, photo_type_override: str | None = None) -> dict:
    """model.json's fields as a JSON-ready dict (``rebuild`` is added by the caller);
    validated by :class:`~dermsight.schemas.ModelJson` before it is written."""
    report = TrainReport.parse(_read_json(run_dir / "report.json"), run_dir / "report.json")
    groups = skin_tone_groups(run_dir)
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    name = run_dir.name
    quality = None
    if loaded.config is not None:
        quality = loaded.config.prepare.quality.model_dump(mode="json")
    data = {}
    photo_type = synonyms = None
    if loaded.config is not None:
        data = {"source": loaded.config.data.source, "root": loaded.config.data.root,
                "source_options": loaded.config.data.source_options}
        synonyms = [list(g) for g in getattr(loaded.config.data, "label_groups", [])] or None
        try:
            from dermsight.sources import get_source

            photo_type = get_source(loaded.config.data.source).photo_type
        except Exception:  # an unregistered source: the kind must then be given
            photo_type = None
    photo_type = photo_type_override or photo_type
    info = {
        "format": "dermsight-model", "format_version": ModelJson.FORMAT_VERSION,
        "name": name,
        "version": f"{name}-{created[:10]}-{files['fp32']['sha256'][:8]}",
        "dermsight_version": __version__, "created": created,
        "source_run": str(run_dir),
        "task": "skin-condition classification (research use; not medical advice)",
        "photo_type": photo_type,
        "classes": list(loaded.classes),
        "display_names": display_names(list(loaded.classes)),
        "hierarchy": label_hierarchy(manifest, list(loaded.classes)),
        "synonyms": synonyms,
        "input_size": list(loaded.preprocess.input_size),
        "preprocess": loaded.preprocess.to_dict(),
        "metadata": None if loaded.encoder is None else {
            "encoder": loaded.encoder.to_dict(),
            "schema": metadata_schema(loaded.encoder, manifest)},
        "model": {k: v for k, v in loaded.model_spec.items()},
        "inputs": module.input_names, "outputs": module.output_names,
        "opset": opset,
        "cam": {"supported": True, "layer": "last backbone activation (feature_map)",
                "method": "Grad-CAM with in-graph class gradients"},
        "temperature": 1.0 if calibration is None else calibration.temperature,
        "temperature_source": "calibration.json" if calibration is not None
        else "none (run not calibrated by `dermsight evaluate`: T = 1)",
        "conformal": conformal,
        "conformal_coverage": None if not conformal else conformal.get("coverage"),
        "without_metadata": without_metadata(calibration),
        "quality_thresholds": quality,
        "data": data,
        "metrics": report.metrics,
        "metrics_split": report.split,
        "auroc_per_class": report.auroc_per_class,
        "n_train": report.n_train, "n_val": report.n_val,
        "skin_tone_groups": groups or None,
        "label_levels": _label_levels(run_dir),
        "metadata_paths": None if loaded.encoder is None else metadata_paths(run_dir),
        "parity": parity,
        "quantization": quant,
        "files": files,
        "export_seconds": round(time.perf_counter() - started, 1),
    }
    return json.loads(json.dumps(info, default=_jsonable))


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | set):
        return list(value)
    raise ConfigError(f"model.json: cannot serialise {type(value).__name__}")
