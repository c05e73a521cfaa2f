"""The sections of ``dermsight evaluate``'s report: metrics beyond the summary, conformal
coverage by group, fairness with bootstrap CIs, overlap with training, the photo-alone path,
the galleries. Each is computed from predictions (numpy) and formatted, never recomputed
elsewhere; the sections export reads are typed in :mod:`dermsight.schemas`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import softmax

from dermsight import metrics
from dermsight.evaluate.calibration import (
    ece_by_group,
    expected_calibration_error,
    reliability_curve,
)
from dermsight.evaluate.conformal import ConformalClassifier, set_to_words
from dermsight.evaluate.data import GROUP_COLUMNS, group_values
from dermsight.evaluate.fairness import group_metrics
from dermsight.evaluate.store import TONE_COLUMN, conformal_from_settings, cross_fit_frame
from dermsight.schemas import Calibration, PathCalibration

#: Metrics bootstrapped per group (AUROC and ECE per group are reported without a CI: the
#: AUROC bootstrap costs ten times the rest together).
FAIRNESS_METRICS = {"accuracy": metrics.accuracy,
                    "balanced_accuracy": metrics.balanced_accuracy,
                    "f1_macro": metrics.f1_macro}
GALLERY_SIZE = 8


def lighting_metrics(pred: dict) -> dict:
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


def most_confused(cm: np.ndarray, classes: list[str], k: int = 5) -> list[dict]:
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


def fairness(y, probs, frame: pd.DataFrame, *, n_resamples: int, seed: int) -> dict:
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


def overlap_with_train(frame: pd.DataFrame, train: pd.DataFrame | None, y, probs) -> dict:
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


def conformal_section(conf: ConformalClassifier, probs, y, frame, classes,
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


def galleries(probs, y, frame, classes, sets) -> dict:
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




def metrics_section(y, probs, classes: list[str], pred: dict) -> dict:
    """The report's ``metrics``: the summary, per class, confusion, lighting head."""
    cm = metrics.confusion(y, probs, len(classes))
    return {**metrics.classification_summary(y, probs),
            "per_class": metrics.per_class(y, probs, classes),
            "confusion": cm.tolist(),
            "confusion_normalized": metrics.confusion_normalized(y, probs).tolist(),
            "most_confused": most_confused(cm, classes),
            "lighting": lighting_metrics(pred)}


def calibration_section(y, logits, probs, frame, calibration: Calibration, *,
                        reused: bool) -> dict:
    """The report's ``calibration``: temperature, reliability before / after, ECE by group."""
    rel_before = reliability_curve(y, softmax(logits, axis=1))
    rel_after = reliability_curve(y, probs)
    val_metrics = calibration.val_metrics
    return {
        "temperature": calibration.temperature, "reused": reused,
        "fitted_on": calibration.fitted_on.dump() if calibration.fitted_on else None,
        "ece_before": rel_before["ece"], "ece_after": rel_after["ece"], "n_bins": 15,
        "reliability_before": {k: rel_before[k] for k in ("accuracy", "confidence", "counts")},
        "reliability_after": {k: rel_after[k] for k in ("accuracy", "confidence", "counts")},
        "by_group": {col: ece_by_group(y, probs, group_values(frame, col))
                     for col in (TONE_COLUMN, "ita_category", "fitzpatrick_group")
                     if any(g is not None for g in group_values(frame, col))},
        "val_metrics": val_metrics.dump() if val_metrics is not None else {},
    }


def add_cross_fit(calib_section: dict, conformal: dict, cross_fit: dict) -> None:
    """Put the cross-fitted estimates (the scored split is the calibration split) into the
    calibration and conformal sections."""
    calib_section["cross_fit"] = {k: cross_fit[k] for k in ("folds", "repeats", "ece_after",
                                                            "temperature")}
    conformal["cross_fit"] = {k: cross_fit[k] for k in (
        "folds", "repeats", "coverage", "mean_set_size", "by_group")}
    conformal["cross_fit"]["group_by"] = TONE_COLUMN


def without_metadata_section(logits, y, frame, path: PathCalibration, *, opt, classes,
                             cross_fit: bool) -> dict:
    """The photo-alone path of a model with metadata (``logits`` of ``frame``'s rows without
    metadata), scored with its own calibration ``path``: metrics, ECE before / after its own
    temperature, conformal coverage, and (on the validation split) cross-fitted ECE and
    coverage by skin-tone group."""
    probs = softmax(logits / path.temperature, axis=1)
    conf = conformal_from_settings(path.conformal, classes)
    sets, covered = sets_and_coverage(conf, probs, y, frame)
    out = {"temperature": path.temperature,
           "metrics": metrics.classification_summary(y, probs),
           "ece_before": expected_calibration_error(y, softmax(logits, axis=1)),
           "ece_after": expected_calibration_error(y, probs),
           "coverage": float(covered.mean()), "mean_set_size": float(sets.sum(1).mean()),
           "val_metrics": path.val_metrics.dump() if path.val_metrics is not None else {}}
    if cross_fit:
        fit = cross_fit_frame(logits, y, frame, opt, classes)
        out["cross_fit"] = {k: fit[k] for k in ("folds", "repeats", "ece_after", "coverage",
                                                "mean_set_size", "by_group")}
    return out


def sets_and_coverage(conf: ConformalClassifier, probs, y, frame
                      ) -> tuple[np.ndarray, np.ndarray]:
    groups = group_values(frame, TONE_COLUMN) if conf.mode == "group" else None
    sets = conf.predict_sets(probs, groups)
    return sets, sets[np.arange(len(y)), y]
