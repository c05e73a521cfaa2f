"""Classification metrics as pure functions: numpy in, numbers out (MONAI / scikit-learn style).

Shapes: ``y_true`` (n,) integer class indices; ``probs`` (n, C) probabilities (rows sum to 1).
Reports format these results and never recompute them.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    roc_auc_score,
)


def _check(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(y_true) != len(probs):
        raise ValueError(f"expected y_true (n,) and probs (n, C); got {y_true.shape} and "
                         f"{probs.shape}")
    if len(y_true) == 0:
        raise ValueError("no samples to score")
    return y_true, probs


def accuracy(y_true, probs) -> float:
    y_true, probs = _check(y_true, probs)
    return float((probs.argmax(1) == y_true).mean())


def top_k_accuracy(y_true, probs, k: int = 3) -> float:
    y_true, probs = _check(y_true, probs)
    top = np.argsort(-probs, axis=1)[:, :k]
    return float((top == y_true[:, None]).any(axis=1).mean())


def balanced_accuracy(y_true, probs) -> float:
    """Mean recall over the classes present in ``y_true`` (the ISIC 2018 ranking metric)."""
    y_true, probs = _check(y_true, probs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(balanced_accuracy_score(y_true, probs.argmax(1)))


def f1_macro(y_true, probs) -> float:
    y_true, probs = _check(y_true, probs)
    labels = np.unique(y_true)
    return float(f1_score(y_true, probs.argmax(1), labels=labels, average="macro",
                          zero_division=0))


def auroc_per_class(y_true, probs) -> np.ndarray:
    """One-vs-rest AUROC per class; NaN for a class absent from (or filling) ``y_true``."""
    y_true, probs = _check(y_true, probs)
    out = np.full(probs.shape[1], np.nan)
    for c in range(probs.shape[1]):
        positive = y_true == c
        if 0 < positive.sum() < len(y_true):
            out[c] = roc_auc_score(positive, probs[:, c])
    return out


def auroc_macro(y_true, probs) -> float:
    """Mean one-vs-rest AUROC over the classes that can be scored."""
    per = auroc_per_class(y_true, probs)
    return float(np.nanmean(per)) if np.isfinite(per).any() else float("nan")


def binary_auroc(y_true, scores) -> float:
    """AUROC of a binary target (NaN targets ignored); NaN when only one class is present."""
    y_true = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.isfinite(y_true)
    y, s = y_true[keep], scores[keep]
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def confusion(y_true, probs, num_classes: int | None = None) -> np.ndarray:
    y_true, probs = _check(y_true, probs)
    n = num_classes or probs.shape[1]
    return confusion_matrix(y_true, probs.argmax(1), labels=np.arange(n))


def classification_summary(y_true, probs) -> dict[str, float]:
    """The headline numbers: accuracy, top-3, balanced accuracy, macro-F1, macro AUROC."""
    return {
        "accuracy": accuracy(y_true, probs),
        "top3_accuracy": top_k_accuracy(y_true, probs, 3),
        "balanced_accuracy": balanced_accuracy(y_true, probs),
        "f1_macro": f1_macro(y_true, probs),
        "auroc_macro": auroc_macro(y_true, probs),
    }


def per_class(y_true, probs, classes=None) -> dict[str, dict[str, float | int | None]]:
    """Per-class precision, recall, F1 and support of the argmax prediction, plus one-vs-rest
    AUROC: ``{class: {"precision", "recall", "f1", "support", "auroc"}}``.

    ``classes`` (C names, default ``"0" … "C-1"``). A class never predicted has precision 0;
    a class absent from ``y_true`` has recall 0 and F1 0 (scikit-learn's ``zero_division=0``);
    its AUROC is None.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true, probs = _check(y_true, probs)
    n_classes = probs.shape[1]
    names = [str(c) for c in classes] if classes is not None else [str(c) for c in
                                                                      range(n_classes)]
    if len(names) != n_classes:
        raise ValueError(f"classes has {len(names)} names but probs has {n_classes} columns")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, probs.argmax(1), labels=np.arange(n_classes), zero_division=0)
    auc = auroc_per_class(y_true, probs)
    return {name: {"precision": float(precision[k]), "recall": float(recall[k]),
                   "f1": float(f1[k]), "support": int(support[k]),
                   "auroc": None if np.isnan(auc[k]) else float(auc[k])}
            for k, name in enumerate(names)}


def confusion_normalized(y_true, probs, num_classes: int | None = None) -> np.ndarray:
    """Row-normalised confusion matrix (each true class's row sums to 1; all-zero rows for
    classes absent from ``y_true``), as scikit-learn's ``normalize="true"``."""
    y_true, probs = _check(y_true, probs)
    n = num_classes or probs.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cm = confusion_matrix(y_true, probs.argmax(1), labels=np.arange(n), normalize="true")
    return np.nan_to_num(cm)
