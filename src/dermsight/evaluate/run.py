"""`dermsight evaluate`: score a trained run on one split of any dataset, calibrated, with
prediction sets, fairness by skin tone and Grad-CAM, into a report people read.

Steps: load the run (:func:`dermsight.train.checkpoint.load_run`); read the split
(:mod:`dermsight.evaluate.data`: any source, labels mapped onto the model's classes, skin tone
measured on the fly when the data has none); predict (optionally with flip TTA); calibrate on
the RUN's validation split (temperature scaling, then split-conformal thresholds on the
temperature-scaled probabilities) or re-use the run's ``calibration.json`` when it was fitted
with the same settings; metrics, reliability, conformal coverage, fairness with bootstrap CIs,
Grad-CAM on a seeded sample; write ``OUT/`` atomically.

Outputs (``OUT`` defaults to ``<run>/eval-<source>-<split>/``): ``predictions.csv`` (``image_id``,
``label``, one calibrated probability column per class, then ``prediction`` and
``prediction_set``), ``report.json``, ``report.html`` (self-contained), ``figures/*.png``.

``<run>/calibration.json`` (read by every later stage; keys are stable)::

    {"version": 1,
     "classes": [...],                      # class order of the columns below
     "temperature": T,                      # calibrated probs = softmax(logits / T)
     "fitted_on": {"split": "val", "n", "manifest", "source", "root", "tta", "created"},
     "conformal": {
         "method": "aps" | "lac", "mode": "marginal" | "class" | "group",
         "target": 0.9, "alpha": 0.1, "randomized": false,
         "qhat": q,                         # marginal threshold
         "thresholds": {key: q_key},        # class names ("class") or group labels ("group")
         "group_by": "tone_bucket" | null,  # column giving a row's group in "group" mode
         "fallback": [...], "n_calibration": n,
         "score": "..."},                   # how to rebuild a set (below)
     "val_metrics": {"n", "accuracy", "nll_before", "nll_after", "ece_before", "ece_after",
                     "coverage", "mean_set_size"}}

Rebuilding a prediction set from calibrated probabilities ``p`` (C,): with ``q`` the row's
threshold (``thresholds[key]`` when present, else ``qhat``), class ``k`` is in the set when its
score ≤ ``q``: LAC score ``1 − p_k``; APS score = the sum of the probabilities of the classes
ranked at or above ``k`` (sorted by decreasing ``p``, stable). The top class is always in the
set. This is :class:`dermsight.evaluate.conformal.ConformalClassifier` (rebuilt by
:func:`conformal_from_calibration`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax
from torch.utils.data import DataLoader

from dermsight import DISCLAIMER, __version__, metrics
from dermsight.config import tta_mode, tta_or_none
from dermsight.errors import ConfigError, DataError
from dermsight.evaluate._validate import group_indices
from dermsight.evaluate.calibration import (
    TemperatureScaler,
    ece_by_group,
    expected_calibration_error,
    reliability_curve,
)
from dermsight.evaluate.conformal import ConformalClassifier, set_to_words
from dermsight.evaluate.data import GROUP_COLUMNS, group_values, load_scored_set
from dermsight.evaluate.fairness import group_metrics
from dermsight.io import atomic_write_text, staging_dir

log = logging.getLogger("dermsight.evaluate")

CALIBRATION_VERSION = 1
#: Metrics bootstrapped per group (AUROC and ECE per group are reported without a CI: the
#: AUROC bootstrap costs ten times the rest together).
FAIRNESS_METRICS = {"accuracy": metrics.accuracy,
                    "balanced_accuracy": metrics.balanced_accuracy,
                    "f1_macro": metrics.f1_macro}
#: The skin-tone column conformal coverage is reported by (``conformal.by_group``).
TONE_COLUMN = "tone_bucket"
GALLERY_SIZE = 8


@dataclass
class EvalOptions:
    """Settings of one evaluation (the CLI flags)."""

    split: str = "test"
    out: str | Path | None = None
    coverage: float = 0.9
    conformal: str = "lac"
    conformal_mode: str = "marginal"
    bootstrap: int = 1000
    seed: int = 0
    cam: bool = True
    cam_samples: int = 200
    tta: str | bool | None = None  # none / hflip / flips / d4; None: the run's train.tta
    workers: int = 0
    batch_size: int = 32
    recalibrate: bool = False
    source_options: dict | None = None
    progress: bool = False


@dataclass
class EvalResult:
    out: Path
    report: dict
    calibration: dict = field(default_factory=dict)


# -- prediction ---------------------------------------------------------------------------------
def _dataset(run, frame: pd.DataFrame, name: str):
    from dermsight.data.dataset import ManifestDataset

    return ManifestDataset(frame, run.classes, run.preprocess, encoder=run.encoder, name=name)


def load_run_manifest(run_dir: str | Path):
    """A trained run folder and the prepared manifest (every split) it trained on."""
    from dermsight.train.checkpoint import load_run
    from dermsight.train.run import load_manifest

    run = load_run(run_dir)
    if run.config is None:
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'} is missing: without it the run's "
                          "prepared manifest cannot be found")
    return run, load_manifest(run.config, progress=False)


@torch.no_grad()
def predict_logits(run, frame: pd.DataFrame, *, tta: str | bool, batch_size: int = 32,
                   workers: int = 0, name: str = "dataset", progress: bool = False,
                   without_metadata: bool = False) -> dict:
    """Diagnosis logits (n, C) float64, lighting scores (n,) or None, labels (n,) and lighting
    targets (n,, NaN = unknown) of ``frame``'s rows, in order. ``without_metadata``: from the
    photo alone (the model's "no metadata" path), whatever the rows hold."""
    from tqdm.auto import tqdm

    from dermsight.train.module import forward_tta

    ds = _dataset(run, frame, name)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    model = run.model.eval()
    logits, light = [], []
    for batch in tqdm(loader, desc=f"predicting {name}", disable=not progress, unit="batch"):
        meta = batch["meta"] if batch["meta"].shape[-1] and not without_metadata else None
        out = forward_tta(model, batch["image"], meta, tta)
        logits.append(out["diagnosis"].double().numpy())
        if "lighting" in out:
            light.append(torch.sigmoid(out["lighting"]).double().numpy())
    return {"logits": np.concatenate(logits), "label": ds.labels.astype(np.int64),
            "lighting_score": np.concatenate(light) if light else None,
            "lighting": ds.lighting.astype(np.float64)}


# -- calibration --------------------------------------------------------------------------------
def fit_calibration(logits, y, *, classes: list[str], method: str = "lac",
                    coverage: float = 0.9, mode: str = "marginal", groups=None,
                    seed: int = 0) -> tuple[dict, TemperatureScaler, ConformalClassifier]:
    """Temperature on ``logits`` (n, C), then conformal thresholds on the scaled probabilities;
    returns the ``calibration.json`` body (without ``fitted_on``), the scaler and the sets."""
    scaler = TemperatureScaler().fit(logits, y)
    probs = scaler.transform(logits)
    conf = ConformalClassifier(method=method, alpha=1.0 - coverage, mode=mode, seed=seed)
    conf.fit(probs, y, groups if mode == "group" else None)
    rep = conf.report(probs, y, groups if mode == "group" else None)
    thresholds = {(classes[k] if mode == "class" else str(k)): float(v)
                  for k, v in conf.thresholds_.items()}
    body = {
        "version": CALIBRATION_VERSION,
        "classes": list(classes),
        "temperature": float(scaler.temperature_),
        "conformal": {
            "method": method, "mode": mode, "target": float(coverage),
            "alpha": float(1.0 - coverage), "randomized": False,
            "qhat": float(conf.threshold_), "thresholds": thresholds,
            "group_by": TONE_COLUMN if mode == "group" else None,
            "fallback": [classes[k] if mode == "class" else str(k) for k in conf.fallback_],
            "n_calibration": int(conf.n_calibration_),
            "score": ("LAC: 1 - p_k" if method == "lac" else
                      "APS: cumulative probability of the classes ranked at or above k"),
        },
        "val_metrics": {
            "n": int(len(y)), "accuracy": metrics.accuracy(y, probs),
            "nll_before": float(scaler.nll_before_), "nll_after": float(scaler.nll_after_),
            "ece_before": expected_calibration_error(y, softmax(logits, axis=1)),
            "ece_after": expected_calibration_error(y, probs),
            "coverage": rep["coverage"], "mean_set_size": rep["mean_set_size"],
        },
    }
    return body, scaler, conf


def conformal_from_calibration(calibration: dict) -> ConformalClassifier:
    """The fitted :class:`ConformalClassifier` described by a ``calibration.json`` body."""
    try:
        c = calibration["conformal"]
        classes = list(calibration["classes"])
        conf = ConformalClassifier(method=c["method"], alpha=float(c["alpha"]), mode=c["mode"],
                                   randomized=bool(c.get("randomized", False)))
        conf.threshold_ = float(c["qhat"])
        if c["mode"] == "class":
            conf.thresholds_ = {classes.index(k): float(v) for k, v in c["thresholds"].items()}
        else:
            conf.thresholds_ = {k: float(v) for k, v in c["thresholds"].items()}
        conf.fallback_ = list(c.get("fallback", []))
        conf.calibration_counts_ = {}
        conf.n_calibration_ = int(c.get("n_calibration", 0))
        conf.n_classes_ = conf.n_features_in_ = len(classes)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"calibration.json is incomplete or malformed ({exc!r}); run "
                          "`dermsight evaluate --recalibrate`") from None
    return conf


