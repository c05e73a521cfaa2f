"""The photo-type router's fitted parts: the skin-type head, the refusal threshold, the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dermsight.errors import DataError
from dermsight.train.router import (
    choose_refuse_threshold,
    fit_skin_type,
    folder_rows,
    split_of,
)


def test_skin_type_head_learns_an_ordered_type_out_of_fold():
    rng = np.random.default_rng(1)
    types = rng.integers(1, 7, 600)
    x = rng.normal(0, 1, (600, 16))
    x[:, 0] += types * 1.5  # the type is in the embedding
    head = fit_skin_type(x, types, np.arange(600).astype(str), c=1.0)
    oof = head["out_of_fold"]
    assert oof["spearman"] > 0.8 and oof["within_1"] > 0.9
    assert set(oof["per_type"]) == {"1", "2", "3", "4", "5", "6"}
    weight, bias = np.asarray(head["weight"]), np.asarray(head["bias"])
    probs = np.exp(x @ weight.T + bias)
    probs /= probs.sum(1, keepdims=True)
    expected = probs @ np.arange(1, 7)
    assert np.corrcoef(expected, types)[0, 1] > 0.9  # the head works on raw embeddings
    noise = fit_skin_type(rng.normal(0, 1, (600, 16)), types, np.arange(600).astype(str))
    assert abs(noise["out_of_fold"]["spearman"]) < 0.2  # no signal, no claim


def test_refuse_threshold_keeps_false_refusals_within_budget():
    rng = np.random.default_rng(2)
    p = np.r_[rng.beta(1, 20, 1000), rng.beta(20, 1, 200)]
    is_skin = np.r_[np.ones(1000, bool), np.zeros(200, bool)]
    t = choose_refuse_threshold(p, is_skin, 0.005)
    assert t >= 0.5 and (p[is_skin] >= t).mean() <= 0.005


def test_split_is_seeded_by_group_and_folders_list_every_picture(tmp_path):
    assert split_of("a", 0.2, 0) == split_of("a", 0.2, 0)
    shares = np.mean([split_of(str(i), 0.2, 0) == "val" for i in range(2000)])
    assert 0.17 < shares < 0.23
    (tmp_path / "docs").mkdir()
    for name in ("docs/a.jpg", "b.PNG", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    rows = folder_rows(tmp_path)
    assert isinstance(rows, pd.DataFrame) and len(rows) == 2
    assert set(rows["photo_type"]) == {"not_skin"} and set(rows["source"]) == {"docs",
                                                                               tmp_path.name}
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no pictures"):
        folder_rows(tmp_path / "empty")
    with pytest.raises(DataError, match="not a folder of pictures"):
        folder_rows(tmp_path / "missing")
