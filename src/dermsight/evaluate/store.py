"""The calibration store: fit a run's temperature and conformal thresholds on its validation
split, keep them in ``<run>/calibration.json`` (:class:`dermsight.schemas.Calibration`), re-use
them when they were fitted with the same settings, rebuild the prediction sets from them, and
estimate honestly (cross-fitting) when the scored split is the calibration split.

Rebuilding a prediction set from calibrated probabilities ``p`` (C,): with ``q`` the row's
threshold (``thresholds[key]`` when present, else ``qhat``), class ``k`` is in the set when its
score ≤ ``q``: LAC score ``1 − p_k``; APS score = the sum of the probabilities of the classes
ranked at or above ``k`` (sorted by decreasing ``p``, stable). The top class is always in the
set. This is :class:`dermsight.evaluate.conformal.ConformalClassifier` (rebuilt by
:func:`conformal_from_calibration`).
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.special import softmax

from dermsight import metrics
from dermsight.config import tta_or_none
from dermsight.errors import ConfigError
from dermsight.evaluate._validate import group_indices
from dermsight.evaluate.calibration import TemperatureScaler, expected_calibration_error
from dermsight.evaluate.conformal import ConformalClassifier
from dermsight.evaluate.data import group_values
from dermsight.schemas import Calibration, ConformalSettings, ValMetrics

log = logging.getLogger("dermsight.evaluate")

#: The skin-tone column conformal coverage is reported by, and "group" mode groups by.
TONE_COLUMN = "tone_bucket"
CROSS_FIT_REPEATS = 20


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
    body = Calibration(
        classes=list(classes), temperature=float(scaler.temperature_),
        conformal=ConformalSettings(
            method=method, mode=mode, target=float(coverage), alpha=float(1.0 - coverage),
            randomized=False, qhat=float(conf.threshold_), thresholds=thresholds,
            group_by=TONE_COLUMN if mode == "group" else None,
            fallback=[classes[k] if mode == "class" else str(k) for k in conf.fallback_],
            n_calibration=int(conf.n_calibration_),
            score=("LAC: 1 - p_k" if method == "lac" else
                   "APS: cumulative probability of the classes ranked at or above k")),
        val_metrics=ValMetrics(
            n=int(len(y)), accuracy=metrics.accuracy(y, probs),
            nll_before=float(scaler.nll_before_), nll_after=float(scaler.nll_after_),
            ece_before=expected_calibration_error(y, softmax(logits, axis=1)),
            ece_after=expected_calibration_error(y, probs),
            coverage=rep["coverage"], mean_set_size=rep["mean_set_size"]))
    return body.dump(), scaler, conf


def _inf(value: float | None) -> float:
    """A stored threshold: ``null`` is +inf (JSON has no infinity)."""
    return math.inf if value is None else float(value)


def conformal_from_settings(settings: ConformalSettings, classes: list[str]
                            ) -> ConformalClassifier:
    """The fitted :class:`ConformalClassifier` described by calibration.json's ``conformal``."""
    conf = ConformalClassifier(method=settings.method, alpha=settings.alpha, mode=settings.mode,
                               randomized=settings.randomized)
    conf.threshold_ = _inf(settings.qhat)
    if settings.mode == "class":
        unknown = [k for k in settings.thresholds if k not in classes]
        if unknown:
            raise ConfigError(f"calibration.json: field 'conformal.thresholds' names {unknown}, "
                              f"not classes of the model {classes}")
        conf.thresholds_ = {classes.index(k): _inf(v) for k, v in settings.thresholds.items()}
    else:
        conf.thresholds_ = {k: _inf(v) for k, v in settings.thresholds.items()}
    conf.fallback_ = list(settings.fallback)
    conf.calibration_counts_ = {}
    conf.n_calibration_ = settings.n_calibration
    conf.n_classes_ = conf.n_features_in_ = len(classes)
    return conf


def conformal_from_calibration(calibration: Calibration | dict) -> ConformalClassifier:
    """The fitted :class:`ConformalClassifier` described by a ``calibration.json`` body (a
    dict is validated first; a broken one raises ConfigError naming the field)."""
    if not isinstance(calibration, Calibration):
        calibration = Calibration.parse(calibration)
    return conformal_from_settings(calibration.conformal, calibration.classes)


def reusable(calibration: Calibration | None, want: dict) -> bool:
    """Whether a stored calibration was fitted with the settings in ``want``."""
    if calibration is None:
        return False
    c, f = calibration.conformal, calibration.fitted_on
    return (calibration.classes == want["classes"] and f is not None
            and f.split == "val" and f.n == want["n"]
            and f.manifest == want["manifest"] and tta_or_none(f.tta) == want["tta"]
            and c.method == want["method"] and c.mode == want["mode"]
            and abs(c.target - want["target"]) < 1e-9
            and (calibration.without_metadata is not None)
            == want.get("without_metadata", False))


def stored_calibration(run) -> Calibration | None:
    """The run's calibration.json, validated (None when the run has none)."""
    if not run.calibration:
        return None
    from dermsight.train.checkpoint import CALIBRATION

    return Calibration.parse(run.calibration, run.run_dir / CALIBRATION
                             if run.run_dir is not None else CALIBRATION)


def fit_and_store(run, val_pred: dict, val_groups, *, opt, fitted_on: dict,
                  alone_pred: dict | None = None) -> Calibration:
    """Fit the main path (``val_pred``) and, when given, the photo-alone path (``alone_pred``)
    on the validation rows, store them in the run's calibration.json and return them."""
    def fit(pred):
        return fit_calibration(pred["logits"], pred["label"], classes=list(run.classes),
                               method=opt.conformal, coverage=opt.coverage,
                               mode=opt.conformal_mode, groups=val_groups, seed=opt.seed)[0]

    body = fit(val_pred)
    body["fitted_on"] = {**fitted_on,
                         "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if alone_pred is not None:  # the photo-alone path gets its own temperature and thresholds
        alone = fit(alone_pred)
        body["without_metadata"] = {k: alone[k] for k in ("temperature", "conformal",
                                                          "val_metrics")}
    calibration = Calibration.parse(clean_json(body))
    run.save_calibration(calibration.dump())
    return calibration


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


def cross_fit(logits, y, groups, *, classes, method, coverage, mode, seed,
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


def cross_fit_frame(logits, y, frame, opt, classes: list[str]) -> dict:
    """:func:`cross_fit` of ``frame``'s rows with the evaluation's settings."""
    return cross_fit(logits, y, group_values(frame, TONE_COLUMN), classes=classes,
                     method=opt.conformal, coverage=opt.coverage, mode=opt.conformal_mode,
                     seed=opt.seed)
