"""Benchmark the photo-quality checks against synthetic degradations of real images.

Samples ``--n`` real images, half from HAM10000 (dermoscopy) and half from Fitzpatrick17k
(clinical photos), under ``--data``; degrades each with every kind of
:data:`dermsight.features.degrade.DEGRADATIONS` at ``--severity`` (seeded), and reports per kind:

- ``auroc_feature``: AUROC of the most relevant ``q_*`` feature for separating the degraded copies
  from the clean originals (sign-corrected so that higher = more degraded);
- ``auroc_check``: AUROC of assess_quality's binary decision "that check failed";
- ``detect_rate``: share of degraded copies on which that check failed;
- ``any_fail_rate``: share of degraded copies with ``lighting_ok == False``;

plus the false-alarm rate (``lighting_ok == False``) on the untouched clean images, overall and
per check. Prints a Markdown table; ``--out`` writes the same numbers as JSON.

**By skin type** (``--by-type N``, default 150): the same on up to ``N`` Fitzpatrick17k photos
of types I–II and up to ``N`` of types V–VI (dermatologists' labels, same hash half), so a check
that only works on light skin shows. With ``--served`` the served path is scored too: the
clinical model's photo-quality head (``p(poor)``, from the committed models) and the decision a
user gets (head at its threshold, or any check), per degradation and skin-type group.

Honesty about tuning: the image files are split into two disjoint halves by a hash of their file
name (``--half``). The default thresholds in :class:`QualityThresholds` were chosen on the
``tune`` half (``--half tune --seed 1``); report numbers with the default ``--half report
--seed 0``, i.e. on different images and different degradation draws. ``--suggest`` prints the
clean-image percentiles used to pick thresholds.

Run from the project root::

    .venv/bin/python benchmarks/quality_degradations.py --n 400 --seed 0 --severity 1.0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from dermsight.features.degrade import DEGRADATIONS, degrade
from dermsight.features.quality import assess_quality, compute_quality, failed_checks
from dermsight.features.skintone import FITZPATRICK_GROUPS

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("ham10000", "fitzpatrick17k")
# skin-type groups compared, named as the README names them
TYPE_GROUPS = {roman: tuple(t for t, g in FITZPATRICK_GROUPS.items() if g == group)
               for roman, group in (("I-II", "1-2"), ("V-VI", "5-6"))}
# degradation kind -> (the feature that should detect it, +1 if higher = worse, the check name)
TARGETS = {
    "dark": ("q_brightness_mean", -1, "dark"),
    "overexposed": ("q_overexposed", +1, "overexposed"),
    "blur": ("q_sharpness", -1, "blurry"),
    "glare": ("q_glare", +1, "glare"),
    "color_cast": ("q_color_cast", +1, "color_cast"),
    "distant": ("q_subject_fraction", -1, "distant"),
}


def _half(name: str) -> str:
    return "tune" if zlib.crc32(name.encode()) % 2 == 0 else "report"


def sample_paths(data: Path, n: int, seed: int, half: str) -> list[Path]:
    """n image paths, half from each source, from the given hash half of the files."""
    rng = np.random.default_rng(seed)
    out: list[Path] = []
    for i, src in enumerate(SOURCES):
        files = sorted(p for p in (data / src / "images").glob("*.jpg") if _half(p.name) == half)
        if not files:
            sys.exit(f"no images under {data / src / 'images'}")
        k = min(len(files), n // 2 + (n % 2 if i == 0 else 0))
        out += [files[j] for j in rng.choice(len(files), size=k, replace=False)]
    return out


def sample_by_type(data: Path, n: int, seed: int, half: str) -> dict[str, list[Path]]:
    """Up to n Fitzpatrick17k image paths per skin-type group (dermatologists' label), from the
    given hash half."""
    import pandas as pd

    meta = pd.read_csv(data / "fitzpatrick17k" / "metadata.csv")
    rng = np.random.default_rng(seed + 7)
    out: dict[str, list[Path]] = {}
    for name, types in TYPE_GROUPS.items():
        files = sorted(p for p in (data / "fitzpatrick17k" / "images" / f"{h}.jpg" for h in
                                   meta.loc[meta["fitzpatrick_scale"].isin(types), "md5hash"])
                       if _half(p.name) == half and p.exists())
        k = min(len(files), n)
        out[name] = [files[j] for j in sorted(rng.choice(len(files), size=k, replace=False))]
    return out


def load_rgb(path: Path) -> np.ndarray:
    """Decode an image file to RGB uint8, long side at most 512 (as prepare does)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot decode {path}")
    h, w = bgr.shape[:2]
    if max(h, w) > 512:
        s = 512 / max(h, w)
        bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _served(served, images: list[np.ndarray]) -> list[dict]:
    """The served clinical path's quality verdict on each image: the model head's p(poor) and
    whether the user is asked to retake (head or checks)."""
    out = []
    for pred in served.predict(images, photo_types="clinical", top_k=1):
        lighting = pred.lighting or {}
        out.append({"p_poor": lighting.get("score"), "retake": not lighting.get("ok", True)})
    return out


def collect(paths: list[Path], severity: float, seed: int,
            served=None) -> tuple[list[dict], dict]:
    """Features of the clean images and of every degraded copy, plus per-image timings (ms).
    With ``served`` (a ServedModels) each row also holds the served path's verdict."""
    rng = np.random.default_rng(seed + 1_000_003)
    clean: list[dict] = []
    degraded: dict[str, list[dict]] = {k: [] for k in DEGRADATIONS}
    times: list[tuple[tuple[int, int], float]] = []
    for path in paths:
        rgb = load_rgb(path)
        t0 = time.perf_counter()
        row = {**compute_quality(rgb), "source": path.parent.parent.name}
        times.append((rgb.shape[:2], (time.perf_counter() - t0) * 1e3))
        copies = {kind: degrade(rgb, kind, severity, rng) for kind in DEGRADATIONS}
        rows = [row] + [compute_quality(img) for img in copies.values()]
        if served is not None:
            for r, verdict in zip(rows, _served(served, [rgb, *copies.values()])):
                r.update(verdict)
        clean.append(rows[0])
        for kind, r in zip(copies, rows[1:]):
            degraded[kind].append(r)
    return clean, {"degraded": degraded, "times": times}


def evaluate_by_type(groups: dict[str, tuple[list[dict], dict]]) -> dict:
    """Per skin-type group and degradation: the feature's AUROC, its check's detection rate and
    clean false alarms (from :func:`evaluate`); with served verdicts also the head's AUROC and
    the served decision's detection rate and clean retake rate."""
    out: dict = {}
    for name, (clean, extra) in groups.items():
        deg = extra["degraded"]
        base = evaluate(clean, deg)
        entry: dict = {"n": base["n_clean"], "clean_false_alarm": base["clean_false_alarm"],
                       "kinds": {}}
        served = bool(clean) and "p_poor" in clean[0]
        if served:
            entry["served_clean_retake"] = float(np.mean([f["retake"] for f in clean]))
        for kind, figures in base["kinds"].items():
            r = {"auroc_feature": figures["auroc_feature"], "detect_rate": figures["detect_rate"]}
            if served:
                r["auroc_head"] = _auroc([f["p_poor"] for f in clean],
                                         [f["p_poor"] for f in deg[kind]])
                r["served_detect_rate"] = float(np.mean([f["retake"] for f in deg[kind]]))
            entry["kinds"][kind] = r
        out[name] = entry
    return out


def markdown_by_type(by_type: dict) -> str:
    names = list(by_type)
    served = all("served_clean_retake" in by_type[n] for n in names)
    head = "| kind | " + " | ".join(
        f"AUROC feature {n} | detected {n}" + (f" | AUROC head {n} | served detected {n}"
                                               if served else "") for n in names) + " |"
    lines = ["By skin type (Fitzpatrick17k, dermatologists' labels): "
             + ", ".join(f"{n}: {by_type[n]['n']} photos" for n in names), "", head,
             "|---|" + "---|" * (head.count("|") - 2)]
    for kind in TARGETS:
        cells = []
        for n in names:
            r = by_type[n]["kinds"][kind]
            cells += [f"{r['auroc_feature']:.3f}", f"{r['detect_rate']:.1%}"]
            if served:
                cells += [f"{r['auroc_head']:.3f}", f"{r['served_detect_rate']:.1%}"]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    fa = ", ".join(f"{n}: checks {by_type[n]['clean_false_alarm']:.1%}"
                   + (f", served {by_type[n]['served_clean_retake']:.1%}" if served else "")
                   for n in names)
    lines += ["", f"Untouched photos asked to retake: {fa}"]
    return "\n".join(lines)


def _auroc(neg: list[float], pos: list[float]) -> float:
    y = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
    return float(roc_auc_score(y, np.r_[neg, pos]))


def evaluate(clean: list[dict], degraded: dict[str, list[dict]]) -> dict:
    """Per-kind AUROCs and rates, plus clean false alarms (see the module docstring)."""
    clean_failed = [failed_checks(f) for f in clean]
    result: dict = {"n_clean": len(clean), "kinds": {}}
    for kind, (feat, sign, check) in TARGETS.items():
        deg = degraded[kind]
        deg_failed = [failed_checks(f) for f in deg]
        result["kinds"][kind] = {
            "feature": feat,
            "auroc_feature": _auroc([sign * f[feat] for f in clean], [sign * f[feat] for f in deg]),
            "auroc_check": _auroc([check in c for c in clean_failed],
                                  [check in d for d in deg_failed]),
            "detect_rate": float(np.mean([check in d for d in deg_failed])),
            "any_fail_rate": float(np.mean([not assess_quality(f)[0] for f in deg])),
            "clean_false_alarm_check": float(np.mean([check in c for c in clean_failed])),
        }
    result["clean_false_alarm"] = float(np.mean([bool(c) for c in clean_failed]))
    result["clean_false_alarm_by_source"] = {
        s: float(np.mean([bool(c) for c, f in zip(clean_failed, clean) if f["source"] == s]))
        for s in SOURCES if any(f["source"] == s for f in clean)}
    names = sorted({n for c in clean_failed for n in c})
    result["clean_false_alarm_by_check"] = {
        n: float(np.mean([n in c for c in clean_failed])) for n in names}
    return result


def timing_summary(times: list) -> dict:
    """Median / p95 compute_quality time (ms) for small (long side <= 256) and large images."""
    out = {}
    for name, sel in (("long_side_le_256", lambda s: max(s) <= 256),
                      ("long_side_gt_256", lambda s: max(s) > 256)):
        ms = [t for s, t in times if sel(s)]
        if ms:
            out[name] = {"n": len(ms), "median_ms": float(np.median(ms)),
                         "p95_ms": float(np.percentile(ms, 95))}
    return out


def markdown(result: dict, severity: float) -> str:
    lines = [f"Severity {severity:g}, {result['n_clean']} clean images "
             f"(false alarms on clean: {result['clean_false_alarm']:.1%})", "",
             "| kind | feature | AUROC feature | AUROC check | detected | any tip "
             "| clean FA (check) |",
             "|---|---|---|---|---|---|---|"]
    for kind, r in result["kinds"].items():
        lines.append(f"| {kind} | {r['feature']} | {r['auroc_feature']:.3f} | "
                     f"{r['auroc_check']:.3f} | {r['detect_rate']:.1%} | "
                     f"{r['any_fail_rate']:.1%} | {r['clean_false_alarm_check']:.1%} |")
    by_src = ", ".join(f"{k}: {v:.1%}" for k, v in result["clean_false_alarm_by_source"].items())
    by_chk = ", ".join(f"{k}: {v:.1%}" for k, v in result["clean_false_alarm_by_check"].items())
    lines += ["", f"Clean false alarms by source: {by_src}; by check: {by_chk or 'none'}"]
    return "\n".join(lines)


def suggest(clean: list[dict], degraded: dict[str, list[dict]]) -> str:
    """Clean-image percentiles and degraded medians of every feature (for picking thresholds)."""
    keys = [k for k in clean[0] if k.startswith("q_")]
    rows = ["| feature | clean p1 | p5 | p50 | p95 | p99 | " + " | ".join(DEGRADATIONS) + " |"]
    for k in keys:
        c = np.array([f[k] for f in clean])
        pcts = " | ".join(f"{np.percentile(c, q):.4g}" for q in (1, 5, 50, 95, 99))
        meds = " | ".join(f"{np.median([f[k] for f in degraded[d]]):.4g}" for d in DEGRADATIONS)
        rows.append(f"| {k} | {pcts} | {meds} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "../shared/data")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--severity", type=float, default=1.0)
    ap.add_argument("--half", choices=("report", "tune"), default="report",
                    help="which hash half of the image files to sample (thresholds: tune)")
    ap.add_argument("--suggest", action="store_true", help="also print feature percentiles")
    ap.add_argument("--by-type", type=int, default=150, metavar="N",
                    help="also score up to N Fitzpatrick17k photos each of types I-II and V-VI "
                    "(0: skip)")
    ap.add_argument("--served", action="store_true",
                    help="by type, also score the served clinical path (committed models)")
    ap.add_argument("--models", type=Path, default=None, help="models folder (--served)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    paths = sample_paths(args.data.resolve(), args.n, args.seed, args.half)
    clean, extra = collect(paths, args.severity, args.seed)
    result = evaluate(clean, extra["degraded"])
    result.update(severity=args.severity, seed=args.seed, half=args.half,
                  timing=timing_summary(extra["times"]))
    print(markdown(result, args.severity))
    print("\ncompute_quality timing (ms, this process, one core):",
          json.dumps(result["timing"]))
    if args.suggest:
        print("\n" + suggest(clean, extra["degraded"]))
    if args.by_type:
        served = None
        if args.served:
            from dermsight.serve.served import ServedModels
            served = ServedModels.load(args.models)
        groups = {name: collect(paths, args.severity, args.seed, served) for name, paths in
                  sample_by_type(args.data.resolve(), args.by_type, args.seed, args.half).items()}
        result["by_type"] = evaluate_by_type(groups)
        print("\n" + markdown_by_type(result["by_type"]))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
