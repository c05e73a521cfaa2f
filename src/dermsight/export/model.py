"""Write the model folder (see :mod:`dermsight.export`)."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dermsight import __version__
from dermsight.errors import ConfigError, DataError
from dermsight.export.graph import DEFAULT_OPSET, export_onnx
from dermsight.io import atomic_write_text, sha256_file, staging_dir

log = logging.getLogger(__name__)

FP32, INT8, MODEL_JSON, CARD = "model.onnx", "model.int8.onnx", "model.json", "MODEL_CARD.md"
FORMAT_VERSION = 1
#: Plain-language names of well-known class codes (HAM10000's).
DISPLAY_NAMES = {
    "akiec": "actinic keratosis / intraepithelial carcinoma",
    "bcc": "basal cell carcinoma",
    "bkl": "benign keratosis",
    "df": "dermatofibroma",
    "mel": "melanoma",
    "nv": "melanocytic nevus (mole)",
    "vasc": "vascular lesion",
}
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
CONFORMAL_ALPHA = 0.1


@dataclass
class ExportResult:
    out: Path
    info: dict
    files: dict[str, Path]


# ---- data -------------------------------------------------------------------------------------
def _manifest(loaded) -> Any:
    """The run's prepared manifest, or None (with a log line) when it is not on this machine."""
    from dermsight.manifest import read_manifest
    from dermsight.train.run import prepared_dir

    if loaded.config is None:
        return None
    folder = prepared_dir(loaded.config)
    if not (folder / "manifest.parquet").is_file():
        log.warning("no prepared manifest at %s: parity and calibration are skipped", folder)
        return None
    return read_manifest(folder)


def _split_arrays(loaded, manifest, split: str, n: int | None, seed: int = 0
                  ) -> dict[str, np.ndarray] | None:
    """Eval-mode model inputs of up to ``n`` rows (seeded sample) of ``split``: image, meta,
    has_meta, label (the training dataset's own loading, without augmentation)."""
    from dermsight.data.dataset import ManifestDataset

    frame = manifest[manifest["split"] == split]
    if len(frame) == 0:
        return None
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    ds = ManifestDataset(frame.reset_index(drop=True), loaded.classes, loaded.preprocess,
                         encoder=loaded.encoder, name=f"split '{split}'")
    items = [ds[i] for i in range(len(ds))]
    out = {"image": np.stack([it["image"].numpy() for it in items]),
           "label": np.array([int(it["label"]) for it in items])}
    if loaded.encoder is not None:
        out["meta"] = np.stack([it["meta"].numpy() for it in items]).astype(np.float32)
        out["has_meta"] = np.ones(len(items), np.float32)
    return out


def _feeds(arrays: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(arrays[k][sl]) for k in ("image", "meta", "has_meta")
            if k in arrays}


def _onnx_logits(path: Path, arrays: dict[str, np.ndarray], batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    n = len(arrays["image"])
    return np.concatenate([session.run(["diagnosis_logits"], _feeds(arrays, slice(s, s + batch)))[0]
                           for s in range(0, n, batch)])


def _torch_logits(model, arrays: dict[str, np.ndarray], *, with_meta: bool, batch: int = 32
                  ) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(arrays["image"]), batch):
            image = torch.from_numpy(arrays["image"][s:s + batch])
            meta = torch.from_numpy(arrays["meta"][s:s + batch]) \
                if with_meta and "meta" in arrays else None
            out.append(model(image, meta)["diagnosis"].numpy())
    return np.concatenate(out)


def _softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z.astype(np.float64) / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


# ---- model.json parts -------------------------------------------------------------------------
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


