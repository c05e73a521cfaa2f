"""Answers at the coarser levels of a model's labels (Fitzpatrick17k's partitions)."""

from __future__ import annotations

import numpy as np
import pytest

from dermsight.errors import ConfigError
from dermsight.serve.hierarchy import Hierarchy, words_or

CLASSES = ["acne", "acne-vulgaris", "folliculitis", "melanoma", "keloid"]
INFO = {
    "levels": ["three_partition_label", "nine_partition_label"],
    "parents": {
        "three_partition_label": {"acne": "non-neoplastic", "acne-vulgaris": "non-neoplastic",
                                  "folliculitis": "non-neoplastic", "melanoma": "malignant",
                                  "keloid": "non-neoplastic"},
        "nine_partition_label": {"acne": "inflammatory", "acne-vulgaris": "inflammatory",
                                 "folliculitis": "inflammatory",
                                 "melanoma": "malignant-melanoma", "keloid": "inflammatory"}},
    "display_names": {"inflammatory": "an inflammatory, non-cancerous condition",
                      "non-neoplastic": "an inflammatory or other non-cancerous condition",
                      "malignant": "a possibly cancerous (malignant) condition"},
}
NAMES = {c: c.replace("-", " ") for c in CLASSES}


def _hierarchy() -> Hierarchy:
    return Hierarchy.from_info(INFO, CLASSES, [["acne", "acne-vulgaris"]], NAMES, "model.json")


def test_groups_sum_the_probabilities_of_each_level():
    groups = _hierarchy().groups(np.array([0.2, 0.3, 0.25, 0.1, 0.15]))
    assert groups["three_partition_label"][0] == ("non-neoplastic", pytest.approx(0.9))
    assert groups["nine_partition_label"][1] == ("malignant-melanoma", pytest.approx(0.1))


def test_summary_answers_at_the_finest_sure_level_with_synonyms_merged():
    text = _hierarchy().summary(np.array([0.2, 0.3, 0.25, 0.1, 0.15]))
    # acne + acne vulgaris (0.5) outrank folliculitis (0.25): one condition, not two
    assert text == ("Most likely an inflammatory, non-cancerous condition (90 %): acne or "
                    "folliculitis.")
    unsure = _hierarchy().summary(np.array([0.2, 0.1, 0.1, 0.45, 0.15]))
    assert unsure.startswith("Most likely an inflammatory or other non-cancerous condition "
                             "(55 %)")


def test_a_level_missing_a_class_is_named():
    broken = {**INFO, "parents": {**INFO["parents"], "nine_partition_label": {"acne": "x"}}}
    with pytest.raises(ConfigError, match="nine_partition_label' has no group for"):
        Hierarchy.from_info(broken, CLASSES, [], NAMES, "model.json")
    assert Hierarchy.from_info(None, CLASSES, [], NAMES, "model.json") is None
    assert words_or(["a", "b", "c"]) == "a, b or c"
