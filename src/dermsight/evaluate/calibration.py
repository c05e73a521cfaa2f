"""Calibration: top-label ECE, reliability curve, temperature scaling, ECE per group.

Shapes: ``y_true`` (n,) integer class indices; ``probs`` (n, C) probabilities (rows sum to 1);
``logits`` (n, C) unnormalised scores; ``groups`` (n,) group labels (missing = no group).

Bins are equal-width on the top-label confidence: bin ``b`` (0-based) holds confidences in
``(b/n_bins, (b+1)/n_bins]`` (a confidence of exactly 0 goes to the first bin).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, logsumexp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from dermsight.evaluate._validate import (
    check_labels,
    check_matrix,
    check_positive_int,
    check_probs,
    group_indices,
)

#: Floor applied to probabilities before taking logs (``from_probs=True``).
_EPS = 1e-12


def _binned(y_true, probs, n_bins: int):
    """(counts, mean accuracy, mean confidence) per bin, each (n_bins,); NaN for empty bins."""
    probs = check_probs(probs)
    y = check_labels(y_true, len(probs), probs.shape[1])
    n_bins = check_positive_int(n_bins, "n_bins")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    counts = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / counts
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / counts
    return counts, acc, mean_conf


def expected_calibration_error(y_true, probs, n_bins: int = 15) -> float:
    """Top-label ECE: ``sum_b (n_b / n) · |accuracy_b − confidence_b|`` over equal-width bins.

    ``y_true`` (n,), ``probs`` (n, C). Returns a float in [0, 1].
    """
    counts, acc, conf = _binned(y_true, probs, n_bins)
    full = counts > 0
    return float(np.sum(counts[full] * np.abs(acc[full] - conf[full])) / counts.sum())


def reliability_curve(y_true, probs, n_bins: int = 15) -> dict:
    """Data for a reliability diagram of the top-label confidence.

    Returns ``{"bin_centres", "accuracy", "confidence", "counts", "edges", "ece"}``: the first
    four are (n_bins,) arrays (accuracy and confidence NaN in empty bins), ``edges`` is
    (n_bins + 1,) and ``ece`` the :func:`expected_calibration_error` of the same bins.
    """
    counts, acc, conf = _binned(y_true, probs, n_bins)
    edges = np.linspace(0.0, 1.0, len(counts) + 1)
    full = counts > 0
    ece = float(np.sum(counts[full] * np.abs(acc[full] - conf[full])) / counts.sum())
    return {"bin_centres": (edges[:-1] + edges[1:]) / 2, "accuracy": acc, "confidence": conf,
            "counts": counts, "edges": edges, "ece": ece}


def ece_by_group(y_true, probs, groups, n_bins: int = 15, min_n: int = 30) -> dict:
    """ECE per group: ``{group: {"n": int, "ece": float, "small": n < min_n}}``.

    ``y_true`` (n,), ``probs`` (n, C), ``groups`` (n,). Rows with a missing group are left out;
    groups keep sorted order. Small groups are computed but flagged (their ECE is noisy).
    """
    probs = check_probs(probs)
    y = check_labels(y_true, len(probs), probs.shape[1])
    min_n = check_positive_int(min_n, "min_n", minimum=0)
    out = {}
    for g, idx in group_indices(groups, len(probs)).items():
        out[g] = {"n": int(len(idx)),
                  "ece": expected_calibration_error(y[idx], probs[idx], n_bins),
                  "small": bool(len(idx) < min_n)}
    return out


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    z = logits / temperature
    return float(np.mean(logsumexp(z, axis=1) - z[np.arange(len(y)), y]))


class TemperatureScaler(BaseEstimator):
    """Temperature scaling (Guo et al. 2017): ``softmax(logits / T)`` with T fitted by NLL.

    Parameters (keyword-only): ``from_probs`` — inputs are probabilities (n, C) and their logs
    are used as logits; ``bounds`` — search range of T (the minimisation is over log T, bounded).

    Learned attributes: ``temperature_`` (float > 0), ``n_classes_``, ``n_features_in_`` (= C),
    ``nll_before_`` / ``nll_after_`` (mean NLL on the fitting data at T = 1 and T =
    ``temperature_``).
    """

    def __init__(self, *, from_probs: bool = False, bounds: tuple[float, float] = (0.05, 20.0)):
        self.from_probs = from_probs
        self.bounds = bounds

    def _logits(self, X, name: str) -> np.ndarray:
        if self.from_probs:
            return np.log(np.clip(check_probs(X, name), _EPS, None))
        return check_matrix(X, name)

    def fit(self, logits, y_true):
        """Fit ``temperature_`` on ``logits`` (n, C) (probabilities when ``from_probs``) and
        ``y_true`` (n,). Returns self."""
        lo, hi = (float(b) for b in self.bounds)
        if not 0 < lo < hi:
            raise ValueError(f"bounds must satisfy 0 < low < high; got {self.bounds!r}")
        z = self._logits(logits, "logits")
        y = check_labels(y_true, len(z), z.shape[1], other="logits")
        res = minimize_scalar(lambda t: _nll(z, y, float(np.exp(t))), method="bounded",
                              bounds=(np.log(lo), np.log(hi)), options={"xatol": 1e-6})
        self.temperature_ = float(np.exp(res.x))
        self.n_classes_ = self.n_features_in_ = int(z.shape[1])
        self.nll_before_ = _nll(z, y, 1.0)
        self.nll_after_ = _nll(z, y, self.temperature_)
        return self

    def transform(self, logits) -> np.ndarray:
        """Calibrated probabilities (n, C) of ``logits`` (n, C) (probabilities when
        ``from_probs``)."""
        check_is_fitted(self, "temperature_")
        z = self._logits(logits, "logits")
        if z.shape[1] != self.n_classes_:
            raise ValueError(f"logits has {z.shape[1]} columns; the scaler was fitted on "
                             f"{self.n_classes_} classes")
        return np.exp(log_softmax(z / self.temperature_, axis=1))

    def predict_proba(self, logits) -> np.ndarray:
        """Alias of :meth:`transform`."""
        return self.transform(logits)
