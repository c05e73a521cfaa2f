"""Split-conformal prediction sets (LAC or APS), marginal, class- or group-conditional.

Shapes: ``probs`` (n, C) probabilities (calibrated ones give smaller sets); ``y_true`` (n,)
integer class indices; ``groups`` (n,) group labels (missing = no group); prediction sets are
bool (n, C), ``sets[i, k]`` meaning class k is in the set of sample i.

Scores (larger = less conforming). LAC (Sadinle et al. 2019): ``1 − p_k``. APS (Romano et al.
2020): the total probability of the classes ranked at or above k; randomised APS subtracts
``U · p_k`` with ``U ~ Uniform(0, 1)`` per sample (exact coverage in expectation, smaller sets).
The threshold is the ``ceil((n + 1)(1 − alpha)) / n`` empirical quantile (inverted CDF, i.e. the
``ceil((n + 1)(1 − alpha))``-th smallest) of the calibration scores of the true classes, or +inf
when that level exceeds 1 (too few calibration points: every class is in the set). Under
exchangeability the set holds the true class with probability ≥ 1 − alpha: over all samples
(``mode="marginal"``), within each true class (``"class"``, Mondrian by label) or within each
group (``"group"``). A class or group with fewer than ``min_calibration`` points uses the
marginal threshold and is listed in ``fallback_``. Sets are never empty: the top class is always
included (so coverage can exceed the target where the top class is usually right).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from dermsight.evaluate._validate import (
    check_alpha,
    check_labels,
    check_positive_int,
    check_probs,
    group_indices,
)
from dermsight.predsets import conformity_scores, prediction_sets

METHODS = ("aps", "lac")
MODES = ("marginal", "class", "group")


def conformal_quantile(scores, alpha: float) -> float:
    """The split-conformal threshold of calibration ``scores`` (n,) at miscoverage ``alpha``."""
    scores = np.asarray(scores, dtype=np.float64)
    # the k-th smallest score, k = ceil((n + 1)(1 − alpha)): the inverted-CDF quantile at level
    # k / n; the tolerance keeps float error in (n + 1)(1 − alpha) from adding a whole rank
    k = math.ceil((len(scores) + 1) * (1 - check_alpha(alpha)) - 1e-9)
    if k > len(scores):
        return math.inf
    return float(np.partition(scores, k - 1)[k - 1])


def coverage(sets, y_true) -> float:
    """Share of samples whose set (bool (n, C)) contains the true class ``y_true`` (n,)."""
    sets = np.asarray(sets, dtype=bool)
    if sets.ndim != 2:
        raise ValueError(f"sets must be a 2-D bool array (n, C); got shape {sets.shape}")
    y = check_labels(y_true, len(sets), sets.shape[1], other="sets")
    if len(y) == 0:
        raise ValueError("sets has no rows: nothing to score")
    return float(sets[np.arange(len(y)), y].mean())


def mean_set_size(sets) -> float:
    """Mean number of classes per set; ``sets`` bool (n, C)."""
    sets = np.asarray(sets, dtype=bool)
    if sets.ndim != 2 or len(sets) == 0:
        raise ValueError(f"sets must be a non-empty 2-D bool array (n, C); got {sets.shape}")
    return float(sets.sum(axis=1).mean())


def set_to_words(set_row, classes) -> str:
    """The classes of one set in words, in class order: "eczema", "eczema or psoriasis",
    "eczema, psoriasis or urticaria". ``set_row`` bool (C,), ``classes`` C names."""
    row = np.asarray(set_row, dtype=bool)
    if row.ndim != 1 or len(row) != len(classes):
        raise ValueError(f"set_row must be a bool vector with one entry per class "
                         f"({len(classes)}); got shape {row.shape}")
    names = [str(classes[k]) for k in np.flatnonzero(row)]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


class ConformalClassifier(BaseEstimator):
    """Split-conformal prediction sets from predicted probabilities (see the module docstring).

    Parameters (keyword-only): ``method`` "aps" | "lac"; ``alpha`` target miscoverage (sets
    cover 1 − alpha); ``mode`` "marginal" | "class" | "group"; ``randomized`` (APS only);
    ``min_calibration`` smallest class / group calibrated on its own; ``seed`` for the
    randomisation.

    Learned attributes: ``threshold_`` (marginal threshold), ``thresholds_`` ({class index or
    group: threshold} in "class" / "group" mode, empty otherwise; fallen-back keys hold the
    marginal one), ``fallback_`` (keys with fewer than ``min_calibration`` points),
    ``calibration_counts_`` ({key: n}), ``n_calibration_``, ``n_classes_``, ``n_features_in_``.
    """

    def __init__(self, *, method: str = "aps", alpha: float = 0.1, mode: str = "marginal",
                 randomized: bool = False, min_calibration: int = 20, seed: int = 0):
        self.method = method
        self.alpha = alpha
        self.mode = mode
        self.randomized = randomized
        self.min_calibration = min_calibration
        self.seed = seed

    # -- scores -------------------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        check_alpha(self.alpha)
        check_positive_int(self.min_calibration, "min_calibration")

    def _scores(self, probs: np.ndarray, stream: int) -> np.ndarray:
        """Non-conformity score of every class, (n, C) (:func:`dermsight.predsets.
        conformity_scores`, the rule the serving engine uses)."""
        return conformity_scores(probs, self.method, randomized=self.randomized, seed=self.seed,
                                 stream=stream)

    # -- fit / predict ------------------------------------------------------------------------
    def fit(self, probs, y_true, groups=None):
        """Calibrate on ``probs`` (n, C), ``y_true`` (n,) and, in "group" mode, ``groups``
        (n,). Returns self."""
        self._check_params()
        p = check_probs(probs)
        y = check_labels(y_true, len(p), p.shape[1])
        true_scores = self._scores(p, stream=0)[np.arange(len(y)), y]
        self.threshold_ = conformal_quantile(true_scores, self.alpha)
        if self.mode == "class":
            parts = {k: np.flatnonzero(y == k) for k in range(p.shape[1])}
        elif self.mode == "group":
            if groups is None:
                raise ValueError('groups is required when mode="group"')
            parts = group_indices(groups, len(p))
        else:
            parts = {}
        self.thresholds_, self.fallback_, self.calibration_counts_ = {}, [], {}
        for key, idx in parts.items():
            self.calibration_counts_[key] = int(len(idx))
            if len(idx) < self.min_calibration:
                self.fallback_.append(key)
                self.thresholds_[key] = self.threshold_
            else:
                self.thresholds_[key] = conformal_quantile(true_scores[idx], self.alpha)
        self.n_calibration_ = int(len(y))
        self.n_classes_ = self.n_features_in_ = int(p.shape[1])
        return self

    def _check_probs(self, probs) -> np.ndarray:
        check_is_fitted(self, "threshold_")
        p = check_probs(probs)
        if p.shape[1] != self.n_classes_:
            raise ValueError(f"probs has {p.shape[1]} columns; fitted on {self.n_classes_}")
        return p

    def predict_sets(self, probs, groups=None) -> np.ndarray:
        """Prediction sets, bool (n, C), of ``probs`` (n, C). In "group" mode ``groups`` (n,)
        is required; rows whose group is missing or unseen use the marginal threshold."""
        p = self._check_probs(probs)
        thr = np.full(p.shape, self.threshold_)
        if self.mode == "class":
            thr[:] = [self.thresholds_.get(k, self.threshold_) for k in range(p.shape[1])]
        elif self.mode == "group":
            if groups is None:
                raise ValueError('groups is required when mode="group"')
            for key, idx in group_indices(groups, len(p)).items():
                thr[idx] = self.thresholds_.get(key, self.threshold_)
        return prediction_sets(p, thr, scores=self._scores(p, stream=1))

    coverage = staticmethod(coverage)
    mean_set_size = staticmethod(mean_set_size)

    def report(self, probs, y_true, groups=None) -> dict:
        """Coverage and set size of the sets of ``probs`` (n, C) against ``y_true`` (n,).

        Returns ``{"method", "mode", "alpha", "target", "coverage", "mean_set_size",
        "fallback", "by_group": {group: {"n", "coverage", "mean_set_size"}}}`` (``by_group``
        empty without ``groups``; rows with a missing group are in no group).
        """
        p = self._check_probs(probs)
        y = check_labels(y_true, len(p), p.shape[1])
        sets = self.predict_sets(p, groups)
        by_group = {}
        if groups is not None:
            for key, idx in group_indices(groups, len(p)).items():
                by_group[key] = {"n": int(len(idx)), "coverage": coverage(sets[idx], y[idx]),
                                 "mean_set_size": mean_set_size(sets[idx])}
        return {"method": self.method, "mode": self.mode, "alpha": float(self.alpha),
                "target": 1.0 - float(self.alpha), "coverage": coverage(sets, y),
                "mean_set_size": mean_set_size(sets), "fallback": list(self.fallback_),
                "by_group": by_group}
