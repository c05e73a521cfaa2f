import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from dermsight.evaluate.calibration import (
    TemperatureScaler,
    ece_by_group,
    expected_calibration_error,
    reliability_curve,
)


def _calibrated(n=20000, c=5, scale=1.5, seed=0):
    """Logits (n, C) and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, scale, (n, c))
    p = softmax(z, axis=1)
    y = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1)
    return z, np.minimum(y, c - 1)


def test_ece_known_answer():
    # ten predictions at confidence 0.9, seven right: |0.7 - 0.9| = 0.2
    p = np.tile([0.9, 0.1], (10, 1))
    y = np.array([0] * 7 + [1] * 3)
    assert expected_calibration_error(y, p) == pytest.approx(0.2)
    curve = reliability_curve(y, p, n_bins=10)
    assert curve["counts"].sum() == 10 and curve["counts"][8] == 10  # 0.9 is in (0.8, 0.9]
    assert curve["accuracy"][8] == pytest.approx(0.7)
    assert curve["confidence"][8] == pytest.approx(0.9)
    assert np.isnan(curve["accuracy"][0])
    assert curve["bin_centres"].shape == (10,) and curve["edges"].shape == (11,)
    assert curve["ece"] == pytest.approx(0.2)


def test_ece_calibrated_is_small_and_overconfident_is_large():
    z, y = _calibrated()
    assert expected_calibration_error(y, softmax(z, axis=1)) < 0.02
    assert expected_calibration_error(y, softmax(3 * z, axis=1)) > 0.1


@pytest.mark.parametrize("from_probs", [False, True], ids=["logits", "probs"])
def test_temperature_scaling_recovers_t_and_lowers_ece(from_probs):
    z, y = _calibrated(n=10000)
    x = softmax(3 * z, axis=1) if from_probs else 3 * z
    scaler = TemperatureScaler(from_probs=from_probs).fit(x[:5000], y[:5000])
    assert scaler.temperature_ == pytest.approx(3.0, rel=0.05)
    assert scaler.nll_after_ < scaler.nll_before_
    before = expected_calibration_error(y[5000:], softmax(x[5000:], axis=1)
                                        if not from_probs else x[5000:])
    after = scaler.transform(x[5000:])
    assert np.allclose(after.sum(axis=1), 1.0)
    assert np.array_equal(after, scaler.predict_proba(x[5000:]))
    assert expected_calibration_error(y[5000:], after) < min(0.03, before / 3)


def test_temperature_scaler_follows_the_estimator_contract():
    scaler = TemperatureScaler(bounds=(0.1, 10.0))
    assert not hasattr(scaler, "temperature_")
    assert clone(scaler).get_params() == {"from_probs": False, "bounds": (0.1, 10.0)}
    with pytest.raises(TypeError):
        TemperatureScaler(True)  # options are keyword-only
    with pytest.raises(NotFittedError):
        scaler.transform(np.zeros((2, 3)))
    z, y = _calibrated(n=200, c=3)
    assert scaler.fit(z, y) is scaler and scaler.n_features_in_ == 3
    with pytest.raises(ValueError, match="logits has 4 columns"):
        scaler.transform(np.zeros((2, 4)))


def test_ece_by_group_flags_small_groups():
    z, y = _calibrated(n=1000, c=3)
    p = softmax(z, axis=1)
    groups = np.array(["dark"] * 20 + ["light"] * 900 + [None] * 80, dtype=object)
    out = ece_by_group(y, p, groups, min_n=30)
    assert list(out) == ["dark", "light"]  # rows with no group are left out
    assert out["dark"] == {"n": 20, "ece": pytest.approx(
        expected_calibration_error(y[:20], p[:20])), "small": True}
    assert out["light"]["n"] == 900 and out["light"]["small"] is False


@pytest.mark.parametrize("call, match", [
    (lambda: expected_calibration_error([0, 1, 0], [[0.5, 0.5], [0.2, 0.8]]), "y_true"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.7], [0.2, 0.8]]), "probs rows must"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.5], [0.2, 0.8]], n_bins=0), "n_bins"),
    (lambda: expected_calibration_error([0, 2], [[0.5, 0.5], [0.2, 0.8]]), "y_true has labels"),
    (lambda: expected_calibration_error([], np.zeros((0, 2))), "probs has no rows"),
    (lambda: ece_by_group([0, 1], [[0.5, 0.5], [0.2, 0.8]], ["a"]), "groups"),
    (lambda: TemperatureScaler().fit([[np.nan, 1.0]], [0]), "logits contains NaN"),
    (lambda: TemperatureScaler(from_probs=True).fit([[2.0, 1.0]], [0]), "logits rows must"),
    (lambda: TemperatureScaler(bounds=(2, 1)).fit([[2.0, 1.0]], [0]), "bounds"),
], ids=["length", "sum", "n_bins", "label", "empty", "groups", "nan", "from_probs", "bounds"])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
