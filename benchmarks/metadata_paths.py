"""Exported models with and without the patient's metadata, side by side on one split.

    python benchmarks/metadata_paths.py models/ham10000 [OTHER_MODEL ...]
        [--config configs/ham10000.yaml] [--split val] [--resamples 1000] [--out FILE.json]

Scores what is served (each folder's ONNX model through :class:`dermsight.serve.engine.Engine`,
its own temperature and conformal thresholds, no test-time augmentation) on the prepared
manifest of ``--config``'s data: every image once with the manifest's metadata fields (age, sex,
body site: whatever the model accepts; values it does not know are dropped, as the API does with
``strict=False``) and once from the photo alone. Reports accuracy, balanced accuracy (95 %
bootstrap CI), macro-F1, macro AUROC, expected calibration error and the coverage of the
prediction sets, overall and by skin-tone group (light / medium / dark from the measured ITA:
coverage, and accuracy with a 95 % bootstrap CI).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import metrics
from dermsight.config import load_config
from dermsight.evaluate.calibration import expected_calibration_error
from dermsight.evaluate.fairness import bootstrap_ci, ita_groups
from dermsight.imaging import decode_image
from dermsight.io import atomic_write_text, read_bytes
from dermsight.serve.engine import Engine

MIN_GROUP = 50


def _metadata(row: pd.Series, fields: tuple[str, ...]) -> dict:
    return {f: row[f] for f in fields if f in row.index and not pd.isna(row[f])}


def score(y: np.ndarray, probs: np.ndarray, covered: np.ndarray, sizes: np.ndarray,
          groups: np.ndarray, resamples: int) -> dict:
    lo, hi = bootstrap_ci(metrics.balanced_accuracy, y, probs, n_resamples=resamples)
    out = {"n": int(len(y)), "accuracy": metrics.accuracy(y, probs),
           "balanced_accuracy": metrics.balanced_accuracy(y, probs),
           "balanced_accuracy_ci95": [lo, hi], "f1_macro": metrics.f1_macro(y, probs),
           "auroc_macro": metrics.auroc_macro(y, probs),
           "ece": expected_calibration_error(y, probs), "coverage": float(covered.mean()),
           "set_size": float(sizes.mean()), "by_tone": {}}
    for g in ("light", "medium", "dark"):
        m = groups == g
        if m.sum():
            out["by_tone"][g] = {"n": int(m.sum()), "coverage": float(covered[m].mean()),
                                 "accuracy": metrics.accuracy(y[m], probs[m]),
                                 "accuracy_ci95": list(bootstrap_ci(
                                     metrics.accuracy, y[m], probs[m], n_resamples=resamples)),
                                 "scored": bool(m.sum() >= MIN_GROUP)}
    return out


def run_model(folder: Path, frame: pd.DataFrame, images: list[np.ndarray], resamples: int) -> dict:
    engine = Engine.load(folder)
    classes = list(engine.classes)
    y = np.array([classes.index(c) for c in frame["label"]])
    groups = ita_groups(frame["ita"].to_numpy(float), kind="bucket")
    fields = engine.metadata_fields
    paths = {"without_metadata": [None] * len(frame)}
    if fields:
        paths = {"with_metadata": [_metadata(r, fields) for _, r in frame.iterrows()], **paths}
    result = {"model": str(folder), "model_id": engine.model_id, "metadata_fields": list(fields)}
    for name, meta in paths.items():
        start = time.perf_counter()
        preds = engine.predict(images, meta, top_k=1, strict=False)
        probs = np.array([[p.probabilities[c] for c in classes] for p in preds])
        covered = np.array([classes[t] in p.conformal_set for t, p in zip(y, preds)])
        sizes = np.array([len(p.conformal_set) for p in preds])
        result[name] = score(y, probs, covered, sizes, groups, resamples)
        result[name]["seconds"] = round(time.perf_counter() - start, 1)
        result[name]["target_coverage"] = preds[0].conformal_coverage if preds else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", type=Path, nargs="+", help="exported model folders")
    ap.add_argument("--config", type=Path, default=Path("configs/ham10000.yaml"),
                    help="training config whose prepared data is scored")
    ap.add_argument("--split", default="val")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    manifest = load_config(args.config).prepared_dir() / "manifest.parquet"
    if not manifest.is_file():
        raise SystemExit(f"{manifest} does not exist: run dermsight prepare --config {args.config}")
    frame = pd.read_parquet(manifest)
    frame = frame[frame["split"] == args.split].reset_index(drop=True)
    images = [decode_image(read_bytes(u), max_pixels=10**8)[0] for u in frame["image_uri"]]
    report = {"manifest": str(manifest), "split": args.split, "n": len(frame),
              "models": [run_model(m, frame, images, args.resamples) for m in args.models]}
    for r in report["models"]:
        print(f"\n{r['model']} ({r['model_id']})")
        for name in ("with_metadata", "without_metadata"):
            if name not in r:
                continue
            s = r[name]
            tones = "  ".join(f"{g} {t['coverage']:.3f} (n={t['n']})"
                              for g, t in s["by_tone"].items())
            accs = "  ".join(f"{g} {t['accuracy']:.3f} ({t['accuracy_ci95'][0]:.3f}-"
                             f"{t['accuracy_ci95'][1]:.3f})" for g, t in s["by_tone"].items())
            print(f"  {name:17s} acc {s['accuracy']:.3f}  bal acc {s['balanced_accuracy']:.3f} "
                  f"({s['balanced_accuracy_ci95'][0]:.3f}-{s['balanced_accuracy_ci95'][1]:.3f})  "
                  f"F1 {s['f1_macro']:.3f}  AUROC {s['auroc_macro']:.3f}  ECE {s['ece']:.3f}  "
                  f"coverage {s['coverage']:.3f} (target {s['target_coverage']}; {tones})\n"
                  f"  {'':17s} accuracy by tone (95 % CI): {accs}")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
