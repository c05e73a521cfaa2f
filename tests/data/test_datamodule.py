"""Tests for dermsight.data.datamodule.ManifestDataModule."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dermsight.config import AugmentConfig
from dermsight.data.datamodule import ManifestDataModule
from dermsight.data.preprocess import Preprocess
from dermsight.errors import DataError
from dermsight.manifest import write_manifest

PRE = Preprocess((16, 16))


def test_splits_loaders_and_train_only_encoder_fit(manifest):
    dm = ManifestDataModule(manifest, PRE, metadata=["age", "sex", "symptoms"], batch_size=4,
                            meta_dropout=0.2, lighting_degrade_p=0.3)
    assert dm.classes == ["eczema", "melanoma", "psoriasis"]  # sorted train labels
    dm.setup("fit")
    train = manifest[manifest["split"] == "train"]
    assert dm.encoder.means_["age"] == pytest.approx(train["age"].astype(float).mean())
    sizes = {s: sum(len(b["index"]) for b in getattr(dm, f"{s}_dataloader")())
             for s in ("train", "val", "test")}
    assert sizes == {"train": 12, "val": 6, "test": 6}
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 3, 16, 16) and batch["meta"].shape == (4, dm.encoder.dim_)
    assert dm.datasets["val"].augment is None and dm.datasets["val"].meta_dropout == 0
    assert dm.datasets["train"].lighting_degrade_p == 0.3
    state = json.loads(json.dumps(dm.state_dict()))
    assert state["classes"] == dm.classes and state["encoder"]["numeric"] == ["age"]


def test_reads_a_prepared_folder(manifest, tmp_path):
    write_manifest(manifest, tmp_path / "prep" / "manifest.parquet")
    dm = ManifestDataModule(tmp_path / "prep", PRE, augment=AugmentConfig.eval())
    assert len(dm.frames["train"]) == 12


def test_train_order_is_seeded_and_changes_per_epoch(manifest):
    def epoch_indices(epoch, sampler="shuffle"):
        dm = ManifestDataModule(manifest, PRE, batch_size=6, seed=0, sampler=sampler)
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)  # what Lightning does at each epoch start
        return torch.cat([b["index"] for b in loader]).tolist()

    assert epoch_indices(0) == epoch_indices(0) != epoch_indices(1)
    balanced = epoch_indices(0, "balanced")
    assert len(balanced) == 12 and set(balanced) <= set(range(12))


def test_empty_split_error_names_it(manifest):
    frame = manifest[manifest["split"] != "test"]
    dm = ManifestDataModule(frame, PRE)
    dm.setup("fit")
    with pytest.raises(DataError, match="'test' split is empty"):
        dm.test_dataloader()
    with pytest.raises(DataError, match="'train' split is empty"):
        ManifestDataModule(manifest[manifest["split"] != "train"], PRE)


@pytest.mark.parametrize("drop, kwargs", [
    ("split", {}),
    ("body_site", {"metadata": ["age", "body_site"]}),
    ("tone_bucket", {"sampler": "balanced"}),
])
def test_missing_column_error_names_it(manifest, drop, kwargs):
    with pytest.raises(DataError, match=f"'{drop}'"):
        ManifestDataModule(manifest.drop(columns=drop), PRE, **kwargs)


def test_label_outside_given_classes(manifest):
    with pytest.raises(DataError, match="'psoriasis'"):
        ManifestDataModule(manifest, PRE, classes=["eczema", "melanoma"]).setup("fit")


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader`", "ignore:.*LeafSpec")
def test_lightning_fit_sets_the_epoch(manifest):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3 * 16 * 16, 3)
            self.epochs_seen = []

        def training_step(self, batch, _):
            logits = self.layer(batch["image"].flatten(1))
            return torch.nn.functional.cross_entropy(logits, batch["target"])

        def on_train_epoch_start(self):
            self.epochs_seen.append(self.trainer.train_dataloader.sampler.epoch)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = ManifestDataModule(manifest, PRE, batch_size=6, seed=0)
    model = Tiny()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert model.epochs_seen == [0, 1] and dm.datasets["train"].epoch == 1


def test_from_run_config_and_training_helpers(manifest):
    config = pytest.importorskip("dermsight.config")
    if not hasattr(config, "DataConfig"):
        pytest.skip("dermsight.config has no DataConfig yet")
    data_cfg = config.DataConfig(batch_size=4, eval_batch_size=6, num_workers=0,
                                 sampler="balanced", input_size=(20, 16))
    timm_cfg = {"input_size": (3, 224, 224), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                "crop_pct": 0.9, "interpolation": "bicubic"}
    dm = ManifestDataModule.from_config(manifest, data_cfg, timm_cfg, seed=1)
    assert dm.preprocess == Preprocess((20, 16), (0.5,) * 3, (0.5,) * 3, 0.9, "bicubic")
    assert dm.augment_config.rotate_limit == data_cfg.augment.rotate_limit
    dm.setup("fit")
    assert dm.encoder.fields == tuple(data_cfg.metadata.all())
    assert len(dm.train_set) == 12 and len(dm.val_set) == 6
    weights = dm.class_weights(cap=5.0)
    assert weights.shape == (3,) and np.isclose(weights.mean(), 1)
    ordered = torch.cat([b["index"] for b in dm.train_dataloader(shuffle=False)])
    assert ordered.tolist() == list(range(12))
    val = next(iter(dm.val_dataloader()))
    assert val["image"].shape == (6, 3, 20, 16)
    degraded = torch.cat([b["lighting"] for b in dm.val_dataloader(degrade_p=1.0)])
    again = torch.cat([b["lighting"] for b in dm.val_dataloader(degrade_p=1.0)])
    assert torch.equal(degraded.nan_to_num(-1), again.nan_to_num(-1))
    assert (degraded == 1).sum() >= 3


def test_reseed_changes_training_draws_but_not_evaluation(manifest):
    dm = ManifestDataModule(manifest, PRE, batch_size=4, lighting_degrade_p=0.5, seed=0)
    dm.setup("fit")
    first = next(iter(dm.train_dataloader(shuffle=False)))["image"]
    val = next(iter(dm.val_dataloader()))["image"]
    dm.reseed(1)
    assert dm.seed == 1
    assert not torch.equal(next(iter(dm.train_dataloader(shuffle=False)))["image"], first)
    assert torch.equal(next(iter(dm.val_dataloader()))["image"], val)
    dm.reseed(0)
    assert torch.equal(next(iter(dm.train_dataloader(shuffle=False)))["image"], first)


def test_from_config_overrides_input_size_and_crop(manifest):
    from dermsight.config import DataConfig

    timm_cfg = {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3,
                "crop_pct": 0.875, "interpolation": "bicubic"}
    cfg = DataConfig(input_size=(32, 48), crop_pct=1.0, metadata=None)
    dm = ManifestDataModule.from_config(manifest, cfg, timm_cfg)
    assert dm.preprocess.input_size == (32, 48)
    assert dm.preprocess.crop_pct == 1.0 and dm.preprocess.mean == (0.5,) * 3
    default = ManifestDataModule.from_config(manifest, DataConfig(metadata=None), timm_cfg)
    assert default.preprocess.input_size == (224, 224) and default.preprocess.crop_pct == 0.875
