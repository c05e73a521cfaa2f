"""ITA from the image against dermatologists' Fitzpatrick labels (BENCHMARKS.md section 3).

Runs on every Fitzpatrick17k image with a known type (``fitzpatrick_scale`` 1–6) and compares
``dermsight.features.skintone.compute_skin_tone`` (``ours``: the default, calibrated ITA;
``ours_raw``: the physical ITA as photographed, ``calibrate=False, normalise=False``;
``ours_exposure``: the physical ITA after the full exposure gain, ``calibrate=False``) with the
naive baseline (median ITA over a
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
    .venv/bin/python benchmarks/ita_agreement.py --fit   # also refit the calibration constants

``--fit`` refits ``_CAL_EXPOSURE_WEIGHT`` / ``_CAL_KNOTS`` of skintone.py on the fit half only
(from the ``ours_raw`` / ``ours_exposure`` columns), prints them and the metrics they give on both
halves; paste them into the module by hand.
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
    _CAL_KNOTS,
    calibrate_ita,
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


METHODS = ("ours", "ours_raw", "ours_exposure", "baseline")
HALVES = ("all", "fit_0-7", "heldout_8-f")


def _measure(path: Path) -> tuple[float, float, float, float, float] | None:
    rgb = _load_rgb(path)
    if rgb is None:
        return None
    t0 = time.perf_counter()
    ours = compute_skin_tone(rgb)["ita"]
    dt = time.perf_counter() - t0
    return (ours, compute_skin_tone(rgb, normalise=False, calibrate=False)["ita"],
            compute_skin_tone(rgb, calibrate=False)["ita"], baseline_ita(rgb), dt)


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
        for hname, sel in halves.items():
            per = {int(t): metrics(g[method].to_numpy(), g["type"].to_numpy())
                   for t, g in df[sel].groupby("type")}
            res[hname]["per_type"] = per
            res[hname]["type_balanced"] = {k: float(np.mean([m[k] for m in per.values()]))
                                           for k in ("exact", "within_1")}
        out[method] = res
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def markdown(res: dict) -> str:
    """Markdown tables: overall per half (with the type-balanced shares), then per type per half."""
    lines = ["| method | subset | n | Spearman ρ | exact | within ±1 | balanced exact | "
             "balanced ±1 |", "|---|---|---|---|---|---|---|---|"]
    for subset in HALVES:
        for method in METHODS:
            m = res[method][subset]
            tb = m["type_balanced"]
            lines.append(f"| {method} | {subset} | {m['n']} | {m['spearman_rho']:.3f} | "
                         f"{_pct(m['exact'])} | {_pct(m['within_1'])} | {_pct(tb['exact'])} | "
                         f"{_pct(tb['within_1'])} |")
    for subset in HALVES:
        lines += ["", f"Per Fitzpatrick type, {subset} (method order: " + " / ".join(METHODS)
                  + ")", "", "| type | n | median ITA | exact | within ±1 |",
                  "|---|---|---|---|---|"]
        for t, m in res["ours"][subset]["per_type"].items():
            per = [res[k][subset]["per_type"][t] for k in METHODS]
            lines.append(f"| {t} | {m['n']} | "
                         + " / ".join(f"{p['median_ita']:.1f}" for p in per) + " | "
                         + " / ".join(_pct(p["exact"]) for p in per) + " | "
                         + " / ".join(_pct(p["within_1"]) for p in per) + " |")
    return "\n".join(lines)


_BOUNDS = np.array([55.0, 41.0, 28.0, 10.0, -30.0])


def _shares(score: np.ndarray, knots: np.ndarray, types: np.ndarray):
    """Pooled / per-type within-±1 and exact shares of the categories cut at ``knots``."""
    idx = 1 + np.sum(score[:, None] <= knots[None, :], axis=1)
    w, e = np.abs(idx - types) <= 1, idx == types
    pw = np.array([w[types == k].mean() for k in range(1, 7)])
    pe = np.array([e[types == k].mean() for k in range(1, 7)])
    return w.mean(), pw, e.mean(), pe


def fit_calibration(df: pd.DataFrame, fit: np.ndarray,
                    weights=(0.0, 0.25, 0.5, 0.6, 0.75, 1.0)) -> tuple[float, np.ndarray, float]:
    """Refit (exposure weight, knots) on the rows ``fit`` only; see skintone's module docstring.

    Objective: type-balanced within ±1 + ½ pooled within ±1 + ½ type-balanced exact, minus a
    penalty when types IV–VI fall more than 3 points below the baseline's per-type within ±1
    (same rows). Knots: coordinate search (4 sweeps) over 200 quantiles of the score, starting
    at the Chardon boundaries.
    """
    t = df["type"].to_numpy()[fit]
    base = _shares(df["baseline"].to_numpy()[fit], _BOUNDS, t)[1]

    def obj(s, knots):
        w, pw, _, pe = _shares(s, knots, t)
        pen = 20 * sum(max(0.0, base[k] - 0.03 - pw[k]) for k in (3, 4, 5))
        return pw.mean() + 0.5 * w + 0.5 * pe.mean() - pen

    best = (-np.inf, 0.0, _BOUNDS.copy())
    for wexp in weights:
        raw = df["ours_raw"].to_numpy()[fit]
        s = raw + wexp * (df["ours_exposure"].to_numpy()[fit] - raw)
        knots = _BOUNDS.copy()
        cur = obj(s, knots)
        qs = np.unique(np.percentile(s, np.linspace(0.5, 99.5, 200)))
        for _ in range(4):
            for j in range(5):
                lo = knots[j + 1] if j < 4 else -np.inf
                hi = knots[j - 1] if j > 0 else np.inf
                for q in qs:
                    if lo < q < hi:
                        k2 = knots.copy()
                        k2[j] = q
                        v = obj(s, k2)
                        if v > cur:
                            cur, knots = v, k2
        if cur > best[0]:
            best = (cur, wexp, knots)
    return best[1], best[2], best[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data",
                    help="folder holding fitzpatrick17k/ (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--fit", action="store_true",
                    help="refit the calibration constants on the fit half and report them")
    ap.add_argument("--exposure-weights", type=float, nargs="+",
                    default=[0.0, 0.25, 0.5, 0.6, 0.75, 1.0],
                    help="exposure weights --fit chooses from")
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
        "ours_raw": [rows[i][1] for i in keep],
        "ours_exposure": [rows[i][2] for i in keep],
        "baseline": [rows[i][3] for i in keep],
    })
    if args.fit:
        fit = df["md5hash"].str[0].isin(list("01234567")).to_numpy()
        wexp, knots, score = fit_calibration(df, fit, weights=tuple(args.exposure_weights))
        print(f"refit on the fit half (n={fit.sum()}): _CAL_EXPOSURE_WEIGHT = {wexp}, "
              f"_CAL_KNOTS = ({', '.join(f'{k:.2f}' for k in knots)}) (objective {score:.3f}; "
              f"in the module: {_CAL_KNOTS})")
        df["ours"] = calibrate_ita(df["ours_raw"].to_numpy(), df["ours_exposure"].to_numpy(),
                                   knots=tuple(np.round(knots, 2)), exposure_weight=wexp)
        print("(the 'ours' rows below use the refitted constants)\n")
    res = evaluate(df)
    times = np.array([rows[i][4] for i in keep]) * 1000
    res["timing_ms_per_image_threaded"] = {"median": float(np.median(times)),
                                           "p95": float(np.percentile(times, 95))}
    res["missing_images"] = len(rows) - len(keep)
    print(markdown(res))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
