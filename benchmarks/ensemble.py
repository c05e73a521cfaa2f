"""What would several trained models together reach? Average the calibrated probabilities that
``dermsight evaluate`` wrote for several runs on the same split, side by side with each member.

    python benchmarks/ensemble.py experiments/ham10000 experiments/ham10000-160 \\
        experiments/ham10000-d4 [--eval eval-ham10000-val] [--out FILE.json]

Each argument is a run folder (its ``<eval>/predictions.csv`` is read) or a ``predictions.csv``
itself. The files must list the same photos with the same labels and classes (any order; they
are aligned on ``image_id``). Rows: every member, then the mean of all members' probabilities,
with the paired bootstrap 95 % interval of the ensemble's gain over the best member on each
metric (the same resampled photos for both). An ensemble of k runs costs k times the training
budget and k times the inference, so this measures how far more compute of the same kind goes,
not a recipe within the budget.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight import metrics
from dermsight.errors import DataError
from dermsight.evaluate.fairness import paired_bootstrap_ci
from dermsight.io import read_csv

METRICS = {"accuracy": metrics.accuracy, "balanced_accuracy": metrics.balanced_accuracy,
           "f1_macro": metrics.f1_macro, "auroc_macro": metrics.auroc_macro}


def read_predictions(path: Path, eval_name: str) -> tuple[str, pd.DataFrame]:
    """(member name, predictions table indexed by image_id)."""
    csv = path if path.suffix == ".csv" else path / eval_name / "predictions.csv"
    if not csv.is_file():
        raise SystemExit(f"{csv}: no predictions (run `dermsight evaluate --run {path}` first)")
    try:
        table = read_csv(str(csv), source="ensemble", required=["image_id", "label", "prediction"],
                         dtype={"image_id": str})
    except DataError as exc:
        raise SystemExit(str(exc)) from None
    if table["image_id"].duplicated().any():
        raise SystemExit(f"{csv}: image_id is not unique")
    name = csv.parent.parent.name if path.suffix != ".csv" else str(csv)
    return name, table.set_index("image_id")


def class_columns(table: pd.DataFrame) -> list[str]:
    cols = list(table.columns)
    return cols[cols.index("label") + 1: cols.index("prediction")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("members", nargs="+", type=Path, help="run folders or predictions.csv files")
    ap.add_argument("--eval", default="eval-ham10000-val",
                    help="evaluation folder inside each run (default: %(default)s)")
    ap.add_argument("--resamples", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()
    if len(args.members) < 2:
        raise SystemExit("an ensemble needs at least two members")

    tables = [read_predictions(p, args.eval) for p in args.members]
    first_name, first = tables[0]
    classes = class_columns(first)
    ids = first.index
    for name, table in tables[1:]:
        if class_columns(table) != classes:
            raise SystemExit(f"{name}: classes {class_columns(table)} differ from "
                             f"{first_name}'s {classes}")
        if set(table.index) != set(ids):
            raise SystemExit(f"{name}: scores other photos than {first_name} "
                             f"({len(set(table.index) ^ set(ids))} image_ids differ)")
        aligned = table.loc[ids, "label"]
        if not (aligned == first["label"]).all():
            raise SystemExit(f"{name}: labels differ from {first_name}'s")
    y = first["label"].map({c: k for k, c in enumerate(classes)}).to_numpy()
    probs = [t.loc[ids, classes].to_numpy(np.float64) for _, t in tables]

    rows = [{"member": name, **metrics.classification_summary(y, p)}
            for (name, _), p in zip(tables, probs)]
    mean = np.mean(probs, axis=0)
    ens = {"member": f"mean of {len(probs)}", **metrics.classification_summary(y, mean)}
    for key, fn in METRICS.items():
        best = max(range(len(probs)), key=lambda i: rows[i][key])
        ens[f"{key}_gain"] = ens[key] - rows[best][key]
        ens[f"{key}_gain_ci95"] = list(paired_bootstrap_ci(
            fn, y, mean, probs[best], n_resamples=args.resamples, seed=args.seed))
        ens[f"{key}_best_member"] = rows[best]["member"]
    rows.append(ens)

    print("| | accuracy | balanced accuracy | macro-F1 | macro AUROC |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['member']} | " + " | ".join(f"{r[k]:.3f}" for k in METRICS) + " |")
    print("\ngain of the ensemble over the best member on each metric (paired 95 % CI):")
    for key in METRICS:
        lo, hi = ens[f"{key}_gain_ci95"]
        print(f"  {key}: {ens[f'{key}_gain']:+.3f} ({lo:+.3f} to {hi:+.3f}) "
              f"over {ens[f'{key}_best_member']}")
    if args.out:
        from dermsight.io import atomic_write_text

        result = {"split_file": args.eval, "n": int(len(y)), "classes": classes, "rows": rows}
        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
