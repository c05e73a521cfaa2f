"""Grad-CAM localisation of one trained run scored at several input sizes, side by side.

    python benchmarks/cam_resolution.py experiments/ham10000-160 160x208 160x224 192x256

For each size (height x width) the run's own preprocessing is kept except its input size: the
validation split is predicted once (fp32, no TTA), then `dermsight evaluate`'s Grad-CAM section
(:func:`dermsight.evaluate.cam_sample.explain_sample`: the same 200 seeded photos, the
predicted class, the last backbone block) is computed against the lesion masks. Printed per
size: accuracy, the pointing game, the share of CAM energy inside the lesion and the mean
offset of the CAM's centre of mass from the lesion's (rows down, columns right, in input
pixels).

The question it answers: is a run's weaker localisation a property of the weights, or of the
size the maps are computed at (a coarser last feature map, or a width that is not a multiple of
the backbone's stride of 32)?
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from scipy.special import softmax

from dermsight.evaluate.cam_sample import explain_sample
from dermsight.evaluate.predict import load_run_manifest, predict_logits


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected HxW, e.g. 192x256") from None
    if h < 32 or w < 32:
        raise argparse.ArgumentTypeError(f"size {text!r}: both sides must be at least 32")
    return h, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("sizes", nargs="+", type=parse_size, help="HxW, e.g. 160x208 192x256")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()

    run, manifest = load_run_manifest(args.run)
    if "mask_uri" not in manifest.columns or manifest["mask_uri"].isna().all():
        raise SystemExit(f"{args.run}: its manifest has no lesion masks (mask_uri)")
    val = manifest[manifest["split"] == "val"].reset_index(drop=True)
    trained = run.preprocess
    rows = []
    for size in args.sizes:
        run.preprocess = dataclasses.replace(trained, input_size=size)
        pred = predict_logits(run, val, tta="none", workers=args.workers)
        y, probs = pred["label"], softmax(pred["logits"], axis=1)
        section, _ = explain_sample(run, val, y, probs, samples=args.samples, seed=args.seed)
        rows.append({"input_size": list(size), "trained_at": list(trained.input_size),
                     "accuracy": float(np.mean(probs.argmax(1) == y)),
                     **{k: section.get(k) for k in ("n_with_mask", "pointing_game",
                                                    "energy_in_mask",
                                                    "cam_centroid_offset_px")}})
    print(f"{args.run} (trained at {trained.input_size[0]}x{trained.input_size[1]}), validation, "
          f"Grad-CAM on {args.samples} seeded photos")
    print("| input | accuracy | pointing game | CAM energy in lesion "
          "| CAM offset (down, right) px |")
    print("|---|---|---|---|---|")
    for r in rows:
        dy, dx = r["cam_centroid_offset_px"]
        print(f"| {r['input_size'][0]}x{r['input_size'][1]} | {r['accuracy']:.3f} | "
              f"{r['pointing_game']:.3f} | {r['energy_in_mask']:.3f} | {dy:+.1f}, {dx:+.1f} |")
    if args.out:
        from dermsight.io import atomic_write_text

        atomic_write_text(args.out, json.dumps({"run": str(args.run), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
