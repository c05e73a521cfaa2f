"""Is a series one spot? The weights of :data:`dermsight.track.trend.SAME_SPOT`, and how often
the check is right on held-out lesions (seeded).

    python benchmarks/trend_consistency.py               # defaults below, about 5 min on 2 cores

1. Items: HAM10000 (one image per lesion, its mask) and Fitzpatrick17k (types 1–6, a centred
   ellipse), split by lesion / image into a fitting half and a held-out half.
2. Photos: one synthetic progression (:mod:`dermsight.track.progressions`: the lesion grown or
   shrunk, deepened or faded; every visit re-photographed with another exposure, white
   balance, framing, blur, noise and JPEG) of 2–6 visits per item, analysed as a tracking
   upload is (``prepare_photo`` → long side 512 → ``measure_lesion``; the embedding of the
   serving engine's default model).
3. Pairs: *same spot* = consecutive visits of one progression; *different spot* = a visit of
   one item followed by a visit of another (``--others`` per item).
4. A logistic regression per feature set (:data:`~dermsight.track.trend.SAME_SPOT`: with the
   embedding cosine, and lesion measures only) on the fitting half; its threshold is set so
   that ``--false-flag`` of the fitting half's same-spot pairs are flagged.
5. On the held-out half: the share of same-spot pairs flagged, of different-spot pairs caught,
   and of whole series: progressions wrongly flagged, and series of three photos of three
   different lesions (the issue's case) caught. Written to ``<out>/report.json``; the weights
   are printed as the Python dict to paste into ``dermsight/track/trend.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "src"))

from dermsight.imaging import downscale  # noqa: E402
from dermsight.io import atomic_write_text  # noqa: E402
from dermsight.track import progressions as P  # noqa: E402
from dermsight.track import trend as T  # noqa: E402
from dermsight.track.align import prepare_photo  # noqa: E402
from dermsight.track.lesion import measure_lesion  # noqa: E402


def analyse(progs, engine, batch: int = 32) -> list[list[tuple[dict, np.ndarray]]]:
    """Per progression, per visit: (lesion measures, embedding), as a tracking upload."""
    flat = [prepare_photo(im, "lesion").rgb for p in progs for im in p.images]
    lesions = [measure_lesion(downscale(im, 512)) for im in flat]
    embs = []
    for i in range(0, len(flat), batch):
        embs += [np.asarray(r.embedding, np.float32) for r in engine.predict(flat[i:i + batch])]
    out, k = [], 0
    for p in progs:
        out.append(list(zip(lesions[k:k + len(p.images)], embs[k:k + len(p.images)])))
        k += len(p.images)
    return out


def pairs(progs, visits, others: int, rng) -> tuple[list, list, list]:
    """(same-spot pairs, different-spot pairs) of ((lesion, emb), (lesion, emb)), and the
    sources of each different-spot pair."""
    same = [(v[i - 1], v[i]) for v in visits for i in range(1, len(v))]
    diff, sources = [], []
    for i, v in enumerate(visits):
        for j in rng.choice(len(visits), others, replace=False):
            if progs[j].group_id != progs[i].group_id:
                diff.append((v[int(rng.integers(len(v)))],
                             visits[j][int(rng.integers(len(visits[j])))]))
                sources.append(f"{progs[i].source}/{progs[j].source}")
    return same, diff, sources


def features(pairs_, names) -> np.ndarray:
    return np.array([[T.same_spot_features(a[0], b[0], a[1], b[1])[n] for n in names]
                     for a, b in pairs_], dtype=np.float64)


def fit(same, diff, names, false_flag: float) -> dict:
    """Logistic weights on the raw features, the intercept shifted so that ``false_flag`` of
    the same-spot pairs score above 0."""
    x = np.concatenate([features(same, names), features(diff, names)])
    y = np.r_[np.zeros(len(same)), np.ones(len(diff))]
    mu, sd = x.mean(0), x.std(0) + 1e-9
    lr = LogisticRegression(C=1.0, max_iter=5000).fit((x - mu) / sd, y)
    w = lr.coef_[0] / sd
    b = float(lr.intercept_[0] - (lr.coef_[0] * mu / sd).sum())
    score_same = features(same, names) @ w + b
    b -= float(np.quantile(score_same, 1 - false_flag))
    return {"intercept": round(b, 4), **{n: round(float(c), 4) for n, c in zip(names, w)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ham-root", default=str(SHARED / "ham10000"))
    ap.add_argument("--fitz-root", default=str(SHARED / "fitzpatrick17k"))
    ap.add_argument("--ham-lesions", type=int, default=300)
    ap.add_argument("--fitz-per-group", type=int, default=100)
    ap.add_argument("--held-out", type=float, default=0.5)
    ap.add_argument("--others", type=int, default=4)
    ap.add_argument("--false-flag", type=float, default=0.01,
                    help="share of the fitting half's same-spot pairs flagged")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "runs" / "trend-consistency"))
    args = ap.parse_args(argv)

    from dermsight.serve.engine import Engine

    t0 = time.time()
    items = (P.load_ham10000(args.ham_root, n=args.ham_lesions, seed=args.seed)
             + P.load_fitzpatrick17k(args.fitz_root, n_per_group=args.fitz_per_group,
                                     seed=args.seed))
    for it in items:  # progressions at most 512 px a side, as the analysis sees them
        if max(it.rgb.shape[:2]) > 512:
            rgb = downscale(it.rgb, 512)
            it.mask = (downscale(it.mask.astype(np.uint8) * 255, 512) >= 128)
            it.rgb = rgb
    fit_items, held_items = P.split_by_group(items, args.held_out, args.seed)
    engine = Engine.load(threads=2)
    rng = np.random.default_rng(args.seed)
    halves = {}
    for name, its, seed in (("fit", fit_items, args.seed), ("held_out", held_items,
                                                             args.seed + 1)):
        progs = P.build_progressions(its, 1, seed, max_visits=6)
        visits = analyse(progs, engine)
        same, diff, sources = pairs(progs, visits, args.others, rng)
        halves[name] = {"progs": progs, "visits": visits, "same": same, "diff": diff,
                        "sources": np.array(sources)}
        print(f"{name}: {len(its)} lesions, {sum(len(v) for v in visits)} photos, "
              f"{len(same)} same-spot and {len(diff)} different-spot pairs "
              f"({time.time() - t0:.0f} s)", flush=True)

    weights = {kind: fit(halves["fit"]["same"], halves["fit"]["diff"],
                         [n for n in T.SAME_SPOT_FEATURES if n != "cosine" or kind == "embedding"],
                         args.false_flag)
               for kind in ("embedding", "measures")}
    held = halves["held_out"]
    report = {"args": vars(args), "weights": weights, "embedding_model": engine.model_id,
              "held_out": {}}
    for kind, w in weights.items():
        use_emb = kind == "embedding"

        def flagged(a, b, w=w, use_emb=use_emb):
            return T.same_spot_score(a[0], b[0], w, a[1] if use_emb else None,
                                     b[1] if use_emb else None) > 0

        same_flag = float(np.mean([flagged(a, b) for a, b in held["same"]]))
        caught = np.array([flagged(a, b) for a, b in held["diff"]])
        diff_caught = float(caught.mean())
        by_source = {src: round(float(caught[held["sources"] == src].mean()), 4)
                     for src in sorted(set(held["sources"]))}
        series_flag = float(np.mean([any(flagged(v[i - 1], v[i]) for i in range(1, len(v)))
                                     for v in held["visits"]]))
        three, r = [], np.random.default_rng(args.seed + 2)
        vs, progs = held["visits"], held["progs"]
        for _ in range(500):
            pick = r.choice(len(vs), 3, replace=False)
            if len({progs[k].group_id for k in pick}) < 3:
                continue
            photos = [vs[k][int(r.integers(len(vs[k])))] for k in pick]
            three.append(any(flagged(photos[i - 1], photos[i]) for i in (1, 2)))
        report["held_out"][kind] = {
            "same_spot_pairs_flagged": round(same_flag, 4),
            "different_spot_pairs_caught": round(diff_caught, 4),
            "different_spot_pairs_caught_by_sources": by_source,
            "progressions_flagged": round(series_flag, 4),
            "three_different_lesions_caught": round(float(np.mean(three)), 4),
            "n_same_pairs": len(held["same"]), "n_diff_pairs": len(held["diff"]),
            "n_progressions": len(vs), "n_three_lesion_series": len(three)}
    cos = np.array([T.same_spot_features(a[0], b[0], a[1], b[1])["cosine"]
                    for a, b in held["diff"]])
    report["different_spot_median_cosine_by_sources"] = {
        src: round(float(np.median(cos[held["sources"] == src])), 3)
        for src in sorted(set(held["sources"]))}
    report["seconds"] = round(time.time() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    print("\n| checks | same-spot pairs flagged | different-spot pairs caught | "
          "progressions flagged | 3 different lesions caught |")
    print("|---|---|---|---|---|")
    for kind, r_ in report["held_out"].items():
        print(f"| {kind} | {r_['same_spot_pairs_flagged']:.3f} "
              f"| {r_['different_spot_pairs_caught']:.3f} | {r_['progressions_flagged']:.3f} "
              f"| {r_['three_different_lesions_caught']:.3f} |")
    print(f"\nSAME_SPOT = {json.dumps(weights, indent=4)}")
    print(f"SAME_SPOT_EMBEDDING_MODEL = {engine.model_id!r}")
    print(f"report: {out / 'report.json'} ({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
