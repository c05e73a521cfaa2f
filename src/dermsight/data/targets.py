"""Training targets from manifest rows, class weights and balanced-sampling weights (no torch).

A row's target over ``classes`` is its ``soft_labels`` restricted to the class list and
renormalised when they put weight on the list, else the one-hot of ``label``. A ``label`` not in
the class list is an error (raised once, listing the offending labels).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from dermsight.errors import DataError
from dermsight.manifest import parse_soft_labels

MISSING_GROUP = "<missing>"


def check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    """Return ``classes`` as a tuple; raise ValueError when empty, repeated or not strings."""
    out = tuple(classes)
    if not out or not all(isinstance(c, str) and c for c in out):
        raise ValueError(f"classes must be a non-empty list of class names, got {list(out)}")
    repeated = sorted(c for c, n in Counter(out).items() if n > 1)
    if repeated:
        raise ValueError(f"classes repeat {repeated}")
    return out


def _column(frame: pd.DataFrame, column: str) -> list:
    """The column as a list with None for missing values (all None when absent)."""
    if column not in frame:
        return [None] * len(frame)
    return [None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v
            for v in frame[column].tolist()]


def target_matrix(frame: pd.DataFrame, classes: Sequence[str], *,
                  where: str = "manifest") -> tuple[np.ndarray, np.ndarray]:
    """Targets float32 ``(n, C)`` (rows sum to 1) and label indices int64 ``(n,)``.

    The label index is ``label``'s position in ``classes`` (the argmax of the target when the
    row has only soft labels).

    Raises:
        DataError: a ``label`` is not in ``classes`` (names the labels and the class list), or a
            row has neither a usable ``label`` nor soft labels on the class list.
    """
    classes = check_classes(classes)
    index = {c: i for i, c in enumerate(classes)}
    n = len(frame)
    targets = np.zeros((n, len(classes)), np.float32)
    labels = np.zeros(n, np.int64)
    unknown: Counter = Counter()
    first_bad: dict[str, int] = {}
    label_col, soft_col = _column(frame, "label"), _column(frame, "soft_labels")
    for r in range(n):
        label = None if label_col[r] is None else str(label_col[r])
        if label is not None and label not in index:
            unknown[label] += 1
            first_bad.setdefault(label, r)
            continue
        soft = parse_soft_labels(soft_col[r],
                                 where=f"{where}: column 'soft_labels' row {r}")
        kept = {k: w for k, w in (soft or {}).items() if k in index and w > 0}
        total = sum(kept.values())
        if total > 0:
            for k, w in kept.items():
                targets[r, index[k]] = w / total
            labels[r] = index[label] if label is not None else int(targets[r].argmax())
        elif label is not None:
            targets[r, index[label]] = 1.0
            labels[r] = index[label]
        else:
            image = _column(frame, "image_id")[r]
            raise DataError(f"{where}: row {r} (image_id {image!r}) has no 'label' and no "
                            f"'soft_labels' weight on the classes {list(classes)}")
    if unknown:
        shown = ", ".join(f"{lab!r} ({cnt} rows, first row {first_bad[lab]})"
                          for lab, cnt in unknown.most_common(8))
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise DataError(
            f"{where}: label(s) {shown}{more} not in the class list {list(classes)}; pass "
            f"classes that include them (e.g. classes=None to take the train split's labels) "
            f"or drop those rows")
    return targets, labels


def class_weights(frame: pd.DataFrame, classes: Sequence[str], cap: float = 10.0,
                  power: float = 1.0) -> np.ndarray:
    """Per-class loss weights float32 ``(C,)``: inverse frequency to the power ``power``,
    normalised to mean 1, capped.

    ``power=1`` weighs every class equally in the loss (best for balanced accuracy),
    ``power=0`` is plain cross-entropy (best for accuracy), ``0.5`` (inverse square root) sits
    between them.

    Frequencies count soft targets fractionally (the sum of each class's target column). The
    mean-1 normalisation is over classes present in ``frame``; then weights above ``cap`` are set
    to ``cap`` (so the mean may end slightly below 1). Classes absent from ``frame`` get 1.0
    (their weight never multiplies a non-zero target).
    """
    if cap <= 0:
        raise ValueError(f"cap must be > 0, got {cap}")
    if power < 0:
        raise ValueError(f"power must be >= 0, got {power}")
    targets, _ = target_matrix(frame, classes)
    counts = targets.sum(0).astype(np.float64)
    present = counts > 0
    weights = np.ones(len(counts))
    if present.any():
        inv = counts[present] ** -float(power)
        weights[present] = np.minimum(inv / inv.mean(), cap)
    return weights.astype(np.float32)


def balanced_sampler_weights(frame: pd.DataFrame, classes: Sequence[str],
                             by: Sequence[str] = ("label", "tone_bucket"),
                             cap: float = 10.0) -> np.ndarray:
    """Per-row sampling weights float64 ``(n,)`` (mean 1) that balance the groups of ``by``.

    Exactly balanced, every group (e.g. label × tone bucket; a missing value is its own group
    ``<missing>``) would be drawn equally often: a row's weight is ``1 / group_size``. The
    ratio between any row's weight and that of a row of the largest group is capped at ``cap``
    (``cap=1`` is uniform sampling), so a tiny group is oversampled at most ``cap`` times
    relative to the largest; then the weights are scaled to mean 1. Use with replacement
    (``torch.multinomial`` / ``WeightedRandomSampler``).

    Raises:
        DataError: a ``by`` column is missing (named), or a label is not in ``classes``.
    """
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    by = [by] if isinstance(by, str) else list(by)
    missing = [c for c in by if c not in frame.columns]
    if missing:
        raise DataError(f"balanced sampling by {by}: the manifest lacks column(s) {missing}")
    if "label" in by:
        target_matrix(frame, classes)  # validates labels against the class list
    n = len(frame)
    if n == 0:
        return np.zeros(0)
    keys = pd.DataFrame({c: frame[c].astype("string").fillna(MISSING_GROUP).to_numpy()
                         for c in by})
    sizes = keys.groupby(by, sort=False, dropna=False)[by[0]].transform("size").to_numpy()
    factor = 1.0 / sizes.astype(np.float64)
    factor = np.minimum(factor, cap * factor.min())
    return factor / factor.mean()


def group_smoothing_matrix(classes: Sequence[str], groups: Sequence[Sequence[str]],
                           smoothing: float) -> np.ndarray | None:
    """Row-stochastic ``(C, C)`` matrix that moves ``smoothing`` of a target's weight from each
    class evenly onto the other classes of its near-synonym group (a target ``t`` becomes
    ``t @ M``); None when there is nothing to smooth.

    Raises:
        DataError: a group names a class not in ``classes``, or a class is in two groups.
    """
    if not groups or not smoothing:
        return None
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"group smoothing must be in [0, 1), got {smoothing}")
    classes = check_classes(classes)
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.eye(len(classes), dtype=np.float32)
    seen: set[str] = set()
    for group in groups:
        unknown = [c for c in group if c not in index]
        if unknown:
            raise DataError(f"data.label_groups: {unknown} not among the classes "
                            f"{list(classes)}")
        twice = sorted(seen.intersection(group))
        if twice:
            raise DataError(f"data.label_groups: {twice} appear in more than one group")
        seen.update(group)
        members = [index[c] for c in dict.fromkeys(group)]
        if len(members) < 2:
            continue
        for i in members:
            matrix[i, i] = 1.0 - smoothing
            for j in members:
                if j != i:
                    matrix[i, j] = smoothing / (len(members) - 1)
    return matrix
