import json

import numpy as np
import pytest

from dermsight.evaluate.fairness import (
    DEFAULT_METRICS,
    ConfidenceInterval,
    bootstrap_ci,
    group_metrics,
    ita_groups,
    paired_bootstrap_ci,
)
from dermsight.features.skintone import ita_category, tone_bucket
from dermsight.metrics import accuracy, binary_auroc


def _mean(x):
    return float(np.mean(x))


def _predictions(accs, sizes, c=3, seed=0):
    """Labels, probs and group names: group i has about ``accs[i]`` accuracy."""
    rng = np.random.default_rng(seed)
    ys, ps, gs = [], [], []
    for i, (acc, n) in enumerate(zip(accs, sizes)):
        y = rng.integers(0, c, n)
        right = rng.random(n) < acc
        pred = np.where(right, y, (y + rng.integers(1, c, n)) % c)
        p = np.full((n, c), 0.2 / (c - 1))
        p[np.arange(n), pred] = 0.8
        ys.append(y), ps.append(p), gs.append(np.full(n, f"g{i}", dtype=object))
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(gs)


def test_bootstrap_ci_contains_the_true_value_and_is_seeded():
    x = (np.random.default_rng(1).random(2000) < 0.7).astype(float)
    ci = bootstrap_ci(_mean, x, n_resamples=500, seed=0)
    assert isinstance(ci, ConfidenceInterval) and len(ci) == 2
    low, high = ci
    assert low < 0.7 < high
    half = 1.96 * np.sqrt(0.7 * 0.3 / 2000)  # the normal approximation
    assert (high - low) == pytest.approx(2 * half, rel=0.2)
    assert ci.n_resamples == 500 and ci.n_skipped == 0
    assert bootstrap_ci(_mean, x, n_resamples=500, seed=0) == ci
    assert bootstrap_ci(_mean, x, n_resamples=500, seed=1) != ci
    assert json.loads(json.dumps({"ci": ci}))["ci"] == [low, high]


def test_bootstrap_resamples_rows_of_every_array_together():
    y = np.array([0, 1, 2, 1, 0] * 20)
    p = np.eye(3)[y]  # always right: every resample must score 1
    assert bootstrap_ci(accuracy, y, p, n_resamples=50) == (1.0, 1.0)


def test_bootstrap_skips_undefined_resamples():
    y = np.array([1] + [0] * 9)  # one positive: many resamples have a single class
    s = np.linspace(0.9, 0.0, 10)
    ci = bootstrap_ci(binary_auroc, y, s, n_resamples=200, seed=0)
    assert 0 < ci.n_skipped < 200 and ci == (1.0, 1.0)
    ci = bootstrap_ci(binary_auroc, np.zeros(5), np.zeros(5), n_resamples=20)
    assert ci.n_skipped == 20 and np.isnan(ci.low) and np.isnan(ci.high)


def test_paired_bootstrap_ci_draws_the_same_rows_for_both():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    a, b = rng.dirichlet(np.ones(3), 200), rng.dirichlet(np.ones(3), 200)
    assert tuple(paired_bootstrap_ci(accuracy, y, a, a, n_resamples=50)) == (0.0, 0.0)
    low, high = paired_bootstrap_ci(accuracy, y, a, b, n_resamples=200, seed=1)
    assert low <= accuracy(y, a) - accuracy(y, b) <= high


def test_group_metrics_flags_small_groups_and_ranks_the_rest():
    # g2 is tiny and perfect: reported and flagged, never part of the gap
    y, p, g = _predictions([0.9, 0.6, 1.0], [600, 400, 12])
    out = group_metrics(y, p, g, metrics={"accuracy": accuracy}, n_resamples=300, seed=0)
    groups = out["groups"]
    assert list(groups) == ["g0", "g1", "g2"]
    assert groups["g2"]["small"] is True and groups["g2"]["n"] == 12
    assert groups["g0"]["small"] is False and groups["g1"]["small"] is False
    assert groups["g0"]["accuracy"] == accuracy(y[g == "g0"], p[g == "g0"])
    low, high = groups["g0"]["accuracy_ci95"]
    assert low < groups["g0"]["accuracy"] < high
    assert out["max_gap_groups"] == ["g0", "g1"]
    assert out["max_gap"] == pytest.approx(groups["g0"]["accuracy"] - groups["g1"]["accuracy"])
    assert out["max_gap"] == pytest.approx(0.3, abs=0.06)
    low, high = out["max_gap_ci95"]
    assert low < out["max_gap"] < high and low > 0.15
    again = group_metrics(y, p, g, metrics={"accuracy": accuracy}, n_resamples=300, seed=0)
    assert again["max_gap_ci95"] == out["max_gap_ci95"]


def test_group_metrics_default_metrics_and_no_gap_with_one_rankable_group():
    y, p, g = _predictions([0.8, 0.8], [60, 10])
    g[:5] = None  # rows without a group are left out
    out = group_metrics(y, p, g, n_resamples=20)
    row = out["groups"]["g0"]
    assert row["n"] == 55
    for name in DEFAULT_METRICS:
        assert np.isfinite(row[name]) and len(row[f"{name}_ci95"]) == 2
    assert out["max_gap"] is None and out["max_gap_ci95"] is None
    assert out["max_gap_groups"] is None
    json.dumps(out)  # plain Python keys and values


def test_ita_groups_reuse_the_skintone_thresholds():
    ita = [70.0, 55.0, 41.0, 30.0, 10.0, -40.0, np.nan, None]
    cats = ita_groups(ita)
    assert list(cats[:6]) == [ita_category(v) for v in ita[:6]]
    assert cats[6] is None and cats[7] is None
    assert list(ita_groups(ita[:6], kind="bucket")) == [tone_bucket(v) for v in ita[:6]]


_Y, _P, _G = _predictions([0.8], [40])


@pytest.mark.parametrize("call, match", [
    (lambda: bootstrap_ci(_mean, np.zeros(3), np.zeros(4)), "arrays must share"),
    (lambda: bootstrap_ci(_mean), "arrays"),
    (lambda: bootstrap_ci(_mean, np.zeros(3), alpha=1.0), "alpha must be in"),
    (lambda: bootstrap_ci(_mean, np.zeros(3), n_resamples=0), "n_resamples"),
    (lambda: group_metrics(_Y[:-1], _P, _G), "y_true has 39 entries"),
    (lambda: group_metrics(_Y, _P, _G[:-1]), "groups has 39 entries"),
    (lambda: group_metrics(_Y, _P * 0.5, _G), "probs rows must sum to 1"),
    (lambda: group_metrics(_Y, _P, _G, metrics={}), "metrics"),
    (lambda: group_metrics(_Y, _P, _G, gap_metric="auroc"), "gap_metric"),
    (lambda: ita_groups([10.0], kind="monk"), "kind"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
