"""The served path on Fitzpatrick17k validation photos, by skin type: routing, refusals, retakes.

    python benchmarks/served_by_type.py [--models models] [--manifest MANIFEST] [--split val]
        [--out experiments/served-fitzpatrick17k-val.json]    # --split all: every labelled photo

Runs what a user gets — :class:`dermsight.serve.served.ServedModels` on the committed models
(router, then the model for the photo's kind) — on the photos of one split of a prepared
Fitzpatrick17k manifest (default: the newest ``runs/prepared/fitzpatrick17k-*``, the split the
clinical model was validated on) and reports per Fitzpatrick type (1–6, and the groups 1–2 /
3–4 / 5–6): which model answered, how many photos were refused as not skin, how many were asked
to be retaken (the model's quality head plus the photo checks) and why, and the accuracy of the
answers, with 95 % Wilson intervals; beside them, the share ``prepare``'s own photo checks
flagged (the manifest's ``lighting_ok``).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.imaging import ImageRejected, decode_image
from dermsight.io import atomic_write_text, read_bytes
from dermsight.serve.served import ServedModels

GROUPS = {"1-2": (1, 2), "3-4": (3, 4), "5-6": (5, 6)}


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def share(mask: np.ndarray) -> dict:
    k, n = int(mask.sum()), int(mask.size)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": wilson(k, n)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--split", default="val", help="a split of the manifest, or 'all' (every "
                    "photo with a skin-type label; the models were trained on the train split)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    manifest = args.manifest or sorted(Path("runs/prepared").glob(
        "fitzpatrick17k-*/manifest.parquet"), key=lambda p: p.stat().st_mtime)[-1]
    frame = pd.read_parquet(manifest)
    if args.split != "all":
        frame = frame[frame["split"] == args.split]
    frame = frame[frame["fitzpatrick"].notna()].reset_index(drop=True)
    served = ServedModels.load(args.models)
    rows = []
    for s in range(0, len(frame), 32):
        chunk = frame.iloc[s:s + 32]
        images, keep = [], []
        for i, uri in zip(chunk.index, chunk["image_uri"]):
            try:
                images.append(decode_image(read_bytes(uri), max_pixels=10**8)[0])
                keep.append(i)
            except (OSError, ImageRejected):
                continue
        for i, pred in zip(keep, served.predict(images, top_k=1)):
            top = pred.top_k[0][0] if pred.top_k else None
            rows.append({"fitzpatrick": frame.at[i, "fitzpatrick"], "label": frame.at[i, "label"],
                         "photo_type": pred.photo_type, "model": pred.model,
                         "refused": pred.refused, "prediction": top,
                         "retake": (not pred.refused) and not (pred.lighting or {}).get("ok", True),
                         "checks": ";".join((pred.lighting or {}).get("checks") or []),
                         "prepare_flagged": not bool(frame.at[i, "lighting_ok"])})
    out = pd.DataFrame(rows)
    out["fitzpatrick"] = pd.to_numeric(out["fitzpatrick"], errors="coerce")
    report: dict = {"manifest": str(manifest), "split": args.split,
                    "models": served.describe()["models"], "by_type": {}}
    slices = {"all": out}
    slices.update({f"type {t}": out[out["fitzpatrick"] == t] for t in range(1, 7)})
    slices.update({f"types {g}": out[out["fitzpatrick"].isin(ts)] for g, ts in GROUPS.items()})
    print(f"served models on {manifest} ({args.split}, {len(out)} photos)")
    print(f"{'slice':<11} {'n':>4}  {'clinical':>8}  {'refused (95 % CI)':<22} "
          f"{'retake (95 % CI)':<22} {'prepare':>7} {'accuracy':>8}  retake reasons")
    for name, sub in slices.items():
        answered = sub[~sub["refused"]]
        entry = {
            "n": int(len(sub)),
            "routed": dict(Counter(sub["photo_type"])),
            "refused": share(sub["refused"].to_numpy(bool)),
            "retake": share(sub["retake"].to_numpy(bool)),
            "prepare_flagged": share(sub["prepare_flagged"].to_numpy(bool)),
            "accuracy_of_answers": share((answered["prediction"] == answered["label"])
                                         .to_numpy(bool)),
            "retake_reasons": dict(Counter(c for cs in sub["checks"] for c in cs.split(";")
                                           if c)),
        }
        report["by_type"][name] = entry
        r, t, a = entry["refused"], entry["retake"], entry["accuracy_of_answers"]
        clinical = entry["routed"].get("clinical", 0) / max(1, entry["n"])
        print(f"{name:<11} {entry['n']:>4}  {clinical:>8.3f}  {r['rate']:.3f} ({r['ci95'][0]:.3f}-"
              f"{r['ci95'][1]:.3f})    {t['rate']:.3f} ({t['ci95'][0]:.3f}-{t['ci95'][1]:.3f})"
              f"    {entry['prepare_flagged']['rate']:>7.3f} "
              f"{a['rate'] if a['rate'] is not None else float('nan'):>8.3f}  "
              f"{entry['retake_reasons']}")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