def _conformal_from_run(calibration: dict) -> dict | None:
    """The conformal part of the run's calibration.json, read defensively (None if unusable)."""
    conf = calibration.get("conformal")
    if not isinstance(conf, dict):
        return None
    thr = next((conf[k] for k in ("threshold", "qhat", "quantile", "threshold_")
                if isinstance(conf.get(k), int | float)), None)
    if thr is None:
        return None
    alpha = conf.get("alpha")
    coverage = conf.get("coverage_target", conf.get("target"))
    if coverage is None and isinstance(alpha, int | float):
        coverage = 1.0 - float(alpha)
    out = {"method": str(conf.get("method", "lac")).lower(), "threshold": float(thr),
           "alpha": None if alpha is None else float(alpha),
           "coverage": None if coverage is None else float(coverage),
           "mode": str(conf.get("mode", "marginal")), "source": "calibration.json"}
    fitted = calibration.get("fitted_on")
    if isinstance(fitted, dict):
        out["fitted_on"] = fitted
    val = calibration.get("val_metrics")
    if isinstance(val, dict):
        out["val_coverage"] = val.get("coverage")
        out["val_mean_set_size"] = val.get("mean_set_size")
    per_class = conf.get("thresholds")
    if out["mode"] == "class" and isinstance(per_class, dict):
        out["thresholds"] = {str(k): float(v) for k, v in per_class.items()}
    elif out["mode"] == "group":
        # one threshold per skin-tone group, chosen per photo from the tone the engine measures;
        # `threshold` (the marginal one) serves photos whose tone cannot be measured
        if conf.get("group_by") not in GROUP_BY or not isinstance(per_class, dict):
            return None
        out["group_by"] = conf["group_by"]
        out["group_thresholds"] = {str(k): float(v) for k, v in per_class.items()}
    if out["method"] not in ("lac", "aps"):
        return None
    return out


def _without_metadata(calibration: dict) -> dict | None:
    """The photo-alone path's own temperature and conformal settings (``dermsight evaluate``
    fits them for models with metadata); the engine uses them for a photo sent without any."""
    path = calibration.get("without_metadata")
    if not isinstance(path, dict) or not isinstance(path.get("temperature"), int | float):
        return None
    conformal = _conformal_from_run({"conformal": path.get("conformal"),
                                     "val_metrics": path.get("val_metrics"),
                                     "fitted_on": calibration.get("fitted_on")})
    return {"temperature": float(path["temperature"]), "conformal": conformal,
            "val_metrics": path.get("val_metrics")}


# skin-tone groupings the serving engine can measure on a photo (Prediction.skin_tone keys)
GROUP_BY = {"tone_bucket": "bucket", "ita_category": "category"}


def conformal_sets(probs: np.ndarray, conformal: dict) -> np.ndarray:
    """Bool (n, C) sets of ``probs`` under model.json's marginal conformal settings (LAC or
    non-randomised APS; the top class always included), as the serving engine builds them."""
    from dermsight.predsets import prediction_sets

    return prediction_sets(probs, float(conformal["threshold"]), conformal.get("method", "lac"))


