"""The Grad-CAM sample of ``dermsight evaluate``: Grad-CAM on a seeded sample of the scored
rows, localisation against the lesion masks where the data has them, and the overlays the
report's figure shows (one correct and one wrong example per class)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from dermsight.evaluate.predict import run_dataset
from dermsight.imaging import read_mask


def _load_mask(uri, image_shape: tuple[int, int], preprocess) -> np.ndarray | None:
    """The lesion mask aligned with the model input (same resize + crop), bool (H, W)."""
    if uri is None or pd.isna(uri):
        return None
    mask = read_mask(str(uri), image_shape)  # grey, at the image's size
    if mask is None:
        return None
    aligned = preprocess.resize_crop(np.repeat(mask[:, :, None], 3, axis=2))[:, :, 0]
    out = aligned >= 128
    return out if out.any() else None


def _centroid_offset(cams, masks) -> list[float]:
    """Mean (rows, cols) offset of the CAM's centre of mass from the mask's centroid."""
    offsets = []
    for cam, mask in zip(cams, masks):
        total = float(cam.sum())
        if total <= 0:
            continue
        rows, cols = np.mgrid[:cam.shape[0], :cam.shape[1]]
        offsets.append(((cam * rows).sum() / total - rows[mask].mean(),
                        (cam * cols).sum() / total - cols[mask].mean()))
    return [float(v) for v in np.mean(offsets, axis=0)] if offsets else [None, None]


def explain_sample(run, frame, y, probs, *, samples: int, seed: int) -> tuple[dict, dict]:
    """Grad-CAM on a seeded sample: localisation scores and what the overlay figure needs."""
    from dermsight.evaluate.explain import (
        cam_target_layer,
        energy_in_mask,
        grad_cam,
        pointing_game,
    )

    n = len(y)
    k = min(samples, n)
    idx = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
    ds = run_dataset(run, frame, "Grad-CAM sample")
    items = [ds[int(i)] for i in idx]
    images = torch.stack([it["image"] for it in items])
    meta = torch.stack([it["meta"] for it in items]) if run.encoder is not None else None
    pred = probs.argmax(1)
    layer = cam_target_layer(run.model)
    layer_name = next((n_ for n_, m in run.model.named_modules() if m is layer), "?")
    t0 = time.perf_counter()
    cams = grad_cam(run.model, images, meta, pred[idx], target_layer=layer)
    seconds = time.perf_counter() - t0
    section = {"n": int(k), "of": int(n), "seed": seed, "target": "predicted class",
               "target_layer": layer_name, "seconds": round(seconds, 1),
               "note": f"Grad-CAM on a seeded random sample of {k} of {n} images "
                       f"(--cam-samples {samples})"}
    masks, with_mask = [], []
    if "mask_uri" in frame.columns:
        for j, i in enumerate(idx):
            rgb = ds.load_image(int(i))
            m = _load_mask(frame["mask_uri"].iloc[i], rgb.shape[:2], run.preprocess)
            if m is not None:
                masks.append(m)
                with_mask.append(j)
    if with_mask:
        sel = np.asarray(with_mask)
        section.update({
            "n_with_mask": len(with_mask),
            "pointing_game": pointing_game(cams[sel], masks),
            "energy_in_mask": energy_in_mask(cams[sel], masks),
            "mask_area": float(np.mean([m.mean() for m in masks])),
            # what a fixed guess at the image centre would score, and where the CAM mass sits
            # relative to the lesion (rows down, columns right, in input pixels)
            "centre_baseline": float(np.mean([m[m.shape[0] // 2, m.shape[1] // 2]
                                              for m in masks])),
            "cam_centroid_offset_px": _centroid_offset(cams[sel], masks),
            "mask_threshold": 128,
            "hit_rule": "CAM maximum inside the lesion mask (no tolerance margin)"})
        section["by_correct"] = {}
        correct = pred[idx][sel] == y[idx][sel]
        for name, keep in (("correct", correct), ("wrong", ~correct)):
            if keep.any():
                chosen = [masks[j] for j in np.flatnonzero(keep)]
                section["by_correct"][name] = {
                    "n": int(keep.sum()),
                    "pointing_game": pointing_game(cams[sel][keep], chosen),
                    "energy_in_mask": energy_in_mask(cams[sel][keep], chosen)}
    # overlays: per class, one correct and one wrong example of the sample
    chosen = {}
    for c in range(probs.shape[1]):
        for kind, ok in (("correct", True), ("wrong", False)):
            hits = [j for j, i in enumerate(idx) if y[i] == c and (pred[i] == y[i]) == ok]
            if hits:
                chosen[(c, kind)] = hits[0]
    panels = {key: {"rgb": run.preprocess.resize_crop(ds.load_image(int(idx[j]))),
                    "cam": cams[j], "image_id": str(frame["image_id"].iloc[idx[j]]),
                    "label": run.classes[y[idx[j]]], "prediction": run.classes[pred[idx[j]]],
                    "confidence": float(probs[idx[j]].max())}
              for key, j in chosen.items()}
    return section, panels
