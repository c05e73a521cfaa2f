"""Fitzpatrick17k predictions scored at every level of the diagnosis, per Fitzpatrick group.

    python benchmarks/label_levels.py EVAL [EVAL ...] [--root ../shared/data/fitzpatrick17k]
        [--groups configs/fitzpatrick17k.yaml] [--out levels.json]

EVAL is a folder ``dermsight evaluate`` wrote (``predictions.csv``: one probability column per
class, ``image_id``, ``label``). The probabilities are summed over the coarser levels the dataset
defines (``three_partition_label``: malignant / benign / non-neoplastic; ``nine_partition_label``)
and over the near-synonym groups of the config's ``data.label_groups`` (acne / acne-vulgaris,
the melanomas, the eczemas, the basal-cell carcinomas), and each level is scored as a classifier
of its own: accuracy and macro-F1, overall and for Fitzpatrick 1–2, 3–4 and 5–6, with 95 %
bootstrap intervals, and the accuracy gap 5–6 minus 1–2. Several EVAL folders are compared side
by side on the photos they share.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import metrics
from dermsight.config import load_config
from dermsight.evaluate.fairness import bootstrap_ci
from dermsight.features.skintone import FITZPATRICK_GROUPS as GROUPS
from dermsight.io import atomic_write_text, read_csv
from dermsight.sources import get_source


def level_maps(rows: pd.DataFrame, classes: list[str], synonyms: list[list[str]]) -> dict:
    """class → group at each level (``21``: itself; ``synonyms``; ``nine``; ``three``)."""
    extra = rows["extra"].map(lambda e: json.loads(e) if isinstance(e, str) else (e or {}))
    by_label = {}
    for label, e in zip(rows["label"], extra):
        by_label.setdefault(label, e)
    out = {"21 conditions": {c: c for c in classes}}
    head = {c: g[0] for g in synonyms for c in g}
    out["near-synonyms merged"] = {c: head.get(c, c) for c in classes}
    out["nine partitions"] = {c: by_label[c]["nine_partition_label"] for c in classes}
    out["three partitions"] = {c: by_label[c]["three_partition_label"] for c in classes}
    return out


def collapse(probs: np.ndarray, classes: list[str], mapping: dict[str, str]
             ) -> tuple[np.ndarray, list[str]]:
    groups = sorted(set(mapping.values()))
    index = {g: i for i, g in enumerate(groups)}
    out = np.zeros((len(probs), len(groups)))
    for j, c in enumerate(classes):
        out[:, index[mapping[c]]] += probs[:, j]
    return out, groups


def score(y: np.ndarray, p: np.ndarray, resamples: int) -> dict:
    acc = bootstrap_ci(metrics.accuracy, y, p, n_resamples=resamples)
    f1 = bootstrap_ci(metrics.f1_macro, y, p, n_resamples=resamples)
    return {"n": int(len(y)), "accuracy": metrics.accuracy(y, p),
            "accuracy_ci": [acc.low, acc.high], "f1_macro": metrics.f1_macro(y, p),
            "f1_macro_ci": [f1.low, f1.high]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evals", type=Path, nargs="+")
    ap.add_argument("--root", default="../shared/data/fitzpatrick17k")
    ap.add_argument("--groups", type=Path, default=Path("configs/fitzpatrick17k.yaml"),
                    help="config whose data.label_groups are the near-synonym groups")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    synonyms = load_config(args.groups).data.label_groups
    source = get_source("fitzpatrick17k")(args.root).read()
    source = source.assign(image_id=source["image_id"].astype(str))
    fitz = dict(zip(source["image_id"], pd.to_numeric(source["fitzpatrick"], errors="coerce")
                    .astype(float).fillna(np.nan).to_numpy()))
    preds = {e: read_csv(str(e / "predictions.csv"), source=str(e), required=["image_id", "label"])
             for e in args.evals}
    shared = set.intersection(*(set(p["image_id"].astype(str)) for p in preds.values()))
    report: dict = {}
    for e, frame in preds.items():
        frame = frame[frame["image_id"].astype(str).isin(shared)].sort_values("image_id")
        classes = [c for c in frame.columns if c not in ("image_id", "label", "prediction",
                                                          "prediction_set")]
        probs = frame[classes].to_numpy(float)
        labels = frame["label"].astype(str).tolist()
        types = np.array([fitz.get(i, np.nan) for i in frame["image_id"].astype(str)])
        group = np.array([GROUPS.get(int(t), "unknown") if np.isfinite(t) else "unknown"
                          for t in types])
        maps = level_maps(source, classes, synonyms)
        out = {}
        for level, mapping in maps.items():
            p, names = collapse(probs, classes, mapping)
            y = np.array([names.index(mapping[lab]) for lab in labels])
            entry = {"all": score(y, p, args.resamples)}
            for g in ("1-2", "3-4", "5-6"):
                sel = group == g
                entry[g] = score(y[sel], p[sel], args.resamples)
            entry["gap_5-6_minus_1-2"] = entry["5-6"]["accuracy"] - entry["1-2"]["accuracy"]
            out[level] = entry
        report[str(e)] = out
        print(f"\n{e} (n = {len(frame)} validation photos)")
        print(f"{'level':<22} {'accuracy (95 % CI)':<24} {'macro-F1':<9} "
              f"{'acc 1-2':<8} {'acc 3-4':<8} {'acc 5-6':<8} gap 5-6 - 1-2")
        for level, entry in out.items():
            a = entry["all"]
            print(f"{level:<22} {a['accuracy']:.3f} ({a['accuracy_ci'][0]:.3f}-"
                  f"{a['accuracy_ci'][1]:.3f})    {a['f1_macro']:.3f}     "
                  f"{entry['1-2']['accuracy']:.3f}    {entry['3-4']['accuracy']:.3f}    "
                  f"{entry['5-6']['accuracy']:.3f}    {entry['gap_5-6_minus_1-2']:+.3f}")
    if args.out:
        atomic_write_text(args.out, json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
