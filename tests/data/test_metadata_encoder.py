"""Tests for dermsight.data.metadata.MetadataEncoder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from dermsight.data.metadata import MetadataEncoder


def frame(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({
        "age": [20.0, 40.0, None, 60.0] * (n // 4),
        "sex": ["female", "male", "female", None] * (n // 4),
        "body_site": ["arm"] * (n - 2) + ["nose", None],
        "symptoms": ["itch", "itch|bleed", None, "pain"] * (n // 4),
    })


def encoder(**kw) -> MetadataEncoder:
    kw.setdefault("min_frequency", 2)
    return MetadataEncoder(numeric=("age",), categorical=("sex", "body_site"),
                           multi_label=("symptoms",), **kw)


def test_init_only_stores_params_and_clones():
    enc = encoder()
    assert enc.get_params() == {"numeric": ("age",), "categorical": ("sex", "body_site"),
                                "multi_label": ("symptoms",), "min_frequency": 2}
    assert not hasattr(enc, "dim_")
    with pytest.raises(NotFittedError):
        enc.transform(frame())
    enc.fit(frame())
    assert not hasattr(clone(enc), "dim_")


def test_fit_transform_layout_and_values():
    f = frame()
    enc = encoder().fit(f)
    assert enc.categories_ == {"sex": ["female", "male"], "body_site": ["arm"],
                               "symptoms": ["bleed", "itch", "pain"]}
    assert enc.feature_names_ == [
        "age", "age=<missing>",
        "sex=female", "sex=male", "sex=<other>", "sex=<missing>",
        "body_site=arm", "body_site=<other>", "body_site=<missing>",
        "symptoms=bleed", "symptoms=itch", "symptoms=pain", "symptoms=<other>",
        "symptoms=<missing>"]
    x = enc.transform(f)
    assert x.shape == (12, enc.dim_) == (12, 14) and x.dtype == np.float32
    assert enc.field_slices_["sex"] == slice(2, 6)
    ages = x[:, 0][f["age"].notna().to_numpy()]
    assert abs(ages.mean()) < 1e-6 and abs(ages.std() - 1) < 1e-5  # standardised
    assert x[2, 0] == 0 and x[2, 1] == 1  # missing age
    assert list(x[1, 9:14]) == [1, 1, 0, 0, 0]  # itch|bleed
    assert list(x[2, 9:14]) == [0, 0, 0, 0, 1]  # symptoms missing
    assert list(x[10, 6:9]) == [0, 1, 0]  # 'nose' is rare (< min_frequency) → other
    assert list(x[11, 6:9]) == [0, 0, 1]
    for field, s in enc.field_slices_.items():  # one-hot fields: exactly one hot per row
        if field in ("sex", "body_site"):
            assert (x[:, s].sum(1) == 1).all()


def test_unknown_values_map_to_other_and_are_counted():
    enc = encoder().fit(frame())
    new = pd.DataFrame({"age": ["thirty", 30], "sex": [" Female ", "intersex"],
                        "body_site": ["scalp", "ARM"], "symptoms": ["itch|burn", "burn"]})
    x = enc.transform(new)
    assert x[0, 1] == 1  # unreadable age → missing
    assert list(x[:, 2:6][0]) == [1, 0, 0, 0]  # case and spaces are normalised
    assert list(x[:, 2:6][1]) == [0, 0, 1, 0]
    assert list(x[1, 6:9]) == [1, 0, 0]
    assert list(x[0, 9:14]) == [0, 1, 0, 1, 0]
    assert enc.unknown_counts_ == {("age", "thirty"): 1, ("sex", "intersex"): 1,
                                   ("body_site", "scalp"): 1, ("symptoms", "burn"): 2}
    enc.reset_unknown_counts()
    assert not enc.unknown_counts_


def test_absent_fields_empty_frames_and_all_missing_rows():
    enc = encoder().fit(pd.DataFrame({"age": pd.Series([], dtype=float)}))  # fit on nothing
    assert enc.means_ == {"age": 0.0} and enc.stds_ == {"age": 1.0}
    assert enc.categories_["sex"] == [] and enc.dim_ == 2 + 2 + 2 + 2
    x = enc.transform(pd.DataFrame({"other_column": [1, 2]}))  # every field absent
    assert x.shape == (2, 8)
    missing = [enc.field_slices_[f].stop - 1 for f in enc.fields]
    assert (x[:, missing] == 1).all() and x.sum() == 2 * 4
    fitted = encoder().fit(frame())
    row = fitted.transform({"age": None, "sex": None, "body_site": "", "symptoms": None})
    assert row.shape == (1, fitted.dim_)
    assert row.sum() == 4 and (row[0, [fitted.field_slices_[f].stop - 1
                                       for f in fitted.fields]] == 1).all()


def test_constant_numeric_column_does_not_divide_by_zero():
    enc = encoder().fit(pd.DataFrame({"age": [30.0] * 5}))
    assert enc.stds_["age"] == 1.0
    assert np.isfinite(enc.transform(pd.DataFrame({"age": [30.0, 90.0]}))).all()


def test_dict_round_trip_is_json_and_identical():
    f = frame()
    enc = encoder().fit(f)
    again = MetadataEncoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert again.feature_names_ == enc.feature_names_
    assert np.array_equal(again.transform(f), enc.transform(f))
    with pytest.raises(ValueError, match="unknown key"):
        MetadataEncoder.from_dict({**enc.to_dict(), "extra": 1})


def test_drop_mask_marks_fields_missing():
    f = frame()
    enc = encoder().fit(f)
    mask = np.zeros((len(f), 4), bool)
    mask[0, 1] = True  # drop 'sex' of row 0
    x = enc.transform(f, drop_mask=mask)
    full = enc.transform(f)
    assert list(x[0, 2:6]) == [0, 0, 0, 1]
    assert np.array_equal(np.delete(x, 0, axis=0), np.delete(full, 0, axis=0))
    assert np.array_equal(x[0, :2], full[0, :2])
    everything = enc.transform(f, drop_mask=np.ones(4, bool))
    assert np.array_equal(everything, enc.transform(pd.DataFrame(index=range(len(f)))))
    rng = np.random.default_rng(0)
    drop = enc.random_drop_mask(1000, 0.25, rng)
    assert drop.shape == (1000, 4) and 0.2 < drop.mean() < 0.3
    single = enc.mask_fields(full[3], np.array([True, False, False, False]))
    assert single.shape == full[3].shape and single[0] == 0 and single[1] == 1


def test_for_fields_types_by_schema():
    enc = MetadataEncoder.for_fields(["age", "sex", "symptoms", "fitzpatrick", "body_site"])
    assert enc.numeric == ("age", "fitzpatrick") and enc.multi_label == ("symptoms",)
    assert enc.categorical == ("sex", "body_site")


@pytest.mark.parametrize("kwargs, match", [
    ({"numeric": ("age",), "categorical": ("age",)}, "more than once"),
    ({"numeric": "age"}, "numeric"),
    ({"min_frequency": 0}, "min_frequency"),
])
def test_bad_params_raise_at_fit(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MetadataEncoder(**kwargs).fit(frame())
