"""Evaluation building blocks: pure metric functions and fit-able calibrators (numpy in and out).

- :mod:`.calibration`: top-label ECE, reliability curve, ECE per group, ``TemperatureScaler``.
- :mod:`.conformal`: split-conformal prediction sets (``ConformalClassifier``), coverage, set
  size, ``set_to_words``.
- :mod:`.fairness`: bootstrap confidence intervals, metrics per group with the largest gap,
  skin-tone groups from ITA.

No model, no I/O and no torch here: the ``evaluate`` command feeds these with predictions.
"""

from dermsight.evaluate.calibration import (
    TemperatureScaler,
    ece_by_group,
    expected_calibration_error,
    reliability_curve,
)
from dermsight.evaluate.conformal import (
    ConformalClassifier,
    conformal_quantile,
    coverage,
    mean_set_size,
    set_to_words,
)
from dermsight.evaluate.fairness import (
    DEFAULT_METRICS,
    ConfidenceInterval,
    bootstrap_ci,
    group_metrics,
    ita_groups,
)

__all__ = [
    "DEFAULT_METRICS",
    "ConfidenceInterval",
    "ConformalClassifier",
    "TemperatureScaler",
    "bootstrap_ci",
    "conformal_quantile",
    "coverage",
    "ece_by_group",
    "expected_calibration_error",
    "group_metrics",
    "ita_groups",
    "mean_set_size",
    "reliability_curve",
    "set_to_words",
]
