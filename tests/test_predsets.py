"""One prediction-set rule: what is served is what evaluate measured (calibration.json →
model.json → the engine's sets), for every method and mode."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.predsets import conformity_scores, prediction_sets, served_sets

CLASSES = ["a", "b", "c", "d"]


def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, len(CLASSES)))
    y = np.array([rng.choice(len(CLASSES), p=np.exp(z) / np.exp(z).sum()) for z in logits])
    groups = rng.choice(["light", "medium", "dark"], n)
    return logits, y, groups


@pytest.mark.parametrize("method", ["lac", "aps"])
@pytest.mark.parametrize("mode", ["marginal", "class", "group"])
def test_a_served_set_equals_the_evaluated_one(method, mode):
    from dermsight.evaluate.run import conformal_from_calibration, fit_calibration
    from dermsight.export.info import served_conformal
    from dermsight.schemas import Calibration

    logits, y, groups = _data(600, 0)
    body, scaler, _ = fit_calibration(logits, y, classes=CLASSES, method=method, mode=mode,
                                      groups=groups, coverage=0.9)
    test_logits, _, test_groups = _data(300, 1)
    probs = scaler.transform(test_logits)
    evaluated = conformal_from_calibration(body).predict_sets(
        probs, test_groups if mode == "group" else None)
    exported = served_conformal(Calibration.parse(body).conformal).dump()  # model.json's
    tones = [{"bucket": g} for g in test_groups]
    served = served_sets(probs, exported, CLASSES, tones)
    assert np.array_equal(served, evaluated)
    assert 1.0 <= served.sum(1).mean() < len(CLASSES)


def test_the_rule():
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    np.testing.assert_allclose(conformity_scores(probs, "lac"), 1 - probs)
    np.testing.assert_allclose(conformity_scores(probs, "aps"), [[0.6, 0.9, 1.0],
                                                                 [0.8, 1.0, 0.6]])
    assert prediction_sets(probs, 0.75).tolist() == [[True, True, False], [False, False, True]]
    # the top class is always in the set, and no settings mean the top class only
    assert prediction_sets(probs, -1.0).sum() == 2
    assert served_sets(probs, {}, ["x", "y", "z"]).tolist() == [[True, False, False],
                                                                [False, False, True]]
    with pytest.raises(ValueError, match="'lac' or 'aps'"):
        conformity_scores(probs, "raps")
