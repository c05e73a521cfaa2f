import math

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from dermsight.evaluate.conformal import (
    ConformalClassifier,
    conformal_quantile,
    coverage,
    mean_set_size,
    set_to_words,
)

N = 5000  # calibration and test points each


def _exchangeable(n=2 * N, c=5, seed=0):
    """Calibrated probabilities (n, C) and labels drawn from them."""
    rng = np.random.default_rng(seed)
    p = softmax(rng.normal(0, 1.5, (n, c)), axis=1)
    y = np.minimum((rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1), c - 1)
    return p, y


def _signal_data(signal, n=2 * N, seed=1):
    """Labels uniform over len(signal) classes; the true class's logit is raised by
    ``signal[y]``, so classes with a small signal are hard (low true-class probability)."""
    rng = np.random.default_rng(seed)
    signal = np.asarray(signal, dtype=float)
    y = rng.integers(0, len(signal), n)
    z = rng.normal(0, 1, (n, len(signal)))
    z[np.arange(n), y] += signal[y]
    return softmax(z, axis=1), y


@pytest.mark.parametrize("method, randomized", [("lac", False), ("aps", False), ("aps", True)])
def test_marginal_coverage_is_within_two_points(method, randomized):
    p, y = _exchangeable()
    cp = ConformalClassifier(method=method, randomized=randomized).fit(p[:N], y[:N])
    out = cp.report(p[N:], y[N:])
    assert out["target"] == pytest.approx(0.9)
    assert abs(out["coverage"] - 0.9) <= 0.02
    sets = cp.predict_sets(p[N:])
    assert sets.dtype == bool and sets.shape == p[N:].shape
    assert out["mean_set_size"] == mean_set_size(sets) and 1 <= out["mean_set_size"] < 5


def test_aps_sets_are_larger_for_harder_samples_and_lac_is_smaller():
    p, y = _exchangeable()
    aps = ConformalClassifier(method="aps").fit(p[:N], y[:N]).predict_sets(p[N:])
    lac = ConformalClassifier(method="lac").fit(p[:N], y[:N]).predict_sets(p[N:])
    conf = p[N:].max(axis=1)
    hard, easy = conf <= np.quantile(conf, 0.25), conf >= np.quantile(conf, 0.75)
    assert mean_set_size(aps[hard]) > mean_set_size(aps[easy]) + 1
    assert mean_set_size(lac) < mean_set_size(aps)


def test_sets_are_never_empty_and_hold_the_top_class():
    p, y = _exchangeable(n=400)
    for method in ("aps", "lac"):
        sets = ConformalClassifier(method=method, alpha=0.95).fit(p, y).predict_sets(p)
        assert sets.sum(axis=1).min() >= 1
        assert sets[np.arange(len(p)), p.argmax(axis=1)].all()


def test_class_conditional_mode_covers_every_class():
    p, y = _signal_data([0.5, 1.5, 3.0, 4.0])
    marginal = ConformalClassifier(method="lac").fit(p[:N], y[:N]).predict_sets(p[N:])
    assert coverage(marginal[y[N:] == 0], y[N:][y[N:] == 0]) < 0.85  # the hard class
    cp = ConformalClassifier(method="lac", mode="class").fit(p[:N], y[:N])
    assert sorted(cp.thresholds_) == [0, 1, 2, 3] and cp.fallback_ == []
    sets = cp.predict_sets(p[N:])
    per_class = [coverage(sets[y[N:] == k], y[N:][y[N:] == k]) for k in range(4)]
    assert min(per_class) >= 0.88  # at least the target, up to noise (n ≈ 1250 per class)
    assert abs(per_class[0] - 0.9) <= 0.02  # the hard class is no longer under-covered


