"""Trend model vs the severity baseline on held-out synthetic progressions (seeded).

    python benchmarks/trend.py                       # defaults below, ≤ 15 min on 2 cores
    python benchmarks/trend.py --ham-lesions 200 --fitz-per-group 40 --out runs/trend-quick  # quick

1. Progressions (:mod:`dermsight.track.progressions`) from HAM10000 (one image per lesion, its
   mask) and Fitzpatrick17k (types 1–6, a centred ellipse as the lesion region); lesions /
   images are split into train and eval *before* any progression is made (by ``lesion_id`` /
   image id), so no evaluation lesion is ever seen in training.
2. Per-photo embeddings: the ONNX serving engine (``dermsight.serve.engine.Engine``, its
   default model ``models/ham10000``: the embeddings the API stores) with ``--embed auto``
   (default) when it loads, otherwise the HAM10000 checkpoint (``experiments/ham10000``,
   ``forward_features``); per-photo lesion measurements. Features are cached in
   ``<out>/features.pkl`` (``--reuse-features`` retrains without recomputing them).
3. The trend model is trained on the train progressions, exported to ONNX (checked against
   torch) and evaluated **through onnxruntime**; the baseline's thresholds are fitted on the
   same train progressions.
4. Accuracy and macro AUROC (one-vs-rest) on the eval progressions, overall, per source and by
   Fitzpatrick group, with a 95 % bootstrap CI for the overall ones, written to
   ``<out>/report.json`` and printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from dermsight.io import atomic_write_text  # noqa: E402
from dermsight.track import progressions as P  # noqa: E402
from dermsight.track import trend as T  # noqa: E402
from dermsight.track.lesion import measure_lesion  # noqa: E402


def make_embedder(kind: str, engine_model: str | None, checkpoint: Path):
    """(embed(list of RGB) -> [N, F] float32, description, model_id of the serving model or
    None): serving uses the trend model only on photos embedded by that same model."""
    if kind == "none":
        return (lambda images: np.zeros((len(images), 1), np.float32)), "none (ablation)", None
    if kind in ("engine", "auto"):
        try:
            from dermsight.serve.engine import Engine

            engine = Engine.load(engine_model)

            def embed_engine(images):
                preds = engine.predict(images, top_k=1)
                return np.stack([np.asarray(p.embedding, dtype=np.float32) for p in preds])

            return (embed_engine, f"onnx engine ({engine_model or 'default model'})",
                    engine.model_id)
        except Exception as exc:  # engine not built yet, or no exported model
            if kind == "engine":
                raise
            print(f"engine unavailable ({type(exc).__name__}: {exc}); using the checkpoint")
    import torch

    from dermsight.train.checkpoint import load_run

    run = load_run(checkpoint)

    def embed_ckpt(images):
        x = torch.from_numpy(run.preprocess.batch(images))
        with torch.no_grad():
            return run.model.forward_features(x).numpy().astype(np.float32)

    return embed_ckpt, f"checkpoint {checkpoint} (forward_features)", None


def featurise(progs, embed, batch: int = 32):
    """Per progression: (features [T, D] is built later), embeddings [T, F], lesion dicts."""
    flat = [im for p in progs for im in p.images]
    embs = []
    for i in range(0, len(flat), batch):
        embs.append(embed(flat[i:i + batch]))
    embs = np.concatenate(embs)
    lesions = [measure_lesion(im) for im in flat]
    out, k = [], 0
    for p in progs:
        n = len(p.images)
        out.append((embs[k:k + n], lesions[k:k + n]))
        k += n
    return out


def macro_auroc(y: np.ndarray, proba: np.ndarray) -> float:
    present = [c for c in range(proba.shape[1]) if 0 < (y == c).sum() < len(y)]
    if len(present) < 2:
        return float("nan")
    return float(np.mean([roc_auc_score(y == c, proba[:, c]) for c in present]))


def metrics(y, proba, rng=None, n_boot: int = 500) -> dict:
    y = np.asarray(y)
    pred = proba.argmax(axis=1)
    out = {"n": int(len(y)), "accuracy": float(np.mean(pred == y)),
           "macro_auroc": macro_auroc(y, proba)}
    if rng is not None and len(y) > 10:
        accs, aucs = [], []
        for _ in range(n_boot):
            idx = rng.integers(0, len(y), len(y))
            accs.append(np.mean(pred[idx] == y[idx]))
            aucs.append(macro_auroc(y[idx], proba[idx]))
        out["accuracy_ci"] = [float(np.percentile(accs, 2.5)), float(np.percentile(accs, 97.5))]
        out["macro_auroc_ci"] = [float(np.nanpercentile(aucs, 2.5)),
                                 float(np.nanpercentile(aucs, 97.5))]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ham-root", default=str(SHARED / "ham10000"))
    ap.add_argument("--fitz-root", default=str(SHARED / "fitzpatrick17k"))
    ap.add_argument("--ham-lesions", type=int, default=500)
    ap.add_argument("--fitz-per-group", type=int, default=150)
    ap.add_argument("--eval-fraction", type=float, default=0.4)
    ap.add_argument("--per-item", type=int, default=2)
    ap.add_argument("--max-visits", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--embed", choices=["auto", "engine", "checkpoint", "none"],
                    default="auto")
    ap.add_argument("--engine-model", default=None)
    ap.add_argument("--emb-components", type=int, default=16,
                    help="principal directions of the embedding change the model reads")
    ap.add_argument("--reuse-features", action="store_true",
                    help="reuse <out>/features.pkl when made with the same data arguments")
    ap.add_argument("--checkpoint", default=str(ROOT / "experiments" / "ham10000"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "trend"))
    ap.add_argument("--model-out", default=str(ROOT / "models" / "trend"),
                    help="where the ONNX trend model goes ('' to skip)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    t0 = time.time()
    timings = {}
    key = {k: getattr(args, k) for k in ("ham_lesions", "fitz_per_group", "eval_fraction",
                                          "per_item", "max_visits", "seed", "embed",
                                          "engine_model", "checkpoint")}
    cache = Path(args.out) / "features.pkl"
    cached = None
    if args.reuse_features and cache.is_file():
        with open(cache, "rb") as fh:
            cached = pickle.load(fh)
        if cached.get("key") != key:
            print("cached features were made with other arguments: recomputing")
            cached = None
    if cached is None:
        ham = P.load_ham10000(args.ham_root, n=args.ham_lesions, seed=args.seed)
        fitz = P.load_fitzpatrick17k(args.fitz_root, n_per_group=args.fitz_per_group,
                                     seed=args.seed)
        ham_tr, ham_ev = P.split_by_group(ham, args.eval_fraction, args.seed)
        fz_tr, fz_ev = P.split_by_group(fitz, args.eval_fraction, args.seed)
        assert not {i.group_id for i in ham_tr} & {i.group_id for i in ham_ev}
        assert not {i.group_id for i in fz_tr} & {i.group_id for i in fz_ev}
        train = (P.build_progressions(ham_tr, args.per_item, args.seed,
                                      max_visits=args.max_visits)
                 + P.build_progressions(fz_tr, args.per_item, args.seed + 1,
                                        max_visits=args.max_visits))
        evals = (P.build_progressions(ham_ev, args.per_item, args.seed + 2,
                                      max_visits=args.max_visits)
                 + P.build_progressions(fz_ev, args.per_item, args.seed + 3,
                                        max_visits=args.max_visits))
        timings["generate_s"] = time.time() - t0
        n_img = sum(len(p.images) for p in train + evals)
        print(f"{len(train)} train / {len(evals)} eval progressions, {n_img} photos "
              f"({timings['generate_s']:.0f} s)")
        t1 = time.time()
        embed, embed_desc, embed_model = make_embedder(args.embed, args.engine_model,
                                                       Path(args.checkpoint))
        f_train = featurise(train, embed)
        f_eval = featurise(evals, embed)
        timings["embed_measure_s"] = time.time() - t1
        print(f"embeddings ({embed_desc}): {timings['embed_measure_s']:.0f} s "
              f"({n_img / timings['embed_measure_s']:.1f} photos/s)")
        for prog in train + evals:
            prog.images = []  # keep the cache small: features only
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "wb") as fh:
            pickle.dump({"key": key, "train": train, "evals": evals, "f_train": f_train,
                         "f_eval": f_eval, "embed_desc": embed_desc,
                         "embed_model": embed_model}, fh)
    else:
        train, evals = cached["train"], cached["evals"]
        f_train, f_eval, embed_desc = cached["f_train"], cached["f_eval"], cached["embed_desc"]
        embed_model = cached.get("embed_model")
        print(f"reusing {cache}: {len(train)} train / {len(evals)} eval progressions")
    emb_dim = int(f_train[0][0].shape[1])

    def seqs(progs, feats):
        return [T.sequence_features(e, les, p.days, emb_dim) for p, (e, les) in zip(progs, feats)]

    x_tr, x_ev = seqs(train, f_train), seqs(evals, f_eval)
    y_tr = np.array([T.CLASSES.index(p.label) for p in train])
    y_ev = np.array([T.CLASSES.index(p.label) for p in evals])

    t2 = time.time()
    net = T.train_trend(x_tr, y_tr, seed=args.seed, epochs=args.epochs, emb_dim=emb_dim,
                        emb_components=args.emb_components)
    timings["train_s"] = time.time() - t2
    base = T.SeverityBaseline().fit(np.array([T.SeverityBaseline.score(les)
                                              for _, les in f_train]), y_tr)
    meta = {"classes": list(T.CLASSES), "embedding_dim": emb_dim,
            "embedding_source": embed_desc, "embedding_model": embed_model,
            "feature_version": 1,
            "embedding_components": args.emb_components,
            "baseline": {"low": base.low, "high": base.high},
            "trained_on": f"{len(train)} synthetic progressions (seed {args.seed})"}
    model_dir = Path(args.model_out) if args.model_out else Path(args.out) / "model"
    T.export_trend(net, model_dir, meta)
    onnx_model = T.TrendModel.load(model_dir)

    def onnx_proba(xs):
        out = []
        for i in range(0, len(xs), 64):
            x, m = T.pad_batch(xs[i:i + 64])
            out.append(onnx_model.predict_proba(x, m))
        return np.concatenate(out)

    p_model = onnx_proba(x_ev)
    p_torch = T.torch_predict_proba(net, x_ev)
    assert np.allclose(p_model, p_torch, atol=1e-4), "ONNX and torch disagree"
    p_base = base.predict_proba(np.array([T.SeverityBaseline.score(les) for _, les in f_eval]))
    # ablation: the same network without embeddings (lesion + time features only)
    x_tr_ne = [np.concatenate([np.zeros_like(x[:, :emb_dim]), x[:, emb_dim:]], 1) for x in x_tr]
    x_ev_ne = [np.concatenate([np.zeros_like(x[:, :emb_dim]), x[:, emb_dim:]], 1) for x in x_ev]
    net_ne = T.train_trend(x_tr_ne, y_tr, seed=args.seed, epochs=args.epochs, emb_dim=emb_dim,
                           emb_components=0)
    p_ne = T.torch_predict_proba(net_ne, x_ev_ne)

    rng = np.random.default_rng(args.seed)
    groups = {"all": np.ones(len(evals), bool)}
    for src in ("ham10000", "fitzpatrick17k"):
        groups[src] = np.array([p.source == src for p in evals])
    for tone in ("1-2", "3-4", "5-6"):
        groups[f"fitzpatrick {tone}"] = np.array([p.tone == tone for p in evals])
    report = {"args": vars(args), "embedding": embed_desc, "timings": timings,
              "n_train": len(train), "n_eval": len(evals), "results": {}}
    for name, sel in groups.items():
        report["results"][name] = {
            "trend_model": metrics(y_ev[sel], p_model[sel], rng),
            "baseline": metrics(y_ev[sel], p_base[sel], rng),
            "model_without_embeddings": metrics(y_ev[sel], p_ne[sel], rng),
        }
    timings["total_s"] = time.time() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    print("\n| eval progressions | n | trend model acc | AUROC | baseline acc | AUROC "
          "| no-embedding model acc | AUROC |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in report["results"].items():
        m, b, ne = r["trend_model"], r["baseline"], r["model_without_embeddings"]
        print(f"| {name} | {m['n']} | {m['accuracy']:.3f} | {m['macro_auroc']:.3f} "
              f"| {b['accuracy']:.3f} | {b['macro_auroc']:.3f} "
              f"| {ne['accuracy']:.3f} | {ne['macro_auroc']:.3f} |")
    a = report["results"]["all"]["trend_model"]
    if "accuracy_ci" in a:
        print(f"\ntrend model, all: accuracy 95 % CI {a['accuracy_ci'][0]:.3f}–"
              f"{a['accuracy_ci'][1]:.3f}, macro AUROC {a['macro_auroc_ci'][0]:.3f}–"
              f"{a['macro_auroc_ci'][1]:.3f}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"model: {model_dir}; report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
