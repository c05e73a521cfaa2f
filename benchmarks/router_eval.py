"""Score the exported photo-type router on its validation photos (never used to fit it).

    python benchmarks/router_eval.py [--router models/router] \
        [--out experiments/router/validation.json]

Reads the same photos and the same seeded group split as ``dermsight fit-router`` (recorded in
``router.json``), runs the served, torch-free router (:class:`dermsight.serve.router.Router`,
int8 when the folder has it) on the validation rows, and prints:
- the confusion matrix (true kind × routed kind) and the share routed correctly per kind;
- the share of not-skin pictures refused, per source of pictures;
- skin photos wrongly refused, overall and by Fitzpatrick type (clinical photos with a known
  type), with 95 % Wilson intervals;
- throughput (images per second, one thread per session as served).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.imaging import ImageRejected, decode_image
from dermsight.io import atomic_write_text, read_bytes
from dermsight.phototype import PHOTO_TYPES
from dermsight.serve.router import Router
from dermsight.train.router import MAX_PIXELS, load_router_data


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate(k: int, n: int) -> dict:
    lo, hi = wilson(k, n)
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "ci95": [lo, hi]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--router", type=Path, default=Path("models/router"))
    parser.add_argument("--out", type=Path, default=Path("experiments/router/validation.json"))
    parser.add_argument("--split", default="val")
    args = parser.parse_args()

    router = Router.load(args.router)
    spec = router.info.get("data") or {}
    data = load_router_data(spec["sources"], spec["not_skin"],
                            val_fraction=spec.get("val_fraction", 0.2), seed=spec.get("seed", 0))
    rows = data.frame[data.frame["split"] == args.split].reset_index(drop=True)
    kinds, probs = [], []
    seconds, n_images = 0.0, 0
    for s in range(0, len(rows), 64):
        images, keep = [], []
        for i in range(s, min(s + 64, len(rows))):
            try:
                images.append(decode_image(read_bytes(rows.at[i, "image_uri"]),
                                           max_pixels=MAX_PIXELS)[0])
                keep.append(i)
            except (OSError, ImageRejected):
                continue
        started = time.perf_counter()
        p, _ = router.probabilities(images)
        decided = router.decide(p)
        seconds += time.perf_counter() - started
        n_images += len(images)
        for i, row, kind in zip(keep, p, decided):
            kinds.append((i, kind))
            probs.append(row)
    index = [i for i, _ in kinds]
    rows = rows.loc[index].reset_index(drop=True)
    rows["routed"] = [k for _, k in kinds]
    rows["p_not_skin"] = [p[router.photo_types.index("not_skin")] for p in probs]

    confusion = pd.crosstab(rows["photo_type"], rows["routed"]).reindex(
        index=PHOTO_TYPES, columns=PHOTO_TYPES, fill_value=0)
    report: dict = {"router": str(args.router), "precision": router.precision,
                    "split": args.split, "refuse_threshold": router.refuse_threshold,
                    "confusion": {t: {r: int(confusion.at[t, r]) for r in PHOTO_TYPES}
                                  for t in PHOTO_TYPES},
                    "correct": {}, "refused_by_source": {}, "false_refusal": {},
                    "images_per_s": n_images / seconds if seconds else None}
    for t in PHOTO_TYPES:
        sub = rows[rows["photo_type"] == t]
        report["correct"][t] = rate(int((sub["routed"] == t).sum()), len(sub))
    not_skin = rows[rows["photo_type"] == "not_skin"]
    for source, sub in not_skin.groupby("source"):
        report["refused_by_source"][source] = rate(int((sub["routed"] == "not_skin").sum()),
                                                   len(sub))
    skin = rows[rows["photo_type"] != "not_skin"]
    report["false_refusal"]["all skin"] = rate(int((skin["routed"] == "not_skin").sum()),
                                               len(skin))
    for t in ("dermoscopy", "clinical"):
        sub = skin[skin["photo_type"] == t]
        report["false_refusal"][t] = rate(int((sub["routed"] == "not_skin").sum()), len(sub))
    clinical = skin[(skin["photo_type"] == "clinical") & skin["fitzpatrick"].between(1, 6)]
    for label, types in (("I-II", (1, 2)), ("III-IV", (3, 4)), ("V-VI", (5, 6))):
        sub = clinical[clinical["fitzpatrick"].isin(types)]
        report["false_refusal"][f"Fitzpatrick {label}"] = rate(
            int((sub["routed"] == "not_skin").sum()), len(sub))
    for f in range(1, 7):
        sub = clinical[clinical["fitzpatrick"] == f]
        report["false_refusal"][f"Fitzpatrick {f}"] = rate(
            int((sub["routed"] == "not_skin").sum()), len(sub))

    print(f"router {args.router} ({router.precision}), {args.split} split, refuse at "
          f"p(not skin) >= {router.refuse_threshold:.3f}")
    print("confusion (rows: true kind, columns: routed kind)")
    print(confusion.to_string())
    for t, r in report["correct"].items():
        print(f"  {t:<10} routed correctly {r['rate']:.4f} ({r['k']}/{r['n']}, 95 % CI "
              f"{r['ci95'][0]:.4f}-{r['ci95'][1]:.4f})")
    print("not-skin pictures refused, by source:")
    for s, r in report["refused_by_source"].items():
        print(f"  {s:<32} {r['rate']:.3f} ({r['k']}/{r['n']})")
    print("skin photos wrongly refused:")
    for s, r in report["false_refusal"].items():
        if r["n"]:
            print(f"  {s:<16} {r['rate']:.4f} ({r['k']}/{r['n']}, 95 % CI {r['ci95'][0]:.4f}-"
                  f"{r['ci95'][1]:.4f})")
    print(f"throughput: {report['images_per_s']:.1f} images/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
