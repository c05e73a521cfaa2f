"""Input checks shared by the evaluation building blocks. Errors name the offending argument.

Shapes: ``y_true`` (n,) integer class indices in ``0 … C-1``; ``probs`` (n, C) probabilities
(finite, non-negative, rows summing to 1); ``logits`` (n, C) finite reals; ``groups`` (n,) any
hashable labels, where missing values (None, NaN, pandas NA, "") belong to no group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Largest tolerated deviation of a probability row's sum from 1 (float32 softmax is ~1e-7).
SUM_TOL = 1e-3


def check_matrix(x, name: str) -> np.ndarray:
    """``x`` as a finite float64 (n, C) array with n ≥ 1 and C ≥ 2."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"{name} must be a 2-D array (n, C) with C >= 2; got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} has no rows: nothing to evaluate")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_probs(probs, name: str = "probs") -> np.ndarray:
    """``probs`` as float64 (n, C); raises when negative or a row does not sum to 1."""
    p = check_matrix(probs, name)
    if (p < 0).any():
        raise ValueError(f"{name} contains negative values; expected probabilities")
    dev = float(np.abs(p.sum(axis=1) - 1.0).max())
    if dev > SUM_TOL:
        raise ValueError(f"{name} rows must sum to 1 (largest deviation {dev:.3g}); "
                         "pass probabilities, not logits")
    return p


def check_labels(y_true, n: int, n_classes: int, name: str = "y_true",
                 other: str = "probs") -> np.ndarray:
    """``y_true`` as int64 (n,) with every label in ``0 … n_classes-1``."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but {other} has {n} rows")
    if y.dtype.kind not in "iub":
        if y.dtype.kind != "f" or not np.all(np.mod(y, 1) == 0):
            raise ValueError(f"{name} must hold integer class indices; got dtype {y.dtype}")
    y = y.astype(np.int64)
    if len(y) and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} has labels outside 0..{n_classes - 1} "
                         f"(found {y.min()}..{y.max()})")
    return y


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float strictly between 0 and 1."""
    a = float(alpha)
    if not 0.0 < a < 1.0:
        raise ValueError(f"{name} must be in (0, 1); got {alpha!r}")
    return a


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _key(v):
    """A plain-Python group key (numpy scalars unwrapped, so keys serialise to JSON)."""
    return v.item() if isinstance(v, np.generic) else v


def group_indices(groups, n: int, name: str = "groups") -> dict:
    """{group: row indices} for the non-missing labels of ``groups`` (n,), keys sorted.

    Missing labels (None, NaN, pandas NA, "") are in no group. Keys are plain Python values.
    """
    g = np.asarray(groups, dtype=object)
    if g.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n,); got shape {g.shape}")
    if len(g) != n:
        raise ValueError(f"{name} has {len(g)} entries but there are {n} rows to score")
    missing = pd.isna(g)
    out: dict = {}
    for i in np.flatnonzero(~missing):
        if not (isinstance(g[i], str) and g[i] == ""):
            out.setdefault(_key(g[i]), []).append(i)
    try:
        keys = sorted(out)
    except TypeError:  # mixed types: keep the order of first appearance
        keys = list(out)
    return {k: np.asarray(out[k], dtype=np.int64) for k in keys}
