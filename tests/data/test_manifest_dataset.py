"""Tests for dermsight.data.dataset.ManifestDataset and EpochSampler."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from dermsight.config import AugmentConfig
from dermsight.data.augment import build_train_augment
from dermsight.data.dataset import EpochSampler, ManifestDataset
from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.errors import DataError

PRE = Preprocess((16, 16))


def test_item_shapes_and_dtypes(manifest, classes):
    enc = MetadataEncoder(min_frequency=1).fit(manifest)
    ds = ManifestDataset(manifest, classes, PRE, encoder=enc)
    assert len(ds) == len(manifest)
    item = ds[3]
    assert set(item) == {"image", "meta", "target", "label", "lighting", "degraded", "index"}
    assert item["degraded"].item() == 0.0  # no on-the-fly degradation asked for
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["meta"].shape == (enc.dim_,) and item["meta"].dtype == torch.float32
    assert item["target"].shape == (3,) and item["target"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].ndim == 0
    assert item["lighting"].dtype == torch.float32 and item["lighting"].ndim == 0
    assert item["index"].item() == 3
    assert classes[int(item["label"])] == manifest["label"][3]
    assert torch.equal(item["target"], torch.nn.functional.one_hot(item["label"], 3).float())
    # the image is exactly the shared preprocessing of the decoded file
    assert np.allclose(item["image"].numpy(), PRE(ds.load_image(3)))
    assert ManifestDataset(manifest, classes, PRE)[0]["meta"].shape == (0,)


def test_batches_collate(manifest, classes):
    ds = ManifestDataset(manifest, classes, PRE)
    batch = next(iter(DataLoader(ds, batch_size=5)))
    assert batch["image"].shape == (5, 3, 16, 16) and batch["meta"].shape == (5, 0)
    assert batch["lighting"].shape == (5,) and batch["label"].shape == (5,)


def test_soft_labels_restricted_to_classes(make_manifest, classes):
    soft = [json.dumps({"eczema": 0.5, "psoriasis": 0.25, "rosacea": 0.25})] + [None] * 23
    frame = make_manifest(soft_labels=soft)
    target = ManifestDataset(frame, classes, PRE)[0]["target"]
    assert torch.allclose(target, torch.tensor([2 / 3, 0.0, 1 / 3]))


def test_unknown_label_is_a_construction_error(manifest, classes):
    frame = manifest.copy()
    frame.loc[4, "label"] = "lupus"
    with pytest.raises(DataError, match=r"'lupus'.*not in the class list.*classes"):
        ManifestDataset(frame, classes, PRE)


def test_lighting_target_from_prepare(manifest, classes):
    ds = ManifestDataset(manifest, classes, PRE)
    for i in range(8):
        ok = manifest["lighting_ok"][i]
        value = ds[i]["lighting"].item()
        assert np.isnan(value) if pd.isna(ok) else value == (0.0 if ok else 1.0)
    no_col = ManifestDataset(manifest.drop(columns="lighting_ok"), classes, PRE)
    assert np.isnan(no_col[0]["lighting"].item())


def test_lighting_target_from_degradation(manifest, classes):
    always = ManifestDataset(manifest, classes, PRE, lighting_degrade_p=1.0, seed=1)
    clean = ManifestDataset(manifest, classes, PRE)
    lighting = np.array([always[i]["lighting"].item() for i in range(len(always))])
    degraded = np.array([always[i]["degraded"].item() for i in range(len(always))])
    base = np.array([clean[i]["lighting"].item() for i in range(len(clean))])
    # 'degraded' marks exactly the items made poor on the fly (prepare's own 1s are not marked)
    assert set(np.unique(degraded)) <= {0.0, 1.0} and (lighting[degraded == 1] == 1).all()
    assert (degraded[base == 0] == lighting[base == 0]).all() and degraded.sum() >= 3
    # every degraded item is poor (1) when severe, else keeps prepare's target
    assert ((lighting == 1) | (lighting == base) | (np.isnan(lighting) & np.isnan(base))).all()
    assert (lighting[base == 0] == 1).sum() >= 3  # severity is uniform in [0.3, 1]: most >= 0.5
    assert not torch.equal(always[0]["image"], clean[0]["image"])
    assert torch.equal(always[0]["image"], always[0]["image"])  # seeded


def test_meta_dropout_marks_fields_missing(manifest, classes):
    enc = MetadataEncoder(min_frequency=1).fit(manifest)
    missing_cols = [enc.field_slices_[f].stop - 1 for f in enc.fields]
    full = ManifestDataset(manifest, classes, PRE, encoder=enc)
    all_dropped = ManifestDataset(manifest, classes, PRE, encoder=enc, meta_dropout=1.0)
    meta = all_dropped[2]["meta"].numpy()
    assert (meta[missing_cols] == 1).all() and meta.sum() == len(enc.fields)
    some = ManifestDataset(manifest, classes, PRE, encoder=enc, meta_dropout=0.5, seed=3)
    a = np.stack([some[i]["meta"].numpy() for i in range(len(some))])
    b = np.stack([full[i]["meta"].numpy() for i in range(len(full))])
    assert (a[:, missing_cols].sum() > b[:, missing_cols].sum())
    assert np.array_equal(a, np.stack([some[i]["meta"].numpy() for i in range(len(some))]))


def _augmented(manifest, classes, seed, epoch=0, workers=0):
    aug = build_train_augment(AugmentConfig(), PRE.input_size)
    ds = ManifestDataset(manifest, classes, PRE, augment=aug, lighting_degrade_p=0.5,
                         seed=seed)
    ds.set_epoch(epoch)
    loader = DataLoader(ds, batch_size=4, num_workers=workers)
    return torch.cat([b["image"] for b in loader])


def test_augmentation_is_seeded_per_item_and_changes_with_epoch(manifest, classes):
    frame = manifest.iloc[:8]
    a = _augmented(frame, classes, seed=0)
    assert torch.equal(a, _augmented(frame, classes, seed=0))
    assert torch.equal(a, _augmented(frame, classes, seed=0, workers=2))  # worker count free
    assert not torch.equal(a, _augmented(frame, classes, seed=0, epoch=1))
    assert not torch.equal(a, _augmented(frame, classes, seed=1))


def test_epoch_sampler_keys_and_order(manifest, classes):
    ds = ManifestDataset(manifest, classes, PRE)
    sampler = EpochSampler(len(ds), seed=0, dataset=ds)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(len(ds))) and {e for _, e in first} == {0}
    assert first == list(sampler)
    sampler.set_epoch(2)
    second = list(sampler)
    assert ds.epoch == 2 and {e for _, e in second} == {2} and second != first
    assert ds[second[0]]["index"].item() == second[0][0]
    weighted = EpochSampler(len(ds), seed=0, weights=np.r_[np.zeros(len(ds) - 1), 1.0])
    assert {i for i, _ in weighted} == {len(ds) - 1} and len(weighted) == len(ds)


def test_unreadable_image_error_names_the_file(manifest, classes, tmp_path):
    frame = manifest.copy()
    frame.loc[0, "image_uri"] = str(tmp_path / "gone.png")
    with pytest.raises(DataError, match="gone.png"):
        ManifestDataset(frame, classes, PRE)[0]


def test_quality_labels_from_degradations_only(manifest, classes):
    assert (~manifest["lighting_ok"].astype("boolean").fillna(True)).any()  # prepare flags some
    ds = ManifestDataset(manifest, classes, PRE, quality_labels="degradations")
    assert all(ds[i]["lighting"].item() == 0.0 for i in range(len(ds)))
    degraded = ManifestDataset(manifest, classes, PRE, quality_labels="degradations",
                               lighting_degrade_p=1.0, seed=1)
    items = [degraded[i] for i in range(len(degraded))]
    assert all(it["lighting"].item() == it["degraded"].item() for it in items)
    assert any(it["degraded"].item() == 1.0 for it in items)
    with pytest.raises(ValueError, match="quality_labels"):
        ManifestDataset(manifest, classes, PRE, quality_labels="ita")


def test_target_transform_smooths_within_groups(manifest, classes):
    from dermsight.data.targets import group_smoothing_matrix

    matrix = group_smoothing_matrix(classes, [[classes[0], classes[1]]], 0.2)
    ds = ManifestDataset(manifest, classes, PRE, target_transform=matrix)
    plain = ManifestDataset(manifest, classes, PRE)
    for i in range(len(ds)):
        label = int(plain[i]["label"])
        target = ds[i]["target"].numpy()
        assert int(ds[i]["label"]) == label and np.isclose(target.sum(), 1.0)
        if label in (0, 1):
            assert np.allclose(target[[label, 1 - label, 2]], [0.8, 0.2, 0.0])
        else:
            assert np.allclose(target, plain[i]["target"].numpy())