def _fit_conformal(probs: np.ndarray, labels: np.ndarray, alpha: float) -> dict:
    from dermsight.evaluate.conformal import ConformalClassifier

    cc = ConformalClassifier(method="lac", alpha=alpha).fit(probs, labels)
    rep = cc.report(probs, labels)
    return {"method": "lac", "mode": "marginal", "alpha": alpha, "coverage": 1.0 - alpha,
            # +inf (too few calibration rows: every class in every set) as 2.0, above any
            # LAC or APS score, since JSON has no infinity
            "threshold": float(cc.threshold_) if math.isfinite(cc.threshold_) else 2.0,
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
_GROUP_KEYS = ("n", "small", "accuracy", "accuracy_ci95", "balanced_accuracy",
               "balanced_accuracy_ci95", "f1_macro", "f1_macro_ci95", "auroc_macro", "ece")


def skin_tone_groups(run_dir: Path) -> dict | None:
    """Per-skin-tone validation figures for the model card.

    The run's ``groups.json`` when present; otherwise the fairness section of the newest
    ``dermsight evaluate`` report on the validation split (``<run>/eval-*-val/report.json``),
    by the first of :data:`TONE_ATTRIBUTES` it has with at least two groups.
    """
    groups = _read_json(run_dir / "groups.json")
    if groups:
        return groups
    reports = sorted(run_dir.glob("eval-*-val/report.json"), key=lambda p: p.stat().st_mtime)
    for path in reversed(reports):
        report = _read_json(path)
        fairness = report.get("fairness") if isinstance(report.get("fairness"), dict) else {}
        for attribute in TONE_ATTRIBUTES:
            section = fairness.get(attribute)
            if not isinstance(section, dict) or len(section.get("groups") or {}) < 2:
                continue
            return {
                "attribute": attribute, "source": str(path.relative_to(run_dir)),
                "split": report.get("split"), "n_resamples": section.get("n_resamples"),
                "groups": {str(g): {k: row.get(k) for k in _GROUP_KEYS if k in row}
                           for g, row in section["groups"].items()},
                "gap_metric": section.get("gap_metric"), "max_gap": section.get("max_gap"),
                "max_gap_groups": section.get("max_gap_groups"),
                "max_gap_ci95": section.get("max_gap_ci95"), "min_n": section.get("min_n"),
            }
    return None


# ---- export -----------------------------------------------------------------------------------
def export_model(run: str | Path, out: str | Path, *, int8: bool = True,
                 opset: int = DEFAULT_OPSET, calibration_images: int = 200,
                 parity_images: int | None = None, keep_fp32: bool = True,
                 progress: bool = True, photo_type: str | None = None) -> ExportResult:
    """Export the run folder ``run`` into the model folder ``out`` (see the module docstring).

    Args:
        int8: also write ``model.int8.onnx`` (static QDQ; needs the run's prepared manifest
            for calibration images).
        calibration_images: training images used to calibrate the int8 activation ranges.
        parity_images: validation images for the parity figures (None = the whole split).
        keep_fp32: keep ``model.onnx`` in ``out``; False leaves only the int8 model (its
            sha256 stays in model.json, marked ``"included": false``), e.g. for a folder
            committed to git.
        photo_type: the kind of photo the model answers (``dermoscopy`` / ``clinical``;
            default: the training source's own, e.g. HAM10000 → dermoscopy); the router sends
            it only photos of that kind.
    """
    from dermsight.export.card import write_card
    from dermsight.export.quantize import quantize_int8
    from dermsight.train.checkpoint import load_run

    started = time.perf_counter()
    loaded = load_run(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    size = tuple(loaded.preprocess.input_size)
    manifest = _manifest(loaded)
    val = _split_arrays(loaded, manifest, "val", parity_images) if manifest is not None else None
    if int8 and manifest is None:
        raise DataError("int8 export needs calibration images from the run's prepared manifest, "
                        "which is not on this machine; export with --no-int8")
    out = Path(out)
    files: dict[str, dict] = {}
    parity: dict[str, Any] = {}
    quant: dict | None = None
    with staging_dir(out, last=MODEL_JSON) as stage:
        module = export_onnx(loaded.model, stage / FP32, size, opset=opset)
        files["fp32"] = {"path": FP32}
        temperature = loaded.temperature
        conformal = _conformal_from_run(loaded.calibration)
        if val is not None:
            fp32 = _onnx_logits(stage / FP32, val)
            ref = _torch_logits(loaded.model, val, with_meta=True)
            parity["n_val_images"] = int(len(fp32))
            parity["fp32_max_abs_prob_diff"] = float(np.abs(_softmax(fp32) - _softmax(ref)).max())
            if "meta" in val:  # the "no metadata" path (has_meta = 0) against model(image, None)
                k = min(64, len(fp32))
                no_meta = {**{x: v[:k] for x, v in val.items()},
                           "has_meta": np.zeros(k, np.float32)}
                diff = np.abs(_softmax(_onnx_logits(stage / FP32, no_meta))
                              - _softmax(_torch_logits(loaded.model, no_meta, with_meta=False)))
                parity["fp32_no_metadata_max_abs_prob_diff"] = float(diff.max())
            parity["fp32_accuracy"] = float((fp32.argmax(1) == val["label"]).mean())
            if conformal is None:
                conformal = _fit_conformal(_softmax(fp32, temperature), val["label"],
                                           CONFORMAL_ALPHA)
            if conformal.get("threshold") is not None and conformal.get("mode") != "group":
                sets = conformal_sets(_softmax(fp32, temperature), conformal)
                conformal["exported_val_coverage"] = float(
                    sets[np.arange(len(sets)), val["label"]].mean())
                conformal["exported_val_mean_set_size"] = float(sets.sum(1).mean())
        if int8:
            train = _split_arrays(loaded, manifest, "train", calibration_images, seed=1)
            if train is None:
                raise DataError("int8 export needs training images; the run's manifest has "
                                "no 'train' rows")
            calib = {k: v for k, v in train.items() if k != "label"}
            quant = quantize_int8(stage / FP32, stage / INT8, calib)
            files["int8"] = {"path": INT8}
            if val is not None:
                q = _onnx_logits(stage / INT8, val)
                parity["int8_top1_agreement"] = float((q.argmax(1) == fp32.argmax(1)).mean())
                parity["int8_max_abs_prob_diff"] = float(
                    np.abs(_softmax(q) - _softmax(fp32)).max())
                parity["int8_accuracy"] = float((q.argmax(1) == val["label"]).mean())
        for entry in files.values():
            path = stage / entry["path"]
            entry.update(sha256=sha256_file(path), bytes=path.stat().st_size, included=True)
        if not keep_fp32:
            if not int8:
                raise ConfigError("keep_fp32=False needs int8=True: the folder would hold no "
                                  "model")
            (stage / FP32).unlink()
            files["fp32"]["included"] = False
        info = _info(loaded, run_dir, module, files, parity, quant, conformal, temperature,
                     manifest, opset, started, photo_type)
        flags = [f"--run {run}", f"--out {out}"] + (["--no-int8"] if not int8 else []) \
            + (["--no-fp32"] if not keep_fp32 else []) \
            + ([f"--opset {opset}"] if opset != DEFAULT_OPSET else [])
        info["rebuild"] = {"export": "dermsight export " + " ".join(flags),
                           "train": _train_command(run_dir)}
        atomic_write_text(stage / MODEL_JSON, json.dumps(info, indent=2) + "\n")
        write_card(stage / CARD, info)
    for key, name in (("int8", INT8), ("fp32", FP32)):
        if not files.get(key, {}).get("included") and (out / name).exists():
            (out / name).unlink()  # a stale model of an earlier export must not be served
    return ExportResult(out=out, info=info, files={k: out / v["path"] for k, v in files.items()
                                                   if v["included"]})


def _train_command(run_dir: Path) -> str | None:
    """The `dermsight train` line of the run's weights.txt, when it has one."""
    try:
        text = (run_dir / "weights.txt").read_text()
    except OSError:
        return None
    return next((ln.strip() for ln in text.splitlines()
                 if ln.strip().startswith("dermsight train")), None)


def _info(loaded, run_dir: Path, module, files: dict, parity: dict, quant: dict | None,
          conformal: dict | None, temperature: float, manifest, opset: int,
          started: float, photo_type_override: str | None = None) -> dict:
    report = _read_json(run_dir / "report.json")
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
        "format": "dermsight-model", "format_version": FORMAT_VERSION,
        "name": name,
        "version": f"{name}-{created[:10]}-{files['fp32']['sha256'][:8]}",
        "dermsight_version": __version__, "created": created,
        "source_run": str(run_dir),
        "task": "skin-condition classification (research use; not medical advice)",
        "photo_type": photo_type,
        "classes": list(loaded.classes),
        "display_names": {c: DISPLAY_NAMES.get(c, c.replace("_", " ").replace("-", " "))
                          for c in loaded.classes},
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
        "temperature": float(temperature),
        "temperature_source": "calibration.json" if "temperature" in loaded.calibration
        else "none (run not calibrated by `dermsight evaluate`: T = 1)",
        "conformal": conformal,
        "conformal_coverage": None if not conformal else conformal.get("coverage"),
        "without_metadata": _without_metadata(loaded.calibration),
        "quality_thresholds": quality,
        "data": data,
        "metrics": report.get("metrics", {}),
        "metrics_split": report.get("split"),
        "auroc_per_class": report.get("auroc_per_class"),
        "n_train": report.get("n_train"), "n_val": report.get("n_val"),
        "skin_tone_groups": groups or None,
        "label_levels": _label_levels(run_dir),
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
