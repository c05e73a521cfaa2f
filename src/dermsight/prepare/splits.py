"""Leak-free splits: seeded, stratified by label, grouped so no group lies in two splits.

Uses scikit-learn's ``StratifiedGroupKFold``: the test split is one fold of
``round(1 / test_fraction)``; validation is one fold of the rest, sized to ``val_fraction`` of
the whole. Rare classes are merged into ``other`` or dropped first, as configured.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from dermsight.errors import DataError
from dermsight.manifest import dump_soft_labels, parse_soft_labels

OTHER = "other"


def handle_rare_classes(frame: pd.DataFrame, *, min_count: int, policy: str) -> tuple[
        pd.DataFrame, dict]:
    """Merge classes with fewer than ``min_count`` images into ``other``, or drop them.

    Soft labels are remapped the same way (weights of rare classes summed into ``other``).
    Returns the new frame and a report ``{"policy", "min_count", "classes": {name: count}}``.
    """
    counts = frame["label"].value_counts()
    rare = sorted(c for c, n in counts.items() if n < min_count and c != OTHER)
    report = {"policy": policy, "min_count": min_count,
              "classes": {c: int(counts[c]) for c in rare}}
    if not rare or policy == "keep":
        return frame, report
    is_rare = frame["label"].isin(rare)
    if policy == "drop":
        return frame[~is_rare].reset_index(drop=True), report
    frame = frame.copy()
    frame.loc[is_rare, "label"] = OTHER
    rare_set = set(rare)

    def remap(text):
        weights = parse_soft_labels(text)
        if weights is None:
            return text
        merged: dict[str, float] = {}
        for k, w in weights.items():
            key = OTHER if k in rare_set else k
            merged[key] = merged.get(key, 0.0) + w
        return dump_soft_labels(merged)

    frame["soft_labels"] = frame["soft_labels"].map(remap, na_action="ignore").astype("string")
    return frame, report


def _one_fold(labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of one stratified, grouped fold holding about ``fraction`` of the rows."""
    n_groups = len(np.unique(groups))
    k = int(round(1 / fraction))
    k = max(2, min(k, n_groups))
    if n_groups < 2:
        raise DataError(f"cannot split: only {n_groups} group(s) (column 'group_id')")
    folder = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    _, held = next(folder.split(np.zeros(len(labels)), labels, groups))
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return mask


def assign_splits(frame: pd.DataFrame, *, val_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """A ``split`` column (train/val/test) for ``frame`` (needs ``label`` and ``group_id``)."""
    labels = frame["label"].fillna("<unlabelled>").astype(str).to_numpy()
    groups = frame["group_id"].astype(str).to_numpy()
    split = np.full(len(frame), "train", dtype=object)
    rest = np.ones(len(frame), dtype=bool)
    if test_fraction > 0:
        test = _one_fold(labels, groups, test_fraction, seed)
        split[test] = "test"
        rest = ~test
    if val_fraction > 0:
        share = val_fraction / max(1e-9, 1 - test_fraction)
        idx = np.flatnonzero(rest)
        val = _one_fold(labels[idx], groups[idx], share, seed + 1)
        split[idx[val]] = "val"
    return pd.Series(split, index=frame.index, dtype="string")


def check_grouping(frame: pd.DataFrame) -> list[str]:
    """Group ids that appear in more than one split (empty when the split is leak-free)."""
    per_group = frame.dropna(subset=["split"]).groupby("group_id")["split"].nunique()
    return sorted(per_group[per_group > 1].index.astype(str))


def split_summary(frame: pd.DataFrame) -> dict:
    """Counts of images per class × split and of groups per split."""
    table = frame.groupby(["label", "split"], dropna=False).size().unstack(fill_value=0)
    return {
        "images": {str(k): {str(s): int(v) for s, v in row.items()}
                   for k, row in table.iterrows()},
        "groups": {str(s): int(n) for s, n in frame.groupby("split")["group_id"].nunique().items()},
        "fractions": {str(s): round(float(n) / len(frame), 4)
                      for s, n in frame["split"].value_counts().items()},
    }
