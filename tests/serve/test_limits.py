"""The pieces of the request limits: route templates, runs of a batch, the pixel budget, the
nesting of metadata JSON."""

from __future__ import annotations

import json

import pytest

from dermsight.serve.api import inference, limits
from dermsight.serve.api.errors import ApiError
from dermsight.serve.api.limits import BodyLimit, PixelBudget, pixel_groups


def test_a_body_limit_matches_its_route_template_only():
    rule = BodyLimit("POST", "/v1/track/series/{series_id}/photos", 10, True, "file")
    assert rule.matches("POST", "/v1/track/series/abc/photos")
    assert rule.matches("POST", "/v1/track/series/abc/photos/")
    assert not rule.matches("GET", "/v1/track/series/abc/photos")
    assert not rule.matches("POST", "/v1/track/series/a/b/photos")
    assert not rule.matches("POST", "/v1/track/series//photos")
    assert not BodyLimit("POST", "/v1/predict", 10).matches("POST", "/v1/predict/batch")


@pytest.mark.parametrize("sizes,cap,groups", [
    ([], 10, []),
    ([3, 3, 3, 3], 10, [[0, 1, 2], [3]]),
    ([12, 1, 1], 10, [[0], [1, 2]]),
    ([1, 12, 1], 10, [[0], [1], [2]]),
    ([0, 0, 5, 5], 10, [[0, 1, 2, 3]]),
])
def test_pixel_groups_keep_the_order_and_the_cap(sizes, cap, groups):
    assert pixel_groups(sizes, cap) == groups


def test_the_pixel_budget_refuses_at_once_and_frees_on_exit(monkeypatch):
    trims = []
    monkeypatch.setattr(limits, "release_memory", lambda: trims.append(1))
    budget = PixelBudget(10_000_000)
    with budget.hold(6_000_000):
        with pytest.raises(ApiError) as err, budget.hold(5_000_000):
            pass
        assert err.value.status == 503 and err.value.headers == {"Retry-After": "2"}
        with budget.hold(4_000_000):
            assert budget.used == 10_000_000
        assert trims == []  # 6 Mpx still held: nothing to give back yet
    assert budget.used == 0 and trims == [1]
    with pytest.raises(RuntimeError), budget.hold(8_000_000):
        raise RuntimeError("the decoder failed")
    assert budget.used == 0 and trims == [1, 1]
    with budget.hold(0), budget.hold(100):  # small holds do not trim
        pass
    assert trims == [1, 1]


@pytest.mark.parametrize("text,depth", [
    ('{"age": 45}', 1), ('[{"a": [1, 2]}, {}]', 3), ('{"a": "[[[[{{{"}', 1),
    ('{"a": "\\"[[["}', 1), ("[" * 50 + "]" * 50, 50), ("3", 0),
])
def test_json_depth_ignores_brackets_in_strings(text, depth):
    assert inference.json_depth(text) == depth
    if depth < 50:
        json.loads(text)  # the cases are valid JSON
