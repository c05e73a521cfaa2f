import json

import numpy as np
import pytest
from sklearn.metrics import (
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    top_k_accuracy_score,
)

from dermsight import metrics
from dermsight.errors import ConfigError
from dermsight.evaluate.compare import compare_reports, format_table


def _report(run, acc, gap, ece=0.02, split="test"):
    return {"run_name": run, "source": "ham10000", "split": split, "n": 100,
            "metrics": {"accuracy": acc, "balanced_accuracy": acc - 0.1, "f1_macro": acc - 0.2,
                        "auroc_macro": 0.9},
            "calibration": {"ece_after": ece}, "conformal": {"coverage": 0.91},
            "fairness": {"tone_bucket": {"max_gap": gap}, "sex": {"max_gap": gap / 2},
                         "monk": {"max_gap": None}}}


def test_compare_two_reports(tmp_path):
    for run, acc, gap in (("a", 0.8, 0.05), ("b", 0.7, 0.12)):
        folder = tmp_path / run / "eval-ham10000-test"
        folder.mkdir(parents=True)
        (folder / "report.json").write_text(json.dumps(_report(run, acc, gap)))
    # a run folder that was never evaluated contributes its training report
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "report.json").write_text(json.dumps(
        {"split": "val", "n_val": 50, "metrics": {"accuracy": 0.6, "balanced_accuracy": 0.5,
                                                  "f1_macro": 0.4, "auroc_macro": 0.8}}))
    table = compare_reports([tmp_path / "a", tmp_path / "b" / "eval-ham10000-test" /
                             "report.json", tmp_path / "c"])
    assert table["run"].tolist() == ["a", "b", "c"]
    assert table["split"].tolist() == ["ham10000/test", "ham10000/test", "val"]
    assert table["worst_group_gap"].tolist()[:2] == [0.05, 0.12]
    assert table["gap_attribute"].tolist()[:2] == ["tone_bucket", "tone_bucket"]
    assert table["n"].tolist() == [100, 100, 50]
    assert np.isnan(table["ece_after"].iloc[2]) or table["ece_after"].iloc[2] is None
    text = format_table(table)
    assert text.splitlines()[0].split()[:3] == ["run", "split", "n"]
    assert "0.800" in text and "–" in text


def test_compare_names_what_is_missing(tmp_path):
    with pytest.raises(ConfigError, match="no run, evaluation folder"):
        compare_reports([tmp_path / "nope"])
    with pytest.raises(ConfigError, match="evaluate it first"):
        compare_reports([tmp_path])
    with pytest.raises(ConfigError, match="at least one"):
        compare_reports([])


# -- the per-class metrics the evaluation report adds, against scikit-learn -------------------
def _known(n=300, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_per_class_matches_sklearn():
    y, p = _known()
    got = metrics.per_class(y, p, ["a", "b", "c", "d"])
    prec, rec, f1, sup = precision_recall_fscore_support(y, p.argmax(1), labels=range(4),
                                                         zero_division=0)
    for k, name in enumerate("abcd"):
        assert got[name]["precision"] == pytest.approx(prec[k])
        assert got[name]["recall"] == pytest.approx(rec[k])
        assert got[name]["f1"] == pytest.approx(f1[k])
        assert got[name]["support"] == sup[k]
        assert got[name]["auroc"] == pytest.approx(roc_auc_score(y == k, p[:, k]))
    # a class absent from y_true: recall 0, AUROC undefined
    keep = y != 3
    got = metrics.per_class(y[keep], p[keep], list("abcd"))
    assert got["d"]["support"] == 0 and got["d"]["recall"] == 0 and got["d"]["auroc"] is None
    with pytest.raises(ValueError, match="3 names but probs has 4"):
        metrics.per_class(y, p, ["a", "b", "c"])


def test_confusion_normalized_and_top3_match_sklearn():
    y, p = _known(c=5)
    ref = confusion_matrix(y, p.argmax(1), labels=range(5), normalize="true")
    assert np.allclose(metrics.confusion_normalized(y, p), ref)
    assert np.allclose(metrics.confusion_normalized(y, p).sum(1), 1.0)
    assert metrics.top_k_accuracy(y, p, 3) == pytest.approx(
        top_k_accuracy_score(y, p, k=3, labels=range(5)))
    # an absent class gives a zero row, not NaN
    keep = y != 0
    cm = metrics.confusion_normalized(y[keep], p[keep])
    assert np.all(cm[0] == 0) and np.isfinite(cm).all()
