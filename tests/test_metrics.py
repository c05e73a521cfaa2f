import numpy as np
import pytest

from dermsight import metrics


def test_known_answers():
    y = np.array([0, 0, 1, 2])
    p = np.array([[0.8, 0.1, 0.1], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7]])
    assert metrics.accuracy(y, p) == 0.75
    assert metrics.balanced_accuracy(y, p) == pytest.approx((0.5 + 1 + 1) / 3)
    assert metrics.top_k_accuracy(y, p, 2) == 1.0
    assert metrics.confusion(y, p).tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert metrics.auroc_per_class(y, p)[2] == 1.0
    summary = metrics.classification_summary(y, p)
    assert set(summary) == {"accuracy", "top3_accuracy", "balanced_accuracy", "f1_macro",
                            "auroc_macro"}


def test_auroc_skips_absent_classes_and_nan_targets():
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1, 0], [0.6, 0.4, 0], [0.3, 0.7, 0], [0.2, 0.8, 0]])
    per = metrics.auroc_per_class(y, p)
    assert np.isnan(per[2]) and per[0] == 1.0
    assert metrics.auroc_macro(y, p) == 1.0
    assert metrics.binary_auroc([0, 1, np.nan, 1], [0.1, 0.9, 0.5, 0.8]) == 1.0
    assert np.isnan(metrics.binary_auroc([1, 1], [0.2, 0.3]))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(n, C\)"):
        metrics.accuracy([0, 1], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="no samples"):
        metrics.accuracy([], np.zeros((0, 2)))