def test_group_conditional_mode_covers_every_group_and_records_fallbacks():
    rng = np.random.default_rng(2)
    easy_p, easy_y = _signal_data([1.5] * 4, seed=3)
    hard_p, hard_y = _signal_data([1.0] * 4, seed=4)
    hard_p = softmax(3 * np.log(hard_p), axis=1)  # harder, and the model is over-confident
    p = np.concatenate([easy_p, hard_p])
    y = np.concatenate([easy_y, hard_y])
    g = np.array(["light"] * len(easy_y) + ["dark"] * len(hard_y), dtype=object)
    perm = rng.permutation(len(y))
    p, y, g = p[perm], y[perm], g[perm]
    g[:10] = "tiny"  # 10 calibration points: falls back to the marginal threshold
    cal, test = slice(0, 2 * N), slice(2 * N, 4 * N)

    marginal = ConformalClassifier(method="lac").fit(p[cal], y[cal])
    by = marginal.report(p[test], y[test], g[test])["by_group"]
    assert by["dark"]["coverage"] < 0.85 and by["light"]["coverage"] > 0.95

    cp = ConformalClassifier(method="lac", mode="group").fit(p[cal], y[cal], g[cal])
    assert cp.fallback_ == ["tiny"] and cp.calibration_counts_["tiny"] == 10
    assert cp.thresholds_["tiny"] == cp.threshold_
    out = cp.report(p[test], y[test], g[test])
    assert set(out["by_group"]) == {"dark", "light"} and out["fallback"] == ["tiny"]
    for group in ("dark", "light"):
        assert abs(out["by_group"][group]["coverage"] - 0.9) <= 0.02
        assert out["by_group"][group]["n"] > 4000
    assert out["by_group"]["dark"]["mean_set_size"] > out["by_group"]["light"]["mean_set_size"]


def test_finite_sample_quantile():
    scores = np.arange(1, 20) / 20  # n = 19: level ceil(20 · 0.9) / 19 = 18/19, the 18th value
    assert conformal_quantile(scores, 0.1) == pytest.approx(18 / 20)
    assert conformal_quantile(scores[:8], 0.1) == math.inf  # n = 8 < 1/alpha - 1
    p = np.array([[0.7, 0.2, 0.1]] * 8)
    sets = ConformalClassifier(method="lac").fit(p, np.zeros(8, int)).predict_sets(p)
    assert sets.all()  # an infinite threshold puts every class in the set


def test_randomized_sets_are_seeded():
    p, y = _exchangeable(n=1000)
    a = ConformalClassifier(randomized=True, seed=3).fit(p, y).predict_sets(p)
    b = ConformalClassifier(randomized=True, seed=3).fit(p, y).predict_sets(p)
    c = ConformalClassifier(randomized=True, seed=4).fit(p, y).predict_sets(p)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("row, words", [
    ([True, False, False], "eczema"),
    ([True, True, False], "eczema or psoriasis"),
    ([True, True, True], "eczema, psoriasis or urticaria"),
    ([False, False, False], ""),
])
def test_set_to_words(row, words):
    assert set_to_words(np.array(row), ["eczema", "psoriasis", "urticaria"]) == words


def test_estimator_contract():
    cp = ConformalClassifier(alpha=0.2, mode="class")
    assert clone(cp).get_params()["alpha"] == 0.2
    with pytest.raises(TypeError):
        ConformalClassifier("lac")  # options are keyword-only
    with pytest.raises(NotFittedError):
        cp.predict_sets(np.full((1, 2), 0.5))
    p, y = _exchangeable(n=100, c=3)
    assert cp.fit(p, y) is cp and cp.n_classes_ == 3 and cp.n_calibration_ == 100
    assert cp.coverage(cp.predict_sets(p), y) == coverage(cp.predict_sets(p), y)


_P = np.array([[0.6, 0.4], [0.3, 0.7]])


@pytest.mark.parametrize("call, match", [
    (lambda: ConformalClassifier(alpha=1.5).fit(_P, [0, 1]), "alpha must be in"),
    (lambda: ConformalClassifier(alpha=0).fit(_P, [0, 1]), "alpha must be in"),
    (lambda: ConformalClassifier(method="raps").fit(_P, [0, 1]), "method"),
    (lambda: ConformalClassifier(mode="tone").fit(_P, [0, 1]), "mode"),
    (lambda: ConformalClassifier().fit(_P, [0, 1, 1]), "y_true has 3 entries"),
    (lambda: ConformalClassifier().fit(_P * 2, [0, 1]), "probs rows must sum to 1"),
    (lambda: ConformalClassifier(mode="group").fit(_P, [0, 1]), "groups is required"),
    (lambda: ConformalClassifier(mode="group").fit(_P, [0, 1], ["a"]), "groups has 1"),
    (lambda: ConformalClassifier().fit(_P, [0, 1]).predict_sets(np.full((1, 3), 1 / 3)),
     "probs has 3 columns"),
    (lambda: coverage(np.ones((2, 2), bool), [0]), "y_true has 1 entries"),
    (lambda: set_to_words([True], ["a", "b"]), "set_row"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
