import json

import numpy as np
import pytest

from dermsight.errors import ConfigError


# -- calibration.json: fitted on synthetic logits, stored as JSON, rebuilt -------------------
@pytest.mark.parametrize("mode", ["marginal", "class", "group"])
@pytest.mark.parametrize("method", ["lac", "aps"])
def test_calibration_json_round_trip(method, mode):
    from scipy.special import softmax

    from dermsight.evaluate.run import clean_json, conformal_from_calibration, fit_calibration

    rng = np.random.default_rng(0)
    n, c = 3000, 4
    y = rng.integers(0, c, n)
    logits = 2.5 * (rng.normal(size=(n, c)) + 1.2 * np.eye(c)[y])  # overconfident: T > 1
    groups = np.array(["light", "medium", "dark"], dtype=object)[rng.integers(0, 3, n)]
    body, scaler, conf = fit_calibration(logits[:1500], y[:1500], classes=list("abcd"),
                                         method=method, coverage=0.9, mode=mode,
                                         groups=groups[:1500])
    assert body["temperature"] > 1.5
    assert body["val_metrics"]["ece_after"] < body["val_metrics"]["ece_before"]
    stored = json.loads(json.dumps(clean_json(body)))
    assert stored["conformal"]["group_by"] == ("tone_bucket" if mode == "group" else None)
    if mode == "class":
        assert set(stored["conformal"]["thresholds"]) == set("abcd")
    rebuilt = conformal_from_calibration(stored)
    probs = softmax(logits[1500:] / stored["temperature"], axis=1)
    g = groups[1500:] if mode == "group" else None
    assert np.array_equal(rebuilt.predict_sets(probs, g), conf.predict_sets(probs, g))
    cov = rebuilt.report(probs, y[1500:], g)["coverage"]
    assert cov == pytest.approx(0.9, abs=0.03) or (method == "aps" and cov > 0.9)


def test_malformed_calibration_is_named():
    from dermsight.evaluate.run import conformal_from_calibration

    with pytest.raises(ConfigError, match="calibration.json: field 'format_version' is missing"):
        conformal_from_calibration({"temperature": 1.0})
    with pytest.raises(ConfigError, match=r"field 'conformal': Field required.*--recalibrate"):
        conformal_from_calibration({"format_version": 1, "classes": ["a"], "temperature": 1.0})
