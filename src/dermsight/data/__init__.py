"""The dataset stage: manifest rows → model inputs (sources → prepare → **dataset** → model).

- :mod:`~dermsight.data.preprocess`: the one image preprocessing (numpy + OpenCV, no torch),
  shared by training, evaluation, export and serving.
- :mod:`~dermsight.data.metadata`: :class:`MetadataEncoder`, tabular metadata → float vector
  (no torch; serving uses it too).
- :mod:`~dermsight.data.targets`: soft / one-hot targets, class weights, balanced sampling weights.
- :mod:`~dermsight.data.augment`: albumentations training augmentation from ``AugmentConfig``
  (:mod:`dermsight.config`).
- :mod:`~dermsight.data.dataset`: ``ManifestDataset`` (torch).
- :mod:`~dermsight.data.datamodule`: ``ManifestDataModule`` (Lightning).

This package file imports nothing, so ``import dermsight.data.preprocess`` stays torch-free.
"""
