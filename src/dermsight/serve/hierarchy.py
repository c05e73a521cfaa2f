"""Answers at the coarser levels of a model's labels (torch-free, no I/O).

A model trained on Fitzpatrick17k knows the dataset's coarser levels of each condition
(``three_partition_label``: malignant / benign / non-neoplastic; ``nine_partition_label``) and
which of its classes are near-synonyms (model.json's ``hierarchy`` and ``synonyms``, written by
``dermsight export``). :class:`Hierarchy` sums the probabilities over each level and writes one
sentence at the finest level the model is sure of, naming its most likely conditions with the
near-synonyms merged, so a person gets a useful answer when the exact condition is uncertain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dermsight.errors import ConfigError


def words_or(names: list[str]) -> str:
    """"a", "a or b", "a, b or c"."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " or " + names[-1]


@dataclass
class Hierarchy:
    """Coarser levels of a model's classes (e.g. Fitzpatrick17k's three- and nine-way
    partitions) and its near-synonym classes, to answer at the level the model is sure of."""

    levels: list[str]
    parents: dict[str, dict[str, str]]
    group_names: dict[str, str]
    classes: list[str]
    display_names: dict[str, str]
    synonyms: list[list[str]]

    #: a coarse group is named as the answer when its probability reaches this
    SURE = 0.6

    @classmethod
    def from_info(cls, info: Mapping | None, classes: list[str], synonyms: Any,
                  display_names: dict[str, str], where: str) -> Hierarchy | None:
        if not info:
            return None
        try:
            levels = [str(v) for v in info["levels"]]
            parents = {lv: {str(c): str(g) for c, g in info["parents"][lv].items()}
                       for lv in levels}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{where}: 'hierarchy' is malformed: {exc}") from exc
        for lv in levels:
            missing = [c for c in classes if c not in parents[lv]]
            if missing:
                raise ConfigError(f"{where}: hierarchy level '{lv}' has no group for "
                                  f"{missing}")
        return cls(levels, parents, dict(info.get("display_names") or {}), list(classes),
                   display_names, [list(map(str, g)) for g in synonyms or []])

    def groups(self, probs: np.ndarray) -> dict[str, list[tuple[str, float]]]:
        out = {}
        for lv in self.levels:
            total: dict[str, float] = {}
            for c, p in zip(self.classes, probs):
                g = self.parents[lv][c]
                total[g] = total.get(g, 0.0) + float(p)
            out[lv] = sorted(total.items(), key=lambda kv: -kv[1])
        return out

    def _merged(self, members: list[int], probs: np.ndarray) -> list[tuple[str, float]]:
        """Classes among ``members`` with near-synonyms merged under the first one's name."""
        score: dict[str, float] = {}
        for j in members:
            c = self.classes[j]
            head = next((g[0] for g in self.synonyms if c in g), c)
            name = self.display_names.get(head, head)
            score[name] = score.get(name, 0.0) + float(probs[j])
        return sorted(score.items(), key=lambda kv: -kv[1])

    def summary(self, probs: np.ndarray) -> str:
        """E.g. "Most likely an inflammatory, non-cancerous condition (87 %): acne or
        folliculitis." — the finest level whose top group is at least :attr:`SURE`, else the
        coarsest."""
        groups = self.groups(probs)
        chosen = self.levels[0]
        for lv in self.levels:
            if groups[lv][0][1] >= self.SURE:
                chosen = lv
        group, p = groups[chosen][0]
        members = [j for j, c in enumerate(self.classes) if self.parents[chosen][c] == group]
        named = [n for n, q in self._merged(members, probs)[:2] if q >= 0.05] or \
            [self._merged(members, probs)[0][0]]
        words = self.group_names.get(group, group.replace("-", " "))
        return f"Most likely {words} ({100 * p:.0f} %): {words_or(named)}."
