"""Validation accuracy and macro-F1 of a trained run per Fitzpatrick group (1–2, 3–4, 5–6), with
95 % bootstrap confidence intervals and the light–dark gap (a preview of `dermsight evaluate`).

    python benchmarks/fitzpatrick_groups.py experiments/fitzpatrick17k [--resamples 1000]
        [--tta none|hflip|flips|d4]

Reads the run's ``checkpoints/best.pt`` and ``config.yaml`` and the prepared manifest the run
trained on; scores the ``val`` split with the run's preprocessing and test-time augmentation
(``train.tta``, or ``--tta``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from dermsight import metrics
from dermsight.config import load_config, tta_mode
from dermsight.data.datamodule import ManifestDataModule
from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.evaluate.fairness import group_metrics
from dermsight.features.skintone import FITZPATRICK_GROUPS as GROUPS
from dermsight.models import create_model
from dermsight.train.run import load_manifest, predict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--tta", help="test-time augmentation (default: the run's train.tta)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    cfg = load_config(args.run / "config.yaml")
    ckpt = torch.load(args.run / "checkpoints" / "best.pt", map_location="cpu",
                      weights_only=False)
    spec = dict(ckpt["model"])
    name = spec.pop("name")
    spec["input_size"] = tuple(spec["input_size"])
    model = create_model(name, pretrained=False, **spec)
    model.load_state_dict(ckpt["state_dict"])
    manifest = load_manifest(cfg, progress=False)
    encoder = MetadataEncoder.from_dict(ckpt["encoder"]) if ckpt["encoder"] else None
    dm = ManifestDataModule(manifest, Preprocess.from_dict(ckpt["preprocess"]),
                            classes=ckpt["classes"], metadata=encoder,
                            eval_batch_size=64, num_workers=cfg.data.num_workers)
    tta = tta_mode(args.tta or cfg.train.tta)
    out = predict(model, dm.val_dataloader(), tta=tta)
    fitz = dm.val_set.frame["fitzpatrick"].to_numpy(dtype=float, na_value=np.nan)
    groups = np.array([GROUPS.get(int(f)) if np.isfinite(f) else None for f in fitz],
                      dtype=object)
    result = group_metrics(out["label"], out["probs"], groups,
                           metrics={"accuracy": metrics.accuracy, "f1_macro": metrics.f1_macro},
                           n_resamples=args.resamples, seed=0)
    result["overall"] = metrics.classification_summary(out["label"], out["probs"])
    result["tta"] = tta
    text = json.dumps(result, indent=2, default=lambda o: list(o) if isinstance(o, tuple)
                      else str(o))
    print(text)
    if args.out:
        from dermsight.io import atomic_write_text

        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
