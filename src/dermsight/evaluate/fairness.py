"""Fairness: metrics per group with bootstrap confidence intervals, and the largest gap.

Shapes: ``y_true`` (n,) integer class indices; ``probs`` (n, C) probabilities; ``groups`` (n,)
group labels (None / NaN / "" = no group). Metrics are ``fn(y_true, probs) -> float`` pure
functions (:mod:`dermsight.metrics`); a metric is *undefined* on a sample when it raises
``ValueError`` / ``ZeroDivisionError`` / ``FloatingPointError`` or returns NaN / inf.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

from dermsight.evaluate._validate import (
    check_alpha,
    check_labels,
    check_positive_int,
    check_probs,
    group_indices,
)
from dermsight.features.skintone import ita_category, tone_bucket
from dermsight.metrics import accuracy, auroc_macro, balanced_accuracy, f1_macro

#: The metrics :func:`group_metrics` reports by default.
DEFAULT_METRICS: dict[str, Callable] = {
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "f1_macro": f1_macro,
    "auroc_macro": auroc_macro,
}


class ConfidenceInterval(tuple):
    """A ``(low, high)`` tuple that also carries ``n_resamples`` and ``n_skipped`` (resamples
    on which the metric was undefined). Serialises to JSON as ``[low, high]``."""

    def __new__(cls, low: float, high: float, n_resamples: int = 0, n_skipped: int = 0):
        self = super().__new__(cls, (float(low), float(high)))
        self.n_resamples = int(n_resamples)
        self.n_skipped = int(n_skipped)
        return self

    @property
    def low(self) -> float:
        return self[0]

    @property
    def high(self) -> float:
        return self[1]


def _safe(metric_fn: Callable, *arrays) -> float:
    """``metric_fn(*arrays)`` as a float, NaN when undefined."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(metric_fn(*arrays))
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return float("nan")
    return value if np.isfinite(value) else float("nan")


