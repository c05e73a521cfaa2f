"""One rule for conformal prediction sets (numpy only: no torch, no scikit-learn, no I/O).

``evaluate`` measures the coverage of the sets this module builds, ``export`` checks them on the
exported graph, and the serving engine builds the very same sets for each photo, so what is
served is what was measured:

- :func:`conformity_scores`: the non-conformity score of every class (LAC: ``1 − p``; APS: the
  cumulative probability of the classes ranked at or above it, optionally randomised);
- :func:`prediction_sets`: a class is in the set when its score is at most its threshold (one
  threshold, one per class, or one per row); the top class is always in the set;
- :func:`served_thresholds`: the thresholds of each photo under model.json's ``conformal``
  settings (marginal, class-conditional, or group-conditional on the photo's measured tone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: model.json ``group_by`` → the key of the engine's skin-tone dict that names the group
TONE_KEYS = {"tone_bucket": "bucket", "ita_category": "category"}


def conformity_scores(probs: np.ndarray, method: str = "lac", *, randomized: bool = False,
                      seed: int = 0, stream: int = 0) -> np.ndarray:
    """Non-conformity score of every class, ``(n, C)``."""
    probs = np.asarray(probs, np.float64)
    if method == "lac":
        return 1.0 - probs
    if method != "aps":
        raise ValueError(f"conformal method must be 'lac' or 'aps', got {method!r}")
    order = np.argsort(-probs, axis=1, kind="stable")
    cum = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, cum, axis=1)
    if randomized:
        u = np.random.default_rng([seed, stream]).uniform(size=(len(probs), 1))
        scores -= u * probs
    return scores


def prediction_sets(probs: np.ndarray, thresholds, method: str = "lac", *,
                    scores: np.ndarray | None = None) -> np.ndarray:
    """Bool ``(n, C)`` sets: score ≤ threshold (``thresholds`` broadcast to ``(n, C)``), the
    top class always included. ``scores``: precomputed (e.g. randomised) scores."""
    probs = np.asarray(probs, np.float64)
    if scores is None:
        scores = conformity_scores(probs, method)
    sets = scores <= np.broadcast_to(np.asarray(thresholds, np.float64), probs.shape)
    sets[np.arange(len(probs)), probs.argmax(axis=1)] = True
    return sets


def served_thresholds(conformal: Mapping, classes: Sequence[str], n: int,
                      tones: Sequence[Mapping | None] | None = None) -> np.ndarray | None:
    """The ``(n, C)`` thresholds of ``n`` photos under model.json's ``conformal`` settings;
    None without settings (the set is then the top class only). ``tones``: each photo's
    measured skin tone (the engine's ``skin_tone`` dicts), for group-conditional thresholds;
    a photo whose group is unknown gets the marginal threshold."""
    threshold = conformal.get("threshold")
    if threshold is None:
        return None
    thr = np.full((n, len(classes)), float(threshold))
    for key, value in (conformal.get("thresholds") or {}).items():
        j = list(classes).index(key) if key in classes else int(key)
        thr[:, j] = float(value)
    if conformal.get("mode") == "group" and tones is not None:
        key = TONE_KEYS[conformal["group_by"]]
        by_group = conformal.get("group_thresholds") or {}
        for i, tone in enumerate(tones):
            value = by_group.get(str((tone or {}).get(key)))
            if value is not None:
                thr[i, :] = float(value)
    return thr


def served_sets(probs: np.ndarray, conformal: Mapping, classes: Sequence[str],
                tones: Sequence[Mapping | None] | None = None) -> np.ndarray:
    """The sets the serving engine gives calibrated ``probs`` under model.json's settings."""
    thr = served_thresholds(conformal, classes, len(probs), tones)
    if thr is None:  # no settings: the top class only
        return prediction_sets(probs, -np.inf)
    return prediction_sets(probs, thr, conformal.get("method", "lac"))