def _reusable(calibration: dict, want: dict) -> bool:
    """Whether a stored calibration was fitted with the settings in ``want``."""
    if not calibration:
        return False
    c, f = calibration.get("conformal", {}), calibration.get("fitted_on", {})
    return (calibration.get("version") == CALIBRATION_VERSION
            and calibration.get("classes") == want["classes"]
            and f.get("split") == "val" and f.get("n") == want["n"]
            and f.get("manifest") == want["manifest"] and tta_or_none(f.get("tta")) == want["tta"]
            and c.get("method") == want["method"] and c.get("mode") == want["mode"]
            and abs(float(c.get("target", -1)) - want["target"]) < 1e-9
            and ("without_metadata" in calibration) == want.get("without_metadata", False))


def _path_calibration(body: dict) -> dict:
    """The part of a calibration body a path keeps: temperature, conformal, val figures."""
    return {k: body[k] for k in ("temperature", "conformal", "val_metrics")}


def _without_metadata_section(logits, y, frame, path: dict, *, opt, classes,
                              cross_fit: bool) -> dict:
    """The photo-alone path of a model with metadata (``logits`` of ``frame``'s rows without
    metadata), scored with its own calibration ``path``: metrics, ECE before / after its own
    temperature, conformal coverage, and (on the validation split) cross-fitted ECE and
    coverage by skin-tone group."""
    probs = softmax(logits / float(path["temperature"]), axis=1)
    conf = conformal_from_calibration({"classes": classes, "conformal": path["conformal"]})
    sets, covered = _sets_and_coverage(conf, probs, y, frame)
    out = {"temperature": float(path["temperature"]),
           "metrics": metrics.classification_summary(y, probs),
           "ece_before": expected_calibration_error(y, softmax(logits, axis=1)),
           "ece_after": expected_calibration_error(y, probs),
           "coverage": float(covered.mean()), "mean_set_size": float(sets.sum(1).mean()),
           "val_metrics": path.get("val_metrics", {})}
    if cross_fit:
        fit = _cross_fit(logits, y, group_values(frame, TONE_COLUMN), classes=classes,
                         method=opt.conformal, coverage=opt.coverage, mode=opt.conformal_mode,
                         seed=opt.seed)
        out["cross_fit"] = {k: fit[k] for k in ("folds", "repeats", "ece_after", "coverage",
                                                "mean_set_size", "by_group")}
    return out