def _interval(stats: list[float], alpha: float, n_resamples: int) -> ConfidenceInterval:
    values = np.asarray(stats, dtype=np.float64)
    ok = values[np.isfinite(values)]
    skipped = n_resamples - len(ok)
    if len(ok) == 0:
        return ConfidenceInterval(np.nan, np.nan, n_resamples, skipped)
    low, high = np.percentile(ok, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return ConfidenceInterval(low, high, n_resamples, skipped)


def bootstrap_ci(metric_fn: Callable, *arrays, n_resamples: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> ConfidenceInterval:
    """Percentile bootstrap ``(1 − alpha)`` interval of ``metric_fn(*arrays)``.

    ``arrays``: one or more arrays with the same first dimension n; each resample draws n rows
    with replacement (the same rows from every array). Resamples on which the metric is
    undefined are skipped and counted in ``.n_skipped``; ``(nan, nan)`` when all are.
    Deterministic for a given ``seed``.
    """
    if not arrays:
        raise ValueError("arrays: pass at least one array to resample")
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    for i, a in enumerate(arrs):
        if a.ndim == 0 or len(a) != n:
            raise ValueError(f"arrays must share their first dimension; array 0 has {n} rows, "
                             f"array {i} has shape {a.shape}")
    if n == 0:
        raise ValueError("arrays have no rows: nothing to resample")
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    alpha = check_alpha(alpha)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, n)
        stats.append(_safe(metric_fn, *(a[idx] for a in arrs)))
    return _interval(stats, alpha, n_resamples)


def paired_bootstrap_ci(metric_fn: Callable, y_true, probs, base, *, n_resamples: int = 1000,
                        seed: int = 0, alpha: float = 0.05) -> ConfidenceInterval:
    """Bootstrap interval of ``metric_fn(y, probs) − metric_fn(y, base)`` for two predictions of
    the same rows, each resample drawing the same rows for both (:func:`bootstrap_ci`)."""
    return bootstrap_ci(lambda y, a, b: metric_fn(y, a) - metric_fn(y, b), y_true, probs, base,
                        n_resamples=n_resamples, seed=seed, alpha=alpha)


def group_metrics(y_true, probs, groups, *, metrics: dict[str, Callable] | None = None,
                  n_resamples: int = 1000, seed: int = 0, min_n: int = 30,
                  gap_metric: str = "accuracy") -> dict:
    """Every metric per group with its 95 % bootstrap CI, and the largest gap between groups.

    ``y_true`` (n,), ``probs`` (n, C), ``groups`` (n,); ``metrics`` {name: fn(y_true, probs)}
    (default :data:`DEFAULT_METRICS`). Returns::

        {"groups": {group: {"n", "small", <name>, "<name>_ci95": (low, high), ...,
                            "ci_skipped": {name: resamples skipped, only where > 0}}},
         "gap_metric", "min_n", "n_resamples",
         "max_gap", "max_gap_ci95", "max_gap_groups": [best, worst]}

    Groups with fewer than ``min_n`` rows are reported with ``small: True`` but never ranked.
    ``max_gap`` is the largest difference in ``gap_metric`` between two groups with n ≥
    ``min_n``; its CI is a paired, group-stratified bootstrap of the difference between those
    two groups (each replicate resamples rows within each group from one seeded stream). It
    does not account for having picked the extreme pair. The gap fields are None with fewer
    than two rankable groups. Undefined metric values are NaN.
    """
    p = check_probs(probs)
    y = check_labels(y_true, len(p), p.shape[1])
    metrics = DEFAULT_METRICS if metrics is None else dict(metrics)
    if not metrics:
        raise ValueError("metrics must name at least one metric")
    if gap_metric not in metrics:
        raise ValueError(f"gap_metric {gap_metric!r} is not one of metrics {list(metrics)}")
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    min_n = check_positive_int(min_n, "min_n", minimum=0)
    parts = group_indices(groups, len(p))

    per_group = {}
    for g, idx in parts.items():
        row: dict = {"n": int(len(idx)), "small": bool(len(idx) < min_n)}
        skipped = {}
        for name, fn in metrics.items():
            row[name] = _safe(fn, y[idx], p[idx])
            ci = bootstrap_ci(fn, y[idx], p[idx], n_resamples=n_resamples, seed=seed)
            row[f"{name}_ci95"] = ci
            if ci.n_skipped:
                skipped[name] = ci.n_skipped
        row["ci_skipped"] = skipped
        per_group[g] = row

    out = {"groups": per_group, "gap_metric": gap_metric, "min_n": min_n,
           "n_resamples": n_resamples, "max_gap": None, "max_gap_ci95": None,
           "max_gap_groups": None}
    ranked = {g: r[gap_metric] for g, r in per_group.items()
              if not r["small"] and np.isfinite(r[gap_metric])}
    if len(ranked) < 2:
        return out
    best = max(ranked, key=ranked.get)
    worst = min(ranked, key=ranked.get)
    out["max_gap"] = float(ranked[best] - ranked[worst])
    out["max_gap_groups"] = [best, worst]
    out["max_gap_ci95"] = _paired_gap_ci(metrics[gap_metric], y, p, parts[best], parts[worst],
                                         n_resamples, seed)
    return out


def _paired_gap_ci(fn: Callable, y: np.ndarray, p: np.ndarray, idx_a: np.ndarray,
                   idx_b: np.ndarray, n_resamples: int, seed: int) -> ConfidenceInterval:
    """95 % CI of ``fn(group a) − fn(group b)``, resampling rows within each group."""
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_resamples):
        ra = idx_a[rng.integers(0, len(idx_a), len(idx_a))]
        rb = idx_b[rng.integers(0, len(idx_b), len(idx_b))]
        stats.append(_safe(fn, y[ra], p[ra]) - _safe(fn, y[rb], p[rb]))
    return _interval(stats, 0.05, n_resamples)


def ita_groups(ita, *, kind: str = "category") -> np.ndarray:
    """Skin-tone group of each ITA value (degrees), object array (n,).

    ``kind="category"``: Chardon category (very_light … dark) from
    :func:`dermsight.features.skintone.ita_category`; ``kind="bucket"``: light / medium / dark
    from :func:`~dermsight.features.skintone.tone_bucket`. Missing ITA (NaN / None) → None
    (no group).
    """
    if kind not in ("category", "bucket"):
        raise ValueError(f'kind must be "category" or "bucket"; got {kind!r}')
    fn = ita_category if kind == "category" else tone_bucket
    values = np.atleast_1d(np.asarray(ita, dtype=object))
    if values.ndim != 1:
        raise ValueError(f"ita must be 1-D (n,); got shape {values.shape}")
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = None if pd.isna(v) else fn(float(v))
    return out
