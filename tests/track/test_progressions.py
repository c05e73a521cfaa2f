"""Synthetic progressions: the changes do what their labels say, seeded, split by lesion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dermsight.track import progressions as P
from dermsight.track.lesion import measure_lesion


def _item(seed=0, gid="g0"):
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    rgb = np.empty((h, w, 3), np.float32)
    rgb[...] = [200, 150, 125]
    rgb += rng.normal(0, 4, rgb.shape)
    mask = P.central_ellipse(h, w, 0.08)
    rgb[mask] = [120, 75, 60]
    return P.LesionImage(f"img{seed}", gid, np.clip(rgb, 0, 255).astype(np.uint8), mask, "toy")


@pytest.mark.parametrize("factor", [0.5, 1.8])
def test_radial_warp_scales_the_lesion_area(factor):
    it = _item()
    _, mask = P.radial_warp(it.rgb, it.mask, factor)
    assert mask.sum() / it.mask.sum() == pytest.approx(factor, rel=0.12)


def test_recolor_deepens_and_fades_the_lesion():
    it = _item()
    base = measure_lesion(it.rgb)["contrast"]
    deeper = measure_lesion(P.recolor(it.rgb, it.mask, 1.5, 5))["contrast"]
    faded = measure_lesion(P.recolor(it.rgb, it.mask, 0.5, -5))["contrast"]
    assert faded < base < deeper


def test_measure_lesion_follows_size():
    it = _item()
    small = measure_lesion(P.radial_warp(it.rgb, it.mask, 0.5)[0])
    big = measure_lesion(P.radial_warp(it.rgb, it.mask, 2.0)[0])
    assert small["area"] < measure_lesion(it.rgb)["area"] < big["area"]
    assert small["severity"] < big["severity"]
    with pytest.raises(ValueError, match="RGB uint8"):
        measure_lesion(np.zeros((10, 10), np.uint8))


def test_progressions_are_seeded_and_labelled():
    items = [_item(i, f"g{i}") for i in range(3)]
    a = P.build_progressions(items, 2, seed=3)
    b = P.build_progressions(items, 2, seed=3)
    assert [p.label for p in a] == [p.label for p in b]
    assert all(np.array_equal(x, y) for p, q in zip(a, b) for x, y in zip(p.images, q.images))
    assert {p.label for p in a} == set(P.LABELS)
    for p in a:
        assert 2 <= len(p.images) <= 6 and p.days[0] == 0 and np.all(np.diff(p.days) > 0)
        ch = p.params
        if p.label == "worsened":
            assert ch["area"] > 1.3 or ch["contrast"] > 1.25
        elif p.label == "improved":
            assert ch["area"] < 0.75 or ch["contrast"] < 0.75
        else:
            assert 0.9 < ch["area"] < 1.1 and 0.9 < ch["contrast"] < 1.1
    with pytest.raises(ValueError, match="n_visits"):
        P.make_progression(items[0], "stable", 1, np.random.default_rng(0))


def test_split_by_group_is_disjoint():
    items = [_item(i, f"lesion{i // 2}") for i in range(10)]
    tr, ev = P.split_by_group(items, 0.4, seed=0)
    assert len(tr) + len(ev) == 10 and ev
    assert not {i.group_id for i in tr} & {i.group_id for i in ev}


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.mark.shared_data
def test_real_datasets_load_with_masks():
    if not (SHARED / "ham10000").is_dir() or not (SHARED / "fitzpatrick17k").is_dir():
        pytest.skip("../shared/data is not available on this machine")
    ham = P.load_ham10000(SHARED / "ham10000", n=4, seed=0)
    assert ham and all(it.mask.shape == it.rgb.shape[:2] and it.mask.any() for it in ham)
    assert len({it.group_id for it in ham}) == len(ham)  # one image per lesion
    fz = P.load_fitzpatrick17k(SHARED / "fitzpatrick17k", n_per_group=1, seed=0)
    assert sorted(it.tone for it in fz) == ["1-2", "3-4", "5-6"]
    assert all(max(it.rgb.shape[:2]) <= 256 for it in fz)