def _sets_and_coverage(conf, probs, y, frame) -> tuple[np.ndarray, np.ndarray]:
    groups = group_values(frame, TONE_COLUMN) if conf.mode == "group" else None
    sets = conf.predict_sets(probs, groups)
    return sets, sets[np.arange(len(y)), y]


CROSS_FIT_REPEATS = 20


def _cross_fit(logits, y, groups, *, classes, method, coverage, mode, seed,
               repeats: int = CROSS_FIT_REPEATS) -> dict:
    """Honest estimates when the scored split is the calibration split.

    ``repeats`` times (seeded): split the rows in two halves, fit on one half and score the
    other, both ways round. Every row is scored once per repeat by thresholds that never saw
    it; the figures are means over the repeats, per skin-tone group too (``by_group``:
    coverage and set size, with the spread of the per-repeat coverage).
    """
    rng = np.random.default_rng(seed)
    members = group_indices(groups, len(y)) if groups is not None else {}
    rows, by_group = [], {}
    for _ in range(repeats):
        order = rng.permutation(len(y))
        halves = [order[: len(y) // 2], order[len(y) // 2:]]
        covered = np.zeros(len(y), bool)
        size = np.zeros(len(y))
        eces, temps = [], []
        for a, b in (halves, halves[::-1]):
            g_a = None if groups is None else groups[a]
            _, scaler, conf = fit_calibration(logits[a], y[a], classes=classes, method=method,
                                              coverage=coverage, mode=mode, groups=g_a,
                                              seed=seed)
            p_b = scaler.transform(logits[b])
            sets = conf.predict_sets(p_b, None if groups is None else groups[b])
            covered[b] = sets[np.arange(len(b)), y[b]]
            size[b] = sets.sum(1)
            eces.append(expected_calibration_error(y[b], p_b))
            temps.append(scaler.temperature_)
        rows.append({"ece_after": float(np.mean(eces)), "coverage": float(covered.mean()),
                     "mean_set_size": float(size.mean()), "temperature": float(np.mean(temps))})
        for key, idx in members.items():
            by_group.setdefault(key, []).append((covered[idx].mean(), size[idx].mean(),
                                                 len(idx)))
    out = {"folds": 2, "repeats": int(repeats),
           **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
    target = float(coverage)
    out["by_group"] = {
        str(key): {"n": int(vals[0][2]), "coverage": float(np.mean([v[0] for v in vals])),
                   "coverage_sd": float(np.std([v[0] for v in vals])),
                   "mean_set_size": float(np.mean([v[1] for v in vals])),
                   "within_2_points": bool(abs(np.mean([v[0] for v in vals]) - target) <= 0.02)}
        for key, vals in sorted(by_group.items())}
    return out


# -- the report sections -------------------------------------------------------------------------
def _lighting_metrics(pred: dict) -> dict:
    score, target = pred["lighting_score"], pred["lighting"]
    if score is None:
        return {"available": False}
    known = np.isfinite(target)
    out = {"available": True, "n_known": int(known.sum()),
           "n_poor": int(np.nansum(target[known])), "accuracy": None, "auroc": None}
    if known.any():
        out["accuracy"] = float(((score[known] >= 0.5) == (target[known] >= 0.5)).mean())
        auc = metrics.binary_auroc(target, score)
        out["auroc"] = None if np.isnan(auc) else auc
    return out


def _most_confused(cm: np.ndarray, classes: list[str], k: int = 5) -> list[dict]:
    off = cm.astype(float).copy()
    np.fill_diagonal(off, 0)
    pairs = []
    for flat in np.argsort(-off, axis=None)[:k]:
        t, p = np.unravel_index(flat, off.shape)
        if off[t, p] <= 0:
            break
        pairs.append({"true": classes[t], "predicted": classes[p], "count": int(off[t, p]),
                      "share_of_true": float(off[t, p] / max(cm[t].sum(), 1))})
    return pairs


def _fairness(y, probs, frame: pd.DataFrame, *, n_resamples: int, seed: int) -> dict:
    out = {}
    for col in GROUP_COLUMNS:
        groups = group_values(frame, col)
        if all(g is None for g in groups):
            continue
        res = group_metrics(y, probs, groups, metrics=FAIRNESS_METRICS,
                            n_resamples=n_resamples, seed=seed, gap_metric="accuracy")
        eces = ece_by_group(y, probs, groups)
        for g, row in res["groups"].items():
            idx = np.array([v == g for v in groups])
            auc = metrics.auroc_macro(y[idx], probs[idx]) if idx.sum() > 1 else float("nan")
            row["auroc_macro"] = auc
            row["ece"] = eces[g]["ece"]
        res["n_missing"] = int(sum(g is None for g in groups))
        out[col] = res
    return out


def _overlap_with_train(frame: pd.DataFrame, train: pd.DataFrame | None, y, probs) -> dict:
    """How many scored rows show an image, or a group (lesion / patient, ``group_id``), that is
    also in the run's TRAIN split, and the headline metrics on those rows and on the rest.
    ``train=None``: the scored data is another dataset, whose ids say nothing about the run's.

    A split made by image (DermaMNIST's) puts other photos of a training lesion in val/test;
    the "unseen" figures are what to expect on new lesions."""
    n = len(frame)
    if train is None:
        return {"n": int(n), "available": False,
                "reason": "the scored data is not the run's own source"}
    out: dict = {"n": int(n), "group_column": "group_id", "min_n": 30}
    same_image = np.zeros(n, dtype=bool)
    for col in ("image_id", "image_uri"):
        if col in frame and col in train:
            same_image |= frame[col].astype(str).isin(set(train[col].astype(str))).to_numpy()
    out["n_same_image"] = int(same_image.sum())
    if "group_id" not in frame or "group_id" not in train:
        out.update(available=False, reason="no group_id column in the scored data or the run's "
                                           "manifest")
        return out
    known = frame["group_id"].notna().to_numpy()
    seen = known & frame["group_id"].astype(str).isin(
        set(train["group_id"].dropna().astype(str))).to_numpy()
    seen |= same_image
    out.update(available=True, n_group_seen=int(seen.sum()), share_seen=float(seen.mean()))
    for name, mask in (("seen", seen), ("unseen", ~seen)):
        if mask.sum() >= out["min_n"]:
            out[name] = {"n": int(mask.sum()),
                         **metrics.classification_summary(y[mask], probs[mask])}
    return out


def _conformal_section(conf: ConformalClassifier, probs, y, frame, classes,
                       mode: str) -> tuple[dict, np.ndarray]:
    tone = group_values(frame, TONE_COLUMN)
    sets = conf.predict_sets(probs, tone if mode == "group" else None)
    rep = conf.report(probs, y, tone if mode == "group" else None)
    out = {"method": rep["method"], "mode": rep["mode"], "target": rep["target"],
           "coverage": rep["coverage"], "mean_set_size": rep["mean_set_size"],
           "group_by": TONE_COLUMN, "by_group": {}, "by_attribute": {}}
    sizes = sets.sum(axis=1)
    out["set_size_counts"] = {int(k): int((sizes == k).sum()) for k in np.unique(sizes)}
    for col in GROUP_COLUMNS:
        groups = group_values(frame, col)
        if all(g is None for g in groups):
            continue
        table = {}
        for g in dict.fromkeys(v for v in groups if v is not None):
            idx = np.array([v == g for v in groups])
            cov = float(sets[idx, y[idx]].mean())
            table[g] = {"n": int(idx.sum()), "coverage": cov,
                        "mean_set_size": float(sets[idx].sum(axis=1).mean()),
                        "within_2_points": bool(abs(cov - rep["target"]) <= 0.02)}
        table = dict(sorted(table.items(), key=lambda kv: str(kv[0])))
        out["by_attribute"][col] = table
        if col == TONE_COLUMN:
            out["by_group"] = table
    wrong = np.flatnonzero(probs.argmax(1) != y)
    out["examples"] = [
        {"image_id": str(frame["image_id"].iloc[i]), "label": classes[y[i]],
         "prediction": classes[int(probs[i].argmax())], "set": set_to_words(sets[i], classes),
         "label_in_set": bool(sets[i, y[i]])} for i in wrong[:5]]
    return out, sets


def _galleries(probs, y, frame, classes, sets) -> dict:
    conf = probs.max(1)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    right = np.flatnonzero(pred == y)
    pick = {"confident_wrong": wrong[np.argsort(-conf[wrong], kind="stable")][:GALLERY_SIZE],
            "unsure_right": right[np.argsort(conf[right], kind="stable")][:GALLERY_SIZE]}

    def row(i):
        return {"index": int(i), "image_id": str(frame["image_id"].iloc[i]),
                "label": classes[y[i]], "prediction": classes[pred[i]],
                "confidence": float(conf[i]), "set": set_to_words(sets[i], classes)}

    return {k: [row(i) for i in v] for k, v in pick.items()}


def _load_mask(uri, image_shape: tuple[int, int], preprocess) -> np.ndarray | None:
    """The lesion mask aligned with the model input (same resize + crop), bool (H, W)."""
    import io

    import cv2
    from PIL import Image

    from dermsight.io import read_bytes

    if uri is None or pd.isna(uri):
        return None
    try:
        mask = np.asarray(Image.open(io.BytesIO(read_bytes(str(uri)))).convert("L"))
    except (OSError, ValueError):
        return None
    h, w = image_shape
    if mask.shape != (h, w):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR)
    aligned = preprocess.resize_crop(np.repeat(mask[:, :, None], 3, axis=2))[:, :, 0]
    out = aligned >= 128
    return out if out.any() else None


def _centroid_offset(cams, masks) -> list[float]:
    """Mean (rows, cols) offset of the CAM's centre of mass from the mask's centroid."""
    offsets = []
    for cam, mask in zip(cams, masks):
        total = float(cam.sum())
        if total <= 0:
            continue
        rows, cols = np.mgrid[:cam.shape[0], :cam.shape[1]]
        offsets.append(((cam * rows).sum() / total - rows[mask].mean(),
                        (cam * cols).sum() / total - cols[mask].mean()))
    return [float(v) for v in np.mean(offsets, axis=0)] if offsets else [None, None]


def explain_sample(run, frame, y, probs, *, samples: int, seed: int) -> tuple[dict, dict]:
    """Grad-CAM on a seeded sample: localisation scores and what the overlay figure needs."""
    from dermsight.evaluate.explain import (
        cam_target_layer,
        energy_in_mask,
        grad_cam,
        pointing_game,
    )

    n = len(y)
    k = min(samples, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    ds = _dataset(run, frame, "Grad-CAM sample")
    items = [ds[int(i)] for i in idx]
    images = torch.stack([it["image"] for it in items])
    meta = torch.stack([it["meta"] for it in items]) if run.encoder is not None else None
    pred = probs.argmax(1)
    layer = cam_target_layer(run.model)
    layer_name = next((n_ for n_, m in run.model.named_modules() if m is layer), "?")
    t0 = time.perf_counter()
    cams = grad_cam(run.model, images, meta, pred[idx], target_layer=layer)
    seconds = time.perf_counter() - t0
    section = {"n": int(k), "of": int(n), "seed": seed, "target": "predicted class",
               "target_layer": layer_name, "seconds": round(seconds, 1),
               "note": f"Grad-CAM on a seeded random sample of {k} of {n} images "
                       f"(--cam-samples {samples})"}
    masks, with_mask = [], []
    if "mask_uri" in frame.columns:
        for j, i in enumerate(idx):
            rgb = ds.load_image(int(i))
            m = _load_mask(frame["mask_uri"].iloc[i], rgb.shape[:2], run.preprocess)
            if m is not None:
                masks.append(m)
                with_mask.append(j)
    if with_mask:
        sel = np.asarray(with_mask)
        section.update({
            "n_with_mask": len(with_mask),
            "pointing_game": pointing_game(cams[sel], masks),
            "energy_in_mask": energy_in_mask(cams[sel], masks),
            "mask_area": float(np.mean([m.mean() for m in masks])),
            # what a fixed guess at the image centre would score, and where the CAM mass sits
            # relative to the lesion (rows down, columns right, in input pixels)
            "centre_baseline": float(np.mean([m[m.shape[0] // 2, m.shape[1] // 2]
                                              for m in masks])),
            "cam_centroid_offset_px": _centroid_offset(cams[sel], masks),
            "mask_threshold": 128,
            "hit_rule": "CAM maximum inside the lesion mask (no tolerance margin)"})
        section["by_correct"] = {}
        correct = pred[idx][sel] == y[idx][sel]
        for name, keep in (("correct", correct), ("wrong", ~correct)):
            if keep.any():
                chosen = [masks[j] for j in np.flatnonzero(keep)]
                section["by_correct"][name] = {
                    "n": int(keep.sum()),
                    "pointing_game": pointing_game(cams[sel][keep], chosen),
                    "energy_in_mask": energy_in_mask(cams[sel][keep], chosen)}
    # overlays: per class, one correct and one wrong example of the sample
    chosen = {}
    for c in range(probs.shape[1]):
        for kind, ok in (("correct", True), ("wrong", False)):
            hits = [j for j, i in enumerate(idx) if y[i] == c and (pred[i] == y[i]) == ok]
            if hits:
                chosen[(c, kind)] = hits[0]
    panels = {key: {"rgb": run.preprocess.resize_crop(ds.load_image(int(idx[j]))),
                    "cam": cams[j], "image_id": str(frame["image_id"].iloc[idx[j]]),
                    "label": run.classes[y[idx[j]]], "prediction": run.classes[pred[idx[j]]],
                    "confidence": float(probs[idx[j]].max())}
              for key, j in chosen.items()}
    return section, panels


# -- JSON ------------------------------------------------------------------------------------------
def clean_json(obj):
    """``obj`` with numpy scalars / arrays unwrapped and NaN / inf as None (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# -- the pipeline ----------------------------------------------------------------------------------
def run_evaluate(run_dir: str | Path, *, source: str, root: str | None,
                 options: EvalOptions | None = None) -> EvalResult:
    """Evaluate the run in ``run_dir`` on ``options.split`` of ``source`` at ``root``; see
    the module docstring. Raises ConfigError / DataError naming what is missing."""
    from dermsight.evaluate import figures, report_html
    from dermsight.train.checkpoint import load_run
    from dermsight.train.run import load_manifest, prepared_dir

    opt = options or EvalOptions()
    if opt.conformal not in ("aps", "lac"):
        raise ConfigError(f"--conformal must be 'aps' or 'lac'; got {opt.conformal!r}")
    if opt.conformal_mode not in ("marginal", "class", "group"):
        raise ConfigError("--conformal-mode must be marginal, class or group; got "
                          f"{opt.conformal_mode!r}")
    if not 0.0 < opt.coverage < 1.0:
        raise ConfigError(f"--coverage must be between 0 and 1; got {opt.coverage}")
    if opt.bootstrap < 1 or opt.cam_samples < 0:
        raise ConfigError("--bootstrap must be >= 1 and --cam-samples >= 0")
    started = time.perf_counter()
    run_path = Path(run_dir)
    if not run_path.is_dir():
        raise ConfigError(f"no run folder at {run_path}")
    run = load_run(run_path)
    if run.config is None:
        raise ConfigError(f"{run_path / 'config.yaml'} is missing: without it the run's "
                          "validation split (the calibration set) cannot be found")
    torch.manual_seed(opt.seed)
    try:
        tta = tta_mode(run.config.train.tta if opt.tta is None else opt.tta)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    size = tuple(run.preprocess.input_size)
    if tta == "d4" and size[0] != size[1]:
        raise ConfigError(f"d4 test-time augmentation needs a square input size; this run's is "
                          f"{list(size)} (use flips)")
    classes = list(run.classes)
    timing = {}

    t0 = time.perf_counter()
    scored = load_scored_set(classes, source=source, root=root, split=opt.split,
                             source_options=opt.source_options, run_config=run.config,
                             workers=max(opt.workers, 1), progress=opt.progress)
    frame = scored.frame
    timing["read_seconds"] = round(time.perf_counter() - t0, 1)

    # the run's validation split: the calibration set
    val_all = load_manifest(run.config, progress=opt.progress)
    val = val_all[val_all["split"] == "val"].reset_index(drop=True)
    if len(val) == 0:
        raise DataError(f"the run's prepared manifest ({prepared_dir(run.config)}) has an empty "
                        "'val' split: there is nothing to calibrate on")
    val_manifest = str(prepared_dir(run.config) / "manifest.parquet")
    is_val = set(frame["image_uri"]) == set(val["image_uri"])

    t0 = time.perf_counter()
    pred = predict_logits(run, frame, tta=tta, batch_size=opt.batch_size, workers=opt.workers,
                          name=f"{source} {opt.split}", progress=opt.progress)
    timing["predict_seconds"] = round(time.perf_counter() - t0, 1)
    timing["images_per_second"] = round(len(frame) / max(timing["predict_seconds"], 1e-9), 1)
    logits, y = pred["logits"], pred["label"]

    has_meta = run.encoder is not None  # two paths: with the patient's details, photo alone
    want = {"classes": classes, "n": int(len(val)), "manifest": val_manifest, "tta": tta,
            "method": opt.conformal, "mode": opt.conformal_mode, "target": float(opt.coverage),
            "without_metadata": has_meta}
    reused = not opt.recalibrate and _reusable(run.calibration, want)
    cross_fit = None
    val_pred = val_alone = None
    if is_val:
        from dermsight.evaluate.data import add_group_columns

        val_frame, val_pred = frame, pred
    t0 = time.perf_counter()
    if reused:
        calibration = dict(run.calibration)
    else:
        if val_pred is None:
            from dermsight.evaluate.data import add_group_columns

            val_frame = add_group_columns(val)
            val_pred = predict_logits(run, val, tta=tta, batch_size=opt.batch_size,
                                      workers=opt.workers, name="run val (calibration)",
                                      progress=opt.progress)
        val_groups = group_values(val_frame, TONE_COLUMN)
        body, _, _ = fit_calibration(val_pred["logits"], val_pred["label"], classes=classes,
                                     method=opt.conformal, coverage=opt.coverage,
                                     mode=opt.conformal_mode, groups=val_groups, seed=opt.seed)
        calibration = {**body, "fitted_on": {
            "split": "val", "n": int(len(val)), "manifest": val_manifest,
            "source": run.config.data.source, "root": run.config.data.root, "tta": tta,
            "created": datetime.now(UTC).isoformat(timespec="seconds")}}
        calibration = {k: calibration[k] for k in ("version", "classes", "temperature",
                                                   "fitted_on", "conformal", "val_metrics")}
        if has_meta:  # the photo-alone path gets its own temperature and thresholds
            val_alone = predict_logits(run, val_frame, tta=tta, batch_size=opt.batch_size,
                                       workers=opt.workers, name="run val, photo alone",
                                       progress=opt.progress, without_metadata=True)
            body, _, _ = fit_calibration(val_alone["logits"], val_alone["label"],
                                         classes=classes, method=opt.conformal,
                                         coverage=opt.coverage, mode=opt.conformal_mode,
                                         groups=val_groups, seed=opt.seed)
            calibration["without_metadata"] = _path_calibration(body)
        run.save_calibration(clean_json(calibration))
    timing["calibration_seconds"] = round(time.perf_counter() - t0, 1)
    if is_val:
        cross_fit = _cross_fit(logits, y, group_values(frame, TONE_COLUMN), classes=classes,
                               method=opt.conformal, coverage=opt.coverage,
                               mode=opt.conformal_mode, seed=opt.seed)

    temperature = float(calibration["temperature"])
    probs_before = softmax(logits, axis=1)
    probs = softmax(logits / temperature, axis=1)
    conf = conformal_from_calibration(calibration)

    # metrics
    summary = metrics.classification_summary(y, probs)
    cm = metrics.confusion(y, probs, len(classes))
    report_metrics = {**summary,
                      "per_class": metrics.per_class(y, probs, classes),
                      "confusion": cm.tolist(),
                      "confusion_normalized": metrics.confusion_normalized(y, probs).tolist(),
                      "most_confused": _most_confused(cm, classes),
                      "lighting": _lighting_metrics(pred)}
    rel_before = reliability_curve(y, probs_before)
    rel_after = reliability_curve(y, probs)
    calib_section = {
        "temperature": temperature, "reused": reused, "fitted_on": calibration["fitted_on"],
        "ece_before": rel_before["ece"], "ece_after": rel_after["ece"], "n_bins": 15,
        "reliability_before": {k: rel_before[k] for k in ("accuracy", "confidence", "counts")},
        "reliability_after": {k: rel_after[k] for k in ("accuracy", "confidence", "counts")},
        "by_group": {col: ece_by_group(y, probs, group_values(frame, col))
                     for col in (TONE_COLUMN, "ita_category", "fitzpatrick_group")
                     if any(g is not None for g in group_values(frame, col))},
        "val_metrics": calibration.get("val_metrics", {}),
    }
    conformal_section, sets = _conformal_section(conf, probs, y, frame, classes,
                                                 opt.conformal_mode)
    if cross_fit is not None:
        calib_section["cross_fit"] = {k: cross_fit[k] for k in ("folds", "repeats", "ece_after",
                                                                "temperature")}
        conformal_section["cross_fit"] = {k: cross_fit[k] for k in (
            "folds", "repeats", "coverage", "mean_set_size", "by_group")}
        conformal_section["cross_fit"]["group_by"] = TONE_COLUMN
    without_metadata = None
    if has_meta:
        t0 = time.perf_counter()
        if val_alone is None or not is_val:  # the scored rows are not the ones just predicted
            val_alone = predict_logits(run, frame, tta=tta, batch_size=opt.batch_size,
                                       workers=opt.workers, name="photo alone",
                                       progress=opt.progress, without_metadata=True)
        without_metadata = _without_metadata_section(
            val_alone["logits"], y, frame, calibration["without_metadata"], opt=opt,
            classes=classes, cross_fit=is_val)
        timing["without_metadata_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    fairness = _fairness(y, probs, frame, n_resamples=opt.bootstrap, seed=opt.seed)
    timing["fairness_seconds"] = round(time.perf_counter() - t0, 1)

    explain, panels = ({"skipped": "--no-cam"}, {})
    if opt.cam and opt.cam_samples > 0:
        t0 = time.perf_counter()
        explain, panels = explain_sample(run, frame, y, probs, samples=opt.cam_samples,
                                         seed=opt.seed)
        timing["cam_seconds"] = round(time.perf_counter() - t0, 1)
    galleries = _galleries(probs, y, frame, classes, sets)
    own_source = source == run.config.data.source
    overlap = _overlap_with_train(
        frame, val_all[val_all["split"] == "train"] if own_source else None, y, probs)

    notes = list(scored.notes)
    if overlap.get("n_group_seen"):
        notes.append(f"{overlap['n_group_seen']} of {overlap['n']} scored images "
                     f"({overlap['share_seen']:.0%}) show a lesion/patient (group_id) that is "
                     "also in the run's training split: see 'Overlap with training' for the "
                     "figures on unseen lesions")
    if is_val:
        notes.append("the scored split IS the run's validation split, on which the temperature "
                     "and conformal thresholds were fitted: ECE after scaling and coverage are "
                     "in-sample here (see the 2-fold cross-fit estimates)")
    data_summary = scored.summary()
    if len(data_summary["excluded"]) > 100:
        data_summary["n_excluded"] = len(data_summary["excluded"])
        data_summary["excluded"] = data_summary["excluded"][:100]
    else:
        data_summary["n_excluded"] = len(data_summary["excluded"])
    report = {
        "dermsight_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "run": str(run_path), "run_name": run_path.name, "classes": classes,
        "source": source, "split": opt.split, "n": int(len(y)), "tta": tta,
        "is_validation_split": is_val, "notes": notes, "data": data_summary,
        "metrics": report_metrics, "calibration": calib_section,
        "conformal": conformal_section, "fairness": fairness,
        "fairness_settings": {"n_resamples": opt.bootstrap, "seed": opt.seed, "min_n": 30,
                              "ci": 0.95, "gap_metric": "accuracy",
                              "bootstrapped": list(FAIRNESS_METRICS),
                              "without_ci": ["auroc_macro", "ece"]},
        "explain": explain, "galleries": galleries, "overlap_with_train": overlap,
        "without_metadata": without_metadata,
    }

    out = Path(opt.out) if opt.out else run_path / f"eval-{source}-{opt.split}"
    t0 = time.perf_counter()
    with staging_dir(out, last="report.json") as stage:
        table = pd.DataFrame({"image_id": frame["image_id"].astype(str).to_numpy(),
                              "label": [classes[k] for k in y]})
        for k, c in enumerate(classes):
            table[c] = probs[:, k]
        table["prediction"] = [classes[k] for k in probs.argmax(1)]
        table["prediction_set"] = ["|".join(classes[k] for k in np.flatnonzero(s)) for s in sets]
        atomic_write_text(stage / "predictions.csv", table.to_csv(index=False,
                                                                  float_format="%.6g"))
        report["figures"] = figures.write_eval_figures(
            stage / "figures", report, classes=classes, panels=panels,
            gallery_images=_gallery_images(run, frame, galleries))
        timing["write_seconds"] = round(time.perf_counter() - t0, 1)
        timing["total_seconds"] = round(time.perf_counter() - started, 1)
        report["timing"] = timing
        report = clean_json(report)
        atomic_write_text(stage / "report.html",
                          report_html.render(report, stage / "figures"))
        atomic_write_text(stage / "report.json", json.dumps(report, indent=2))
    return EvalResult(out=out, report=report, calibration=calibration)


def _gallery_images(run, frame, galleries: dict) -> dict:
    ds = _dataset(run, frame, "gallery")
    return {name: [run.preprocess.resize_crop(ds.load_image(r["index"])) for r in rows]
            for name, rows in galleries.items()}
