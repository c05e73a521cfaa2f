import numpy as np
import pandas as pd
import pytest

from dermsight.errors import DataError
from dermsight.manifest import parse_soft_labels
from dermsight.prepare.splits import assign_splits, check_grouping, handle_rare_classes


def _frame(n_groups=120, per_group=3, classes=("a", "b", "c"), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = classes[rng.integers(len(classes))] if g > 5 else classes[g % len(classes)]
        for k in range(rng.integers(1, per_group + 1)):
            rows.append({"image_id": f"{g}-{k}", "group_id": f"g{g}", "label": label})
    return pd.DataFrame(rows)


def test_splits_are_grouped_stratified_and_seeded():
    frame = _frame()
    split = assign_splits(frame, val_fraction=0.15, test_fraction=0.15, seed=3)
    frame["split"] = split
    assert check_grouping(frame) == []
    shares = split.value_counts(normalize=True)
    assert 0.08 < shares["test"] < 0.22 and 0.08 < shares["val"] < 0.22
    for label in ("a", "b", "c"):  # every class reaches every split
        assert set(frame.loc[frame["label"] == label, "split"]) == {"train", "val", "test"}
    again = assign_splits(frame, val_fraction=0.15, test_fraction=0.15, seed=3)
    assert (again == split).all()
    other = assign_splits(frame, val_fraction=0.15, test_fraction=0.15, seed=4)
    assert not (other == split).all()


def test_check_grouping_reports_leaks():
    frame = pd.DataFrame({"group_id": ["a", "a", "b"], "split": ["train", "val", "val"]})
    assert check_grouping(frame) == ["a"]


def test_single_group_cannot_be_split():
    frame = pd.DataFrame({"image_id": ["1", "2"], "group_id": ["g", "g"], "label": ["a", "b"]})
    with pytest.raises(DataError, match="group_id"):
        assign_splits(frame, val_fraction=0.2, test_fraction=0.2, seed=0)


def test_rare_classes_merged_into_other_with_soft_labels():
    frame = pd.DataFrame({
        "label": ["a"] * 5 + ["rare"],
        "soft_labels": pd.array([None] * 5 + ['{"a": 0.4, "rare": 0.6}'], dtype="string"),
    })
    out, report = handle_rare_classes(frame, min_count=2, policy="other")
    assert report["classes"] == {"rare": 1}
    assert out["label"].tolist()[-1] == "other"
    assert parse_soft_labels(out["soft_labels"].iloc[-1]) == {"a": 0.4, "other": 0.6}
    dropped, _ = handle_rare_classes(frame, min_count=2, policy="drop")
    assert len(dropped) == 5
    kept, _ = handle_rare_classes(frame, min_count=2, policy="keep")
    assert len(kept) == 6 and "rare" in set(kept["label"])
