"""ITA from the image against dermatologists' Fitzpatrick labels (BENCHMARKS.md section 3).

Runs on every Fitzpatrick17k image with a known type (``fitzpatrick_scale`` 1–6) and compares
``dermsight.features.skintone.compute_skin_tone`` (also without its exposure normalisation,
``ours_no_exposure``) with the naive baseline (median ITA over a
YCrCb skin mask of the whole image, implemented here). Metrics, overall and per type, and on the
two fixed halves by md5hash (first hex digit 0–7 = "fit" half, the only one any hand-set
parameter was checked on; 8–f = "held-out" half):

- Spearman ρ(ITA, type) (negative when ITA falls as type rises)
- exact: Chardon category index (1…6) equals the type
- within ±1: |category index − type| ≤ 1
- type-balanced: the unweighted mean of the per-type shares (types 4–6 are only 25 % of the
  images, so the pooled shares mostly describe light skin)

Usage (from the project root)::

    .venv/bin/python benchmarks/ita_agreement.py [--data ../shared/data] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from dermsight.features.skintone import (
    compute_skin_tone,
    ita_category_index,
    ita_from_lab,
    rgb_to_lab,
)

ROOT = Path(__file__).resolve().parents[1]


def baseline_ita(rgb: np.ndarray) -> float:
    """Naive baseline: median per-pixel ITA over a YCrCb skin mask of the whole image.

    Mask: Cr in [133, 173] and Cb in [77, 127] (the classic Chai & Ngan box). Falls back to the
    whole image when the mask is empty.
    """
    ycc = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    cr, cb = ycc[..., 1], ycc[..., 2]
    mask = (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)
    if not mask.any():
        mask = np.ones(mask.shape, dtype=bool)
    lab = rgb_to_lab(rgb[mask])
    return float(np.median(ita_from_lab(lab[:, 0], lab[:, 2])))


def _load_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


METHODS = ("ours", "ours_no_exposure", "baseline")


def _measure(path: Path) -> tuple[float, float, float, float] | None:
    rgb = _load_rgb(path)
    if rgb is None:
        return None
    t0 = time.perf_counter()
    ours = compute_skin_tone(rgb)["ita"]
    dt = time.perf_counter() - t0
    return ours, compute_skin_tone(rgb, normalise=False)["ita"], baseline_ita(rgb), dt


def metrics(ita: np.ndarray, types: np.ndarray) -> dict:
    """Spearman ρ, exact and within-±1 agreement of the Chardon index with the types."""
    idx = np.array([ita_category_index(v) for v in ita])
    rho = float(spearmanr(ita, types).statistic) if len(set(types)) > 1 else float("nan")
    return {
        "n": int(len(ita)),
        "spearman_rho": rho,
        "exact": float(np.mean(idx == types)),
        "within_1": float(np.mean(np.abs(idx - types) <= 1)),
        "median_ita": float(np.median(ita)),
    }


def evaluate(df: pd.DataFrame) -> dict:
    """All metrics for both methods: overall, per half and per Fitzpatrick type."""
    halves = {"all": np.ones(len(df), dtype=bool),
              "fit_0-7": df["md5hash"].str[0].isin(list("01234567")).to_numpy()}
    halves["heldout_8-f"] = ~halves["fit_0-7"]
    out: dict = {}
    for method in METHODS:
        res: dict = {}
        for hname, sel in halves.items():
            sub = df[sel]
            res[hname] = metrics(sub[method].to_numpy(), sub["type"].to_numpy())
        res["per_type"] = {
            int(t): metrics(g[method].to_numpy(), g["type"].to_numpy())
            for t, g in df.groupby("type")}
        per = res["per_type"].values()
        res["type_balanced"] = {k: float(np.mean([m[k] for m in per]))
                                for k in ("exact", "within_1")}
        out[method] = res
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(res: dict) -> str:
    """Markdown tables: overall / halves, then per type."""
    lines = ["| method | subset | n | Spearman ρ | exact | within ±1 |",
             "|---|---|---|---|---|---|"]
    for method in METHODS:
        for subset in ("all", "fit_0-7", "heldout_8-f"):
            m = res[method][subset]
            lines.append(f"| {method} | {subset} | {m['n']} | {m['spearman_rho']:.3f} | "
                         f"{_pct(m['exact'])} | {_pct(m['within_1'])} |")
    for method in METHODS:
        m = res[method]["type_balanced"]
        lines.append(f"| {method} | type-balanced (mean of the 6 types) | | | "
                     f"{_pct(m['exact'])} | {_pct(m['within_1'])} |")
    lines += ["", "| type | n | median ITA " + " / ".join(METHODS) + " | exact "
              + " / ".join(METHODS) + " | ±1 " + " / ".join(METHODS) + " |",
              "|---|---|---|---|---|"]
    for t, m in res["ours"]["per_type"].items():
        per = [res[k]["per_type"][t] for k in METHODS]
        lines.append(f"| {t} | {m['n']} | "
                     + " / ".join(f"{p['median_ita']:.1f}" for p in per) + " | "
                     + " / ".join(_pct(p["exact"]) for p in per) + " | "
                     + " / ".join(_pct(p["within_1"]) for p in per) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding fitzpatrick17k/ (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--workers", type=int, default=4)
    args = ap.parse_args(argv)

    root = args.data / "fitzpatrick17k"
    meta = pd.read_csv(root / "metadata.csv", dtype={"md5hash": str})
    meta = meta[meta["fitzpatrick_scale"].between(1, 6)].reset_index(drop=True)
    paths = [root / "images" / f"{h}.jpg" for h in meta["md5hash"]]
    with ThreadPoolExecutor(args.workers) as ex:
        rows = list(ex.map(_measure, paths))
    keep = [i for i, r in enumerate(rows) if r is not None]
    df = pd.DataFrame({
        "md5hash": meta["md5hash"].iloc[keep].to_numpy(),
        "type": meta["fitzpatrick_scale"].iloc[keep].to_numpy().astype(int),
        "ours": [rows[i][0] for i in keep],
        "ours_no_exposure": [rows[i][1] for i in keep],
        "baseline": [rows[i][2] for i in keep],
    })
    res = evaluate(df)
    times = np.array([rows[i][3] for i in keep]) * 1000
    res["timing_ms_per_image_threaded"] = {"median": float(np.median(times)),
                                           "p95": float(np.percentile(times, 95))}
    res["missing_images"] = len(rows) - len(keep)
    print(markdown(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
