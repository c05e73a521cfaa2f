"""Post-hoc logit adjustment on a run's validation split: how much balanced accuracy a change of
decision rule buys, and what it costs in accuracy.

    python benchmarks/logit_adjustment.py experiments/ham10000-ema [--out FILE.json]

Subtracting ``τ · log(prior_c)`` from the logits (Menon et al., "Long-tail learning via logit
adjustment", ICLR 2021; ``prior`` = the run's training label frequencies) moves decisions
towards rare classes: τ = 0 is the model as trained, τ = 1 the full Bayes correction to a
uniform prior. The run's validation split is scored once (flip TTA when the run trained with
it), then for every τ: accuracy, balanced accuracy, macro-F1, macro AUROC and recall per class.

Choosing τ on the validation split and scoring it there would flatter the rule, so the choice is
also **cross-fitted**: 20 seeded stratified halvings, τ picked on one half (the τ of highest
balanced accuracy, and the largest τ that costs at most ``--max-accuracy-drop`` of accuracy
against τ = 0), scored on the other, both ways round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.special import log_softmax

from dermsight import metrics
from dermsight.evaluate.predict import load_run_manifest, predict_logits

TAUS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def adjust(logits: np.ndarray, log_prior: np.ndarray, tau: float) -> np.ndarray:
    """Probabilities after subtracting ``tau · log_prior`` from the logits."""
    return np.exp(log_softmax(logits - tau * log_prior[None, :], axis=1))


def score(y: np.ndarray, probs: np.ndarray) -> dict:
    recall = [row["recall"] for row in metrics.per_class(y, probs).values()]
    return {**metrics.classification_summary(y, probs), "recall": recall}


def _pick(y, logits, log_prior, idx, taus, max_drop) -> tuple[float, float]:
    """(τ of best balanced accuracy, largest τ within ``max_drop`` of τ = 0's accuracy) on idx."""
    acc, bal = [], []
    for tau in taus:
        probs = adjust(logits[idx], log_prior, tau)
        acc.append(metrics.accuracy(y[idx], probs))
        bal.append(metrics.balanced_accuracy(y[idx], probs))
    best_bal = taus[int(np.argmax(bal))]
    within = [t for t, a in zip(taus, acc) if a >= acc[0] - max_drop]
    return best_bal, max(within)


def cross_fit(y, logits, log_prior, taus, *, max_drop: float, splits: int, seed: int) -> dict:
    from sklearn.model_selection import StratifiedKFold

    rows = {"best_balanced": [], "accuracy_bounded": []}
    for s in range(splits):
        folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed + s)
        for fit, held in folds.split(np.zeros(len(y)), y):
            base = adjust(logits[held], log_prior, 0.0)
            at_0 = {"accuracy_at_0": metrics.accuracy(y[held], base),
                    "balanced_accuracy_at_0": metrics.balanced_accuracy(y[held], base)}
            picks = _pick(y, logits, log_prior, fit, taus, max_drop)
            for name, tau in zip(rows, picks):
                pred = adjust(logits[held], log_prior, tau)
                rows[name].append({
                    "tau": tau,
                    "accuracy": metrics.accuracy(y[held], pred),
                    "balanced_accuracy": metrics.balanced_accuracy(y[held], pred), **at_0})
    out = {}
    for name, values in rows.items():
        keys = values[0].keys()
        out[name] = {k: float(np.mean([v[k] for v in values])) for k in keys}
        out[name]["tau_sd"] = float(np.std([v["tau"] for v in values]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--taus", type=float, nargs="+", default=TAUS)
    ap.add_argument("--max-accuracy-drop", type=float, default=0.01)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args()

    run, manifest = load_run_manifest(args.run)
    train = manifest[manifest["split"] == "train"]
    val = manifest[manifest["split"] == "val"].reset_index(drop=True)
    counts = train["label"].value_counts().reindex(run.classes).fillna(0).to_numpy(float)
    if (counts == 0).any():
        missing = [c for c, n in zip(run.classes, counts) if n == 0]
        raise SystemExit(f"classes without training rows in the manifest: {missing}")
    log_prior = np.log(counts / counts.sum())
    pred = predict_logits(run, val, tta=run.config.train.tta, workers=args.workers,
                          name="val", progress=True)
    y, logits = pred["label"], pred["logits"]

    sweep = [{"tau": tau, **score(y, adjust(logits, log_prior, tau))} for tau in args.taus]
    result = {
        "run": str(args.run), "split": "val", "n": int(len(y)), "classes": run.classes,
        "train_prior": dict(zip(run.classes, (counts / counts.sum()).round(4).tolist())),
        "sweep": sweep,
        "cross_fitted": cross_fit(y, logits, log_prior, args.taus,
                                  max_drop=args.max_accuracy_drop, splits=args.splits,
                                  seed=args.seed),
        "max_accuracy_drop": args.max_accuracy_drop,
    }
    print("| τ | accuracy | balanced accuracy | macro-F1 | macro AUROC | recall "
          + " / ".join(run.classes) + " |")
    print("|---|---|---|---|---|---|")
    for row in sweep:
        print(f"| {row['tau']:.1f} | {row['accuracy']:.3f} | {row['balanced_accuracy']:.3f} | "
              f"{row['f1_macro']:.3f} | {row['auroc_macro']:.3f} | "
              + " / ".join(f"{r:.2f}" for r in row["recall"]) + " |")
    print(json.dumps(result["cross_fitted"], indent=2))
    if args.out:
        from dermsight.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
