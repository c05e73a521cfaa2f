"""Evaluation figures (matplotlib, Agg). They draw numbers already in the report: nothing here
recomputes a metric.

``write_eval_figures`` writes into ``folder``: ``confusion.png`` (row-normalised, with counts),
``reliability.png`` (before / after temperature scaling), ``fairness_accuracy.png`` (accuracy per
group with 95 % CI bars, one panel per attribute), ``conformal_coverage.png`` (coverage per
group against the target), ``gradcam.png`` (per class, a correct and a wrong example with its
CAM overlay), ``gallery_confident_wrong.png`` and ``gallery_unsure_right.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermsight.train.figures import draw_confusion


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, name: str, written: list[str]) -> None:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=100)
    _plt().close(fig)
    written.append(name)


def confusion_figure(report: dict, classes: list[str], folder: Path, written: list[str]):
    plt = _plt()
    cm = np.asarray(report["metrics"]["confusion"], float)
    norm = np.asarray(report["metrics"]["confusion_normalized"], float)
    size = max(5.0, 0.45 * len(classes) + 3)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = draw_confusion(ax, cm, norm, classes, annotate=len(classes) <= 12)
    ax.set_title("Confusion matrix (row-normalised; numbers are counts)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    _save(fig, folder, "confusion.png", written)


def reliability_figure(report: dict, folder: Path, written: list[str]):
    plt = _plt()
    cal = report["calibration"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "reliability_before", "before"),
                           (axes[1], "reliability_after", "after")):
        rel = cal[key]
        acc = np.array([np.nan if a is None else a for a in rel["accuracy"]], float)
        conf = np.array([np.nan if c is None else c for c in rel["confidence"]], float)
        n_bins = len(acc)
        centres = (np.arange(n_bins) + 0.5) / n_bins
        ax.bar(centres, np.nan_to_num(acc), width=1 / n_bins, edgecolor="k", alpha=0.7,
               label="accuracy")
        ax.plot(centres, conf, "o", color="C3", ms=3, label="mean confidence")
        ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
        ece = cal["ece_before" if title == "before" else "ece_after"]
        t = 1.0 if title == "before" else cal["temperature"]
        ax.set_title(f"{title} temperature scaling (T = {t:.2f}): ECE {ece:.3f}")
        ax.set_xlabel("confidence (top class)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=8, loc="upper left")
    _save(fig, folder, "reliability.png", written)


def fairness_figure(report: dict, folder: Path, written: list[str]):
    attrs = {k: v for k, v in report["fairness"].items() if v["groups"]}
    if not attrs:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, len(attrs), figsize=(3.4 * len(attrs) + 1, 4), squeeze=False)
    overall = report["metrics"]["accuracy"]
    for ax, (attr, res) in zip(axes[0], attrs.items()):
        names = list(res["groups"])
        rows = [res["groups"][g] for g in names]
        acc = np.array([np.nan if r["accuracy"] is None else r["accuracy"] for r in rows])
        ci = np.array([[np.nan, np.nan] if r["accuracy_ci95"] is None or None in
                       r["accuracy_ci95"] else r["accuracy_ci95"] for r in rows], float)
        err = np.abs(np.vstack([acc - ci[:, 0], ci[:, 1] - acc]))
        colors = ["lightgrey" if r["small"] else "C0" for r in rows]
        ax.bar(range(len(names)), acc, yerr=np.nan_to_num(err), color=colors, capsize=3)
        ax.axhline(overall, color="C3", ls="--", lw=1)
        ax.set_xticks(range(len(names)), [f"{g}\nn={r['n']}" for g, r in zip(names, rows)],
                      rotation=45, ha="right", fontsize=7)
        gap = res.get("max_gap")
        gap_ci = res.get("max_gap_ci95")
        title = attr
        if gap is not None and gap_ci:
            title += f"\ngap {gap:.3f} [{gap_ci[0]:.3f}, {gap_ci[1]:.3f}]"
        ax.set_title(title, fontsize=9)
        ax.set_ylim(0, 1)
    axes[0][0].set_ylabel("accuracy (95 % CI; grey: n < 30, not ranked)")
    _save(fig, folder, "fairness_accuracy.png", written)


def coverage_figure(report: dict, folder: Path, written: list[str]):
    conf = report["conformal"]
    attrs = {k: v for k, v in conf["by_attribute"].items() if v}
    if not attrs:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, len(attrs), figsize=(3.2 * len(attrs) + 1, 3.8), squeeze=False)
    for ax, (attr, table) in zip(axes[0], attrs.items()):
        names = list(table)
        cov = [table[g]["coverage"] for g in names]
        ax.bar(range(len(names)), cov, color=["C2" if table[g]["n"] >= 50 else "lightgrey"
                                              for g in names])
        ax.axhline(conf["target"], color="C3", ls="--", lw=1)
        ax.axhspan(conf["target"] - 0.02, conf["target"] + 0.02, color="C3", alpha=0.1)
        ax.set_xticks(range(len(names)),
                      [f"{g}\nn={table[g]['n']}\n|set|={table[g]['mean_set_size']:.1f}"
                       for g in names], rotation=45, ha="right", fontsize=7)
        ax.set_ylim(max(0.0, min(cov + [conf["target"]]) - 0.1), 1.0)
        ax.set_title(attr, fontsize=9)
    axes[0][0].set_ylabel(f"coverage (target {conf['target']:.2f} ± 0.02)")
    fig.suptitle(f"Conformal ({conf['method'].upper()}, {conf['mode']}) coverage by group; "
                 f"overall {conf['coverage']:.3f}, mean set size {conf['mean_set_size']:.2f}",
                 fontsize=10)
    _save(fig, folder, "conformal_coverage.png", written)


def gradcam_figure(panels: dict, classes: list[str], folder: Path, written: list[str]):
    if not panels:
        return
    from dermsight.evaluate.explain import overlay

    plt = _plt()
    rows = [c for c in range(len(classes)) if (c, "correct") in panels or (c, "wrong") in panels]
    fig, axes = plt.subplots(len(rows), 4, figsize=(9, 2.3 * len(rows)), squeeze=False)
    for r, c in enumerate(rows):
        for k, kind in enumerate(("correct", "wrong")):
            ax_img, ax_cam = axes[r][2 * k], axes[r][2 * k + 1]
            p = panels.get((c, kind))
            for ax in (ax_img, ax_cam):
                ax.axis("off")
            if p is None:
                ax_img.set_title(f"{classes[c]}: no {kind} example", fontsize=7)
                continue
            ax_img.imshow(p["rgb"])
            ax_img.set_title(f"{classes[c]} ({kind})", fontsize=7)
            ax_cam.imshow(overlay(p["rgb"], p["cam"]))
            ax_cam.set_title(f"→ {p['prediction']} {p['confidence']:.2f}", fontsize=7)
    fig.suptitle("Grad-CAM of the predicted class: a correct and a wrong example per true class",
                 fontsize=9)
    _save(fig, folder, "gradcam.png", written)


def gallery_figure(rows: list[dict], images: list[np.ndarray], title: str, name: str,
                   folder: Path, written: list[str]):
    if not rows:
        return
    plt = _plt()
    cols = min(4, len(rows))
    nrows = int(np.ceil(len(rows) / cols))
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.8 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, img in zip(axes.ravel(), rows, images):
        ax.imshow(img)
        ax.set_title(f"true {row['label']}\npred {row['prediction']} {row['confidence']:.2f}",
                     fontsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, folder, name, written)


def write_eval_figures(folder: Path, report: dict, *, classes: list[str], panels: dict,
                       gallery_images: dict) -> list[str]:
    """Write every figure into ``folder``; returns the file names written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    confusion_figure(report, classes, folder, written)
    reliability_figure(report, folder, written)
    fairness_figure(report, folder, written)
    coverage_figure(report, folder, written)
    gradcam_figure(panels, classes, folder, written)
    gal = report["galleries"]
    gallery_figure(gal["confident_wrong"], gallery_images["confident_wrong"],
                   "Most confident wrong predictions", "gallery_confident_wrong.png", folder,
                   written)
    gallery_figure(gal["unsure_right"], gallery_images["unsure_right"],
                   "Least confident right predictions", "gallery_unsure_right.png", folder,
                   written)
    return written
