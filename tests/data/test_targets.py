"""Tests for dermsight.data.targets (soft targets, class weights, balanced sampling)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dermsight.data.targets import balanced_sampler_weights, class_weights, target_matrix
from dermsight.errors import DataError

CLASSES = ("a", "b", "c")


def test_soft_labels_restricted_and_renormalised_else_one_hot():
    frame = pd.DataFrame({
        "label": ["a", "b", None],
        "soft_labels": [json.dumps({"a": 0.6, "b": 0.2, "zzz": 0.2}), None,
                        json.dumps({"c": 0.5, "zzz": 0.5})],
    })
    targets, labels = target_matrix(frame, CLASSES)
    assert targets.dtype == np.float32 and labels.dtype == np.int64
    assert np.allclose(targets, [[0.75, 0.25, 0], [0, 1, 0], [0, 0, 1]])
    assert list(labels) == [0, 1, 2]


def test_unknown_label_error_names_it_and_the_classes():
    frame = pd.DataFrame({"label": ["a", "lupus", "lupus"]})
    with pytest.raises(DataError, match=r"'lupus' \(2 rows, first row 1\).*\['a', 'b', 'c'\]"):
        target_matrix(frame, CLASSES, where="split 'train'")


def test_row_without_any_label_is_an_error():
    frame = pd.DataFrame({"image_id": ["x"], "label": [None],
                          "soft_labels": [json.dumps({"zzz": 1.0})]})
    with pytest.raises(DataError, match="'x'.*no 'label'"):
        target_matrix(frame, CLASSES)


def test_class_weights_inverse_frequency_mean_one_capped():
    frame = pd.DataFrame({"label": ["a"] * 8 + ["b"] * 2})
    w = class_weights(frame, CLASSES)
    assert w.dtype == np.float32 and w[2] == 1.0  # 'c' absent
    assert np.isclose(w[:2].mean(), 1) and np.isclose(w[1] / w[0], 4)
    capped = class_weights(pd.DataFrame({"label": ["a"] * 99 + ["b"]}), CLASSES, cap=1.5)
    assert np.isclose(capped[1], 1.5)


def test_class_weight_power_interpolates_to_plain_cross_entropy():
    frame = pd.DataFrame({"label": ["a"] * 8 + ["b"] * 2})
    assert np.allclose(class_weights(frame, CLASSES, power=0.0), 1.0)
    half = class_weights(frame, CLASSES, power=0.5)
    assert np.isclose(half[1] / half[0], 2.0) and np.isclose(half[:2].mean(), 1)
    with pytest.raises(ValueError, match="power"):
        class_weights(frame, CLASSES, power=-1)


def test_balanced_weights_equalise_groups_with_cap():
    frame = pd.DataFrame({"label": ["a"] * 6 + ["b"] * 2,
                          "tone_bucket": ["light"] * 5 + [None] + ["dark"] * 2})
    w = balanced_sampler_weights(frame, CLASSES)
    assert w.shape == (8,) and np.isclose(w.mean(), 1)
    totals = pd.Series(w).groupby([frame["label"], frame["tone_bucket"].fillna("-")]).sum()
    assert np.allclose(totals, totals.iloc[0])  # three groups, equal total weight
    assert np.allclose(balanced_sampler_weights(frame, CLASSES, cap=1.0), 1.0)  # uniform
    capped = balanced_sampler_weights(frame, CLASSES, cap=2.0)
    assert np.isclose(capped.max() / capped.min(), 2.0)  # 'a/<missing>' is 5x rarer, capped
    with pytest.raises(DataError, match="tone_bucket"):
        balanced_sampler_weights(frame.drop(columns="tone_bucket"), CLASSES)


def test_group_smoothing_matrix_moves_weight_within_groups_only():
    from dermsight.data.targets import group_smoothing_matrix

    classes = ["a", "b", "c", "d", "e"]
    m = group_smoothing_matrix(classes, [["a", "b", "c"], ["d", "e"]], 0.3)
    assert np.allclose(m.sum(axis=1), 1.0)
    assert np.allclose(m[0], [0.7, 0.15, 0.15, 0, 0])
    assert np.allclose(m[4], [0, 0, 0, 0.3, 0.7])
    assert group_smoothing_matrix(classes, [], 0.3) is None
    assert group_smoothing_matrix(classes, [["a", "b"]], 0.0) is None
    assert np.allclose(group_smoothing_matrix(classes, [["c"]], 0.3), np.eye(5))
    with pytest.raises(DataError, match=r"\['z'\] not among the classes"):
        group_smoothing_matrix(classes, [["a", "z"]], 0.3)
    with pytest.raises(DataError, match="more than one group"):
        group_smoothing_matrix(classes, [["a", "b"], ["b", "c"]], 0.3)
