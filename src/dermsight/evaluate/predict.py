"""Predictions of a trained run on manifest rows (torch): logits with optional test-time
augmentation, with or without the patient's details, in row order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from dermsight.errors import ConfigError


def run_dataset(run, frame: pd.DataFrame, name: str):
    """``frame``'s rows as the run's own evaluation dataset (no augmentation)."""
    from dermsight.data.dataset import ManifestDataset

    return ManifestDataset(frame, run.classes, run.preprocess, encoder=run.encoder, name=name)


def load_run_manifest(run_dir: str | Path):
    """A trained run folder and the prepared manifest (every split) it trained on."""
    from dermsight.train.checkpoint import load_run
    from dermsight.train.run import load_manifest

    run = load_run(run_dir)
    if run.config is None:
        raise ConfigError(f"{Path(run_dir) / 'config.yaml'} is missing: without it the run's "
                          "prepared manifest cannot be found")
    return run, load_manifest(run.config, progress=False)


@torch.no_grad()
def predict_logits(run, frame: pd.DataFrame, *, tta: str | bool, batch_size: int = 32,
                   workers: int = 0, name: str = "dataset", progress: bool = False,
                   without_metadata: bool = False) -> dict:
    """Diagnosis logits (n, C) float64, lighting scores (n,) or None, labels (n,) and lighting
    targets (n,, NaN = unknown) of ``frame``'s rows, in order. ``without_metadata``: from the
    photo alone (the model's "no metadata" path), whatever the rows hold."""
    from tqdm.auto import tqdm

    from dermsight.train.module import forward_tta

    ds = run_dataset(run, frame, name)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    model = run.model.eval()
    logits, light = [], []
    for batch in tqdm(loader, desc=f"predicting {name}", disable=not progress, unit="batch"):
        meta = batch["meta"] if batch["meta"].shape[-1] and not without_metadata else None
        out = forward_tta(model, batch["image"], meta, tta)
        logits.append(out["diagnosis"].double().numpy())
        if "lighting" in out:
            light.append(torch.sigmoid(out["lighting"]).double().numpy())
    return {"logits": np.concatenate(logits), "label": ds.labels.astype(np.int64),
            "lighting_score": np.concatenate(light) if light else None,
            "lighting": ds.lighting.astype(np.float64)}


def gallery_images(run, frame: pd.DataFrame, galleries: dict) -> dict:
    """The model-input crops of the rows each gallery lists (``{name: [rgb, ...]}``)."""
    ds = run_dataset(run, frame, "gallery")
    return {name: [run.preprocess.resize_crop(ds.load_image(r["index"])) for r in rows]
            for name, rows in galleries.items()}
