"""``ManifestDataset``: manifest rows of one split → dicts of tensors for the model.

Per item: read the image (``dermsight.io.read_bytes``, local path or fsspec URL), decode it
(``decode_image``), augment (training), resize + centre-crop to the model input, optionally apply
a seeded photo degradation (it then sets the lighting target), normalise.

Every random choice of an item comes from one generator seeded with ``(seed, epoch, index)``, so
two runs with the same seed see the same augmentations whatever the number of DataLoader
workers. The epoch comes from :meth:`ManifestDataset.set_epoch`, or from the key itself:
:class:`EpochSampler` yields ``(index, epoch)`` pairs, which keeps persistent workers in step
(Lightning calls the sampler's ``set_epoch`` at every epoch start).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from dermsight.config import ImageCheckConfig
from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.data.targets import (  # noqa: F401 (re-exported: the dataset stage's API)
    balanced_sampler_weights,
    check_classes,
    class_weights,
    target_matrix,
)
from dermsight.errors import DataError
from dermsight.features.degrade import random_degradation
from dermsight.imaging import ImageRejected, decode_image
from dermsight.io import read_bytes

POOR_LIGHTING_SEVERITY = 0.5  # a degradation at least this severe makes the lighting target 1
MAX_PIXELS = ImageCheckConfig().max_pixels  # prepare's decompression-bomb guard


def _item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(epoch),
                                                         int(index)]))


class ManifestDataset(Dataset):
    """Rows of one split of the manifest.

    Args:
        frame: manifest rows (needs ``image_uri`` and ``label`` and/or ``soft_labels``).
        classes: class names; the target's order.
        preprocess: the shared :class:`Preprocess`.
        encoder: a FITTED :class:`MetadataEncoder`, or None (``meta`` is then empty).
        augment: callable RGB uint8 → RGB uint8 (training). If it has ``set_random_seed`` (as
            :class:`~dermsight.data.augment.TrainAugment` and ``albumentations.Compose`` do) it
            is re-seeded per item; other callables are not seeded by the dataset.
        lighting_degrade_p: probability of a random photo degradation per item.
        meta_dropout: per-field probability of marking a metadata field missing.
        seed: base seed.
        draft_size: let JPEG decoding skip resolution above about this many pixels per side
            (faster on big photos; None decodes fully, exactly as serving does).
        name: used in error messages (e.g. the split).
        quality_labels: ``"prepare"``: the lighting target of an undegraded photo is
            ``1 - lighting_ok``; ``"degradations"``: it is 0 (only on-the-fly degradations
            teach "poor photo").
        target_transform: ``(C, C)`` row-stochastic matrix applied to every target (e.g.
            :func:`~dermsight.data.targets.group_smoothing_matrix`); labels are unchanged.

    Items (dict of tensors): ``image`` float32 (3, H, W); ``meta`` float32 (dim,) or (0,);
    ``target`` float32 (C,); ``label`` int64; ``lighting`` float32 scalar (1 = poor, 0 = ok,
    NaN = unknown); ``degraded`` float32 scalar (1 when this item was degraded on the fly past
    the poor-lighting severity); ``index`` int64 (row position in ``frame``).

    Lighting target: 1 when the item was degraded with severity >= 0.5; otherwise
    ``1 - lighting_ok`` from prepare (NaN when unknown or the column is absent), or 0 with
    ``quality_labels="degradations"``.

    Raises:
        DataError: missing ``image_uri``, a label not in ``classes`` (named), or an unfitted
            encoder.
    """

    def __init__(self, frame: pd.DataFrame, classes: Sequence[str], preprocess: Preprocess, *,
                 encoder: MetadataEncoder | None = None,
                 augment: Callable[[np.ndarray], np.ndarray] | None = None,
                 lighting_degrade_p: float = 0.0, meta_dropout: float = 0.0, seed: int = 0,
                 draft_size: int | None = None, name: str = "dataset",
                 quality_labels: str = "prepare", target_transform: np.ndarray | None = None):
        if not 0.0 <= lighting_degrade_p <= 1.0:
            raise ValueError(f"lighting_degrade_p must be in [0, 1], got {lighting_degrade_p}")
        if not 0.0 <= meta_dropout <= 1.0:
            raise ValueError(f"meta_dropout must be in [0, 1], got {meta_dropout}")
        if quality_labels not in ("prepare", "degradations"):
            raise ValueError(f"quality_labels must be 'prepare' or 'degradations', got "
                             f"{quality_labels!r}")
        if "image_uri" not in frame.columns:
            raise DataError(f"{name}: the manifest lacks column 'image_uri'")
        if "label" not in frame.columns and "soft_labels" not in frame.columns:
            raise DataError(f"{name}: the manifest lacks column 'label' (and 'soft_labels')")
        self.frame = frame.reset_index(drop=True)
        self.classes = check_classes(classes)
        self.preprocess = preprocess
        self.encoder = encoder
        self.augment = augment
        self.lighting_degrade_p = float(lighting_degrade_p)
        self.meta_dropout = float(meta_dropout)
        self.seed = int(seed)
        self.draft_size = draft_size
        self.name = name
        self.epoch = 0

        self.targets, self.labels = target_matrix(self.frame, self.classes, where=name)
        if target_transform is not None:
            self.targets = (self.targets @ target_transform).astype(np.float32)
        self.uris = self.frame["image_uri"].astype("string").tolist()
        if encoder is not None:
            if not hasattr(encoder, "dim_"):
                raise DataError(f"{name}: the MetadataEncoder is not fitted (fit it on the "
                                f"train rows first)")
            self.meta = encoder.transform(self.frame)
        else:
            self.meta = np.zeros((len(self.frame), 0), np.float32)
        if quality_labels == "degradations":
            self.lighting = np.zeros(len(self.frame))
        elif "lighting_ok" in self.frame.columns:
            ok = self.frame["lighting_ok"].astype("boolean")
            self.lighting = np.where(ok.isna(), np.nan, 1.0 - ok.fillna(True).astype(float))
        else:
            self.lighting = np.full(len(self.frame), np.nan)
        self.lighting = self.lighting.astype(np.float32)

    def __len__(self) -> int:
        return len(self.frame)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by integer keys (``(index, epoch)`` keys carry their own)."""
        self.epoch = int(epoch)

    def load_image(self, index: int) -> np.ndarray:
        """The decoded RGB uint8 image of row ``index`` (no augmentation or preprocessing)."""
        uri = self.uris[index]
        try:
            data = read_bytes(uri)
            rgb, _ = decode_image(data, max_pixels=MAX_PIXELS, draft_size=self.draft_size)
        except (OSError, ImageRejected) as exc:
            raise DataError(f"{self.name}: cannot read image '{uri}' (row {index}): {exc}") \
                from None
        return rgb

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        if isinstance(key, tuple):
            index, epoch = (int(k) for k in key)
        else:
            index, epoch = int(key), self.epoch
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} rows")
        index %= len(self)
        rgb = self.load_image(index)
        lighting = float(self.lighting[index])
        meta = self.meta[index]
        needs_rng = (self.augment is not None or self.lighting_degrade_p > 0
                     or (self.meta_dropout > 0 and meta.size))
        rng = _item_rng(self.seed, epoch, index) if needs_rng else None

        if self.augment is not None:
            if hasattr(self.augment, "set_random_seed"):
                self.augment.set_random_seed(int(rng.integers(2**31 - 1)))
            rgb = self.augment(rgb)
        rgb = self.preprocess.resize_crop(rgb)
        degraded = 0.0
        if self.lighting_degrade_p > 0:
            rgb, kind, severity = random_degradation(rgb, rng, p=self.lighting_degrade_p)
            if kind is not None and severity >= POOR_LIGHTING_SEVERITY:
                lighting = degraded = 1.0
        if self.meta_dropout > 0 and meta.size:
            mask = self.encoder.random_drop_mask(1, self.meta_dropout, rng)[0]
            meta = self.encoder.mask_fields(meta, mask)
        return {
            "image": torch.from_numpy(self.preprocess.normalize(rgb)),
            "meta": torch.from_numpy(np.array(meta, np.float32)),
            "target": torch.from_numpy(self.targets[index].copy()),
            "label": torch.tensor(int(self.labels[index]), dtype=torch.int64),
            "lighting": torch.tensor(lighting, dtype=torch.float32),
            "degraded": torch.tensor(degraded, dtype=torch.float32),
            "index": torch.tensor(index, dtype=torch.int64),
        }


