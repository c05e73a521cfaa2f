"""`dermsight evaluate` and its building blocks.

Pure functions and fit-able calibrators (numpy in and out, no I/O, no torch):

- :mod:`.calibration`: top-label ECE, reliability curve, ECE per group, ``TemperatureScaler``.
- :mod:`.conformal`: split-conformal prediction sets (``ConformalClassifier``), coverage, set
  size, ``set_to_words``.
- :mod:`.fairness`: bootstrap confidence intervals, metrics per group with the largest gap,
  skin-tone groups from ITA.

The ``evaluate`` command (these read files, run the model with torch and write the report):
:mod:`.run` (the pipeline), :mod:`.data` (the scored rows), :mod:`.predict` (logits),
:mod:`.store` (``calibration.json``: fit, store, re-use), :mod:`.sections` (the report
sections), :mod:`.cam_sample` (Grad-CAM on a seeded sample), :mod:`.figures` and
:mod:`.report_html`. Only the building blocks are imported here, so ``import
dermsight.evaluate`` needs no torch.
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
