"""``ManifestDataModule``: the prepared manifest → train / val / test DataLoaders (Lightning).

The manifest is read and checked when the module is built (missing columns, empty train split,
labels outside the class list fail early, with the column / split / label named). ``setup``
fits the :class:`MetadataEncoder` on the TRAIN rows only and builds the datasets. Augmentation,
photo degradation (lighting target) and metadata dropout apply to the train split only;
val / test are deterministic.

``state_dict()`` (saved by Lightning in checkpoints) holds the classes, the preprocessing and the
fitted encoder as plain JSON-able values, so a model folder can be written from a checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import lightning as L
import numpy as np
import pandas as pd
from pydantic import BaseModel
from torch.utils.data import DataLoader

from dermsight.config import AugmentConfig
from dermsight.data.augment import as_augment_config, build_train_augment
from dermsight.data.dataset import EpochSampler, ManifestDataset
from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.data.targets import (
    balanced_sampler_weights,
    check_classes,
    class_weights,
    group_smoothing_matrix,
)
from dermsight.errors import DataError
from dermsight.manifest import SPLITS, read_manifest

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                 "predict": ("test",), None: SPLITS}


def _as_encoder(metadata) -> MetadataEncoder | None:
    if metadata is None or isinstance(metadata, MetadataEncoder):
        return metadata
    if isinstance(metadata, BaseModel):
        metadata = metadata.model_dump()
    if isinstance(metadata, dict):
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in metadata.items()}
        return MetadataEncoder(**params)
    return MetadataEncoder.for_fields(list(metadata))


def _single_threaded_opencv() -> None:
    """One OpenCV thread per process, set in the PARENT before the workers fork.

    Workers then inherit a process without an OpenCV thread pool. Calling
    ``cv2.setNumThreads`` inside a forked worker instead can hang for good in OpenCV 4.x: it
    destroys the pool's condition variables, on which the parent's (now absent) pool threads
    were waiting at fork time.
    """
    cv2.setNumThreads(1)


class ManifestDataModule(L.LightningDataModule):
    """Train / val / test loaders over one manifest.

    Args:
        manifest: a manifest DataFrame, a prepared folder, or a ``manifest.parquet`` path.
        preprocess: the shared :class:`Preprocess` (its ``input_size`` sizes the augmentation).
        classes: class names (target order); None → the sorted labels of the train split.
        augment: training augmentation config (``AugmentConfig``, a dict, or a pydantic model
            with a subset of its fields); None → ``AugmentConfig()`` defaults.
        metadata: None (image only), field names (typed by the manifest schema, see
            :meth:`MetadataEncoder.for_fields`), a pydantic model / dict with ``numeric``,
            ``categorical``, ``multi_label``, ``min_frequency`` (the run config's
            ``data.metadata``), or an unfitted :class:`MetadataEncoder`.
        batch_size, eval_batch_size, num_workers, pin_memory: DataLoader settings
            (``eval_batch_size`` None → ``batch_size``).
        sampler: ``"shuffle"`` (seeded permutation per epoch) or ``"balanced"`` (capped
            oversampling by ``balance_by``, see :func:`balanced_sampler_weights`).
        balance_by, balance_cap: groups and cap of the balanced sampler.
        lighting_degrade_p, meta_dropout, quality_labels: training-only, see
            :class:`ManifestDataset`.
        label_groups, group_smoothing: near-synonym class groups and the share of a training
            target moved within its group (:func:`~.targets.group_smoothing_matrix`).
        seed: seeds sampling order, augmentation, degradation and dropout.
        draft_size: passed to the datasets (JPEG draft decoding; None = full decode).

    Raises:
        DataError: the manifest lacks a column the settings need (named), the train split is
            empty, or a label is outside ``classes``.
    """

    def __init__(self, manifest: pd.DataFrame | str | Path, preprocess: Preprocess, *,
                 classes: Sequence[str] | None = None,
                 augment: AugmentConfig | BaseModel | dict | None = None,
                 metadata: Sequence[str] | BaseModel | dict | MetadataEncoder | None = None,
                 batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, pin_memory: bool = False,
                 sampler: Literal["shuffle", "balanced"] = "shuffle",
                 balance_by: Sequence[str] = ("label", "tone_bucket"), balance_cap: float = 10.0,
                 lighting_degrade_p: float = 0.0, meta_dropout: float = 0.0, seed: int = 0,
                 draft_size: int | None = None, quality_labels: str = "prepare",
                 label_groups: Sequence[Sequence[str]] = (), group_smoothing: float = 0.0):
        super().__init__()
        if sampler not in ("shuffle", "balanced"):
            raise ValueError(f"sampler must be 'shuffle' or 'balanced', got {sampler!r}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got "
                             f"{batch_size} and {num_workers}")
        frame = manifest.copy() if isinstance(manifest, pd.DataFrame) else read_manifest(manifest)
        self.preprocess = preprocess
        self.augment_config = as_augment_config(augment)
        self.encoder = _as_encoder(metadata)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.sampler = sampler
        self.balance_by = tuple(balance_by)
        self.balance_cap = balance_cap
        self.lighting_degrade_p = lighting_degrade_p
        self.meta_dropout = meta_dropout
        self.seed = seed
        self.draft_size = draft_size
        self.quality_labels = quality_labels

        required = ["image_uri", "split"]
        required += ["label"] if "soft_labels" not in frame.columns else []
        required += list(self.encoder.fields) if self.encoder is not None else []
        required += list(self.balance_by) if sampler == "balanced" else []
        missing = [c for c in dict.fromkeys(required) if c not in frame.columns]
        if missing:
            raise DataError(f"the manifest lacks column(s) {missing} that the data settings "
                            f"need; it has {list(frame.columns)}")
        self.frames = {s: frame[frame["split"] == s].reset_index(drop=True) for s in SPLITS}
        train = self._split("train")
        if classes is None:
            if "label" not in train.columns or train["label"].isna().all():
                raise DataError("cannot infer classes: the train split has no 'label' values; "
                                "pass classes=[...]")
            classes = sorted(str(c) for c in train["label"].dropna().unique())
        self.classes = list(check_classes(classes))
        self.group_matrix = group_smoothing_matrix(self.classes, label_groups, group_smoothing)
        self.datasets: dict[str, ManifestDataset] = {}

    @classmethod
    def from_config(cls, manifest: pd.DataFrame | str | Path, data_cfg: BaseModel,
                    data_config: dict, *, seed: int = 0,
                    classes: Sequence[str] | None = None) -> ManifestDataModule:
        """Build from the run config's ``data`` section and the model's timm-style
        ``data_config`` (input size, mean, std, crop_pct, interpolation).

        ``data_cfg.input_size`` (when set) overrides the model's input size.
        """
        preprocess = Preprocess.from_timm(data_config)
        size = getattr(data_cfg, "input_size", None)
        if size is not None:
            h, w = (size, size) if isinstance(size, int) else size
            preprocess = dataclasses.replace(preprocess, input_size=(h, w))
        crop_pct = getattr(data_cfg, "crop_pct", None)
        if crop_pct is not None:
            preprocess = dataclasses.replace(preprocess, crop_pct=crop_pct)
        return cls(manifest, preprocess, classes=classes, augment=data_cfg.augment,
                   metadata=data_cfg.metadata, batch_size=data_cfg.batch_size,
                   eval_batch_size=getattr(data_cfg, "eval_batch_size", None),
                   num_workers=data_cfg.num_workers, sampler=data_cfg.sampler,
                   balance_cap=getattr(data_cfg, "sampler_cap", 10.0),
                   lighting_degrade_p=data_cfg.lighting_degrade_p,
                   meta_dropout=data_cfg.meta_dropout, seed=seed,
                   quality_labels=getattr(data_cfg, "quality_labels", "prepare"),
                   label_groups=getattr(data_cfg, "label_groups", ()),
                   group_smoothing=getattr(data_cfg, "group_smoothing", 0.0))

    def _split(self, split: str) -> pd.DataFrame:
        frame = self.frames[split]
        if len(frame) == 0:
            raise DataError(f"the manifest's '{split}' split is empty (no rows with "
                            f"split == '{split}')")
        return frame

    # ---- Lightning hooks --------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Fit the encoder on the train rows (once) and build the datasets ``stage`` needs."""
        if self.encoder is not None and not hasattr(self.encoder, "dim_"):
            self.encoder.fit(self._split("train"))
        for split in _STAGE_SPLITS.get(stage, SPLITS):
            # an empty val / test split is reported when its dataloader is asked for
            if split not in self.datasets and len(self.frames[split]):
                self.datasets[split] = self._build(split)

    def reseed(self, seed: int) -> None:
        """Use ``seed`` for training sampling, augmentation and dropout from now on (e.g. one
        per training phase, since every phase counts its epochs from 0 again)."""
        self.seed = seed
        self.datasets.pop("train", None)

    def _build(self, split: str, degrade_p: float | None = None) -> ManifestDataset:
        train = split == "train"
        augment = (build_train_augment(self.augment_config, self.preprocess.input_size,
                                       seed=self.seed) if train else None)
        if degrade_p is None:
            degrade_p = self.lighting_degrade_p if train else 0.0
        return ManifestDataset(
            self._split(split), self.classes, self.preprocess, encoder=self.encoder,
            augment=augment, lighting_degrade_p=degrade_p,
            meta_dropout=self.meta_dropout if train else 0.0, seed=self.seed,
            draft_size=self.draft_size, name=f"split '{split}'",
            quality_labels=self.quality_labels,
            target_transform=self.group_matrix if train else None)

    def _dataset(self, split: str) -> ManifestDataset:
        if split not in self.datasets:
            self._split(split)  # DataError naming the split when it is empty
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return self.datasets[split]

    @property
    def train_set(self) -> ManifestDataset:
        return self._dataset("train")

    @property
    def val_set(self) -> ManifestDataset:
        return self._dataset("val")

    @property
    def test_set(self) -> ManifestDataset:
        return self._dataset("test")

    def class_weights(self, cap: float = 10.0, power: float = 1.0) -> np.ndarray:
        """Per-class loss weights from the TRAIN split, see :func:`~.targets.class_weights`."""
        return class_weights(self._split("train"), self.classes, cap=cap, power=power)

    def _loader(self, dataset: ManifestDataset, sampler=None, *,
                batch_size: int | None = None) -> DataLoader:
        if self.num_workers > 0:
            _single_threaded_opencv()
        return DataLoader(dataset, batch_size=batch_size or self.eval_batch_size,
                          sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, pin_memory=self.pin_memory,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self, shuffle: bool = True) -> DataLoader:
        """Training batches (``batch_size``), augmented. ``shuffle=False``: every row once, in
        manifest order, still augmented with the epoch-0 seeds (e.g. to cache features)."""
        dataset = self._dataset("train")
        weights = None
        if shuffle and self.sampler == "balanced":
            weights = balanced_sampler_weights(dataset.frame, self.classes, by=self.balance_by,
                                               cap=self.balance_cap)
        sampler = EpochSampler(len(dataset), seed=self.seed, shuffle=shuffle, weights=weights,
                               dataset=dataset)
        return self._loader(dataset, sampler, batch_size=self.batch_size)

    def _eval_loader(self, split: str, degrade_p: float) -> DataLoader:
        if not 0.0 <= degrade_p <= 1.0:
            raise ValueError(f"degrade_p must be in [0, 1], got {degrade_p}")
        if degrade_p == 0:
            return self._loader(self._dataset(split))
        self._dataset(split)  # fits the encoder / reports an empty split first
        return self._loader(self._build(split, degrade_p=degrade_p))

    def val_dataloader(self, degrade_p: float = 0.0) -> DataLoader:
        """Validation batches (``eval_batch_size``), in order. ``degrade_p > 0``: a seeded,
        reproducible share of the photos is degraded (lighting target 1 when severe), to
        score the lighting head."""
        return self._eval_loader("val", degrade_p)

    def test_dataloader(self, degrade_p: float = 0.0) -> DataLoader:
        """Test batches; ``degrade_p`` as in :meth:`val_dataloader`."""
        return self._eval_loader("test", degrade_p)

    # ---- checkpoint state -------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "classes": list(self.classes),
            "preprocess": self.preprocess.to_dict(),
            "encoder": (self.encoder.to_dict()
                        if self.encoder is not None and hasattr(self.encoder, "dim_") else None),
        }

    def load_state_dict(self, state: dict) -> None:
        self.classes = list(check_classes(state["classes"]))
        self.preprocess = Preprocess.from_dict(state["preprocess"])
        if state.get("encoder") is not None:
            self.encoder = MetadataEncoder.from_dict(state["encoder"])
        self.datasets = {}