class EpochSampler(Sampler):
    """Seeded shuffle or weighted sampling that yields ``(index, epoch)`` keys.

    Each epoch's order depends only on ``(seed, epoch)``. ``weights`` given: ``num_samples``
    draws with replacement (capped oversampling); otherwise a permutation (``shuffle``) or the
    identity order. ``set_epoch`` (called by Lightning at each epoch start) also forwards the
    epoch to ``dataset`` when given.
    """

    def __init__(self, n: int, *, seed: int = 0, shuffle: bool = True,
                 weights: np.ndarray | None = None, num_samples: int | None = None,
                 dataset: ManifestDataset | None = None):
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if self.weights is not None and len(self.weights) != self.n:
            raise ValueError(f"weights has {len(self.weights)} entries for {self.n} rows")
        self.num_samples = self.n if num_samples is None else int(num_samples)
        self.dataset = dataset
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self.dataset is not None:
            self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return self.num_samples if self.weights is not None else self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        state = np.random.SeedSequence([self.seed & 0xFFFFFFFF, self.epoch, 7]).generate_state(1)
        gen = torch.Generator().manual_seed(int(state[0]))
        if self.n == 0:
            order = torch.zeros(0, dtype=torch.int64)
        elif self.weights is not None:
            order = torch.multinomial(self.weights, self.num_samples, replacement=True,
                                      generator=gen)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=gen)
        else:
            order = torch.arange(self.n)
        epoch = self.epoch
        for i in order.tolist():
            yield (i, epoch)
