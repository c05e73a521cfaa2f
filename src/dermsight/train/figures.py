"""Training figures: learning curves over phases and the validation confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def write_training_figures(history: pd.DataFrame, report: dict, folder: Path, *,
                           classes: list[str]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    if len(history):
        fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(12, 4))
        x = history["epoch"] + 1
        for col, ax in (("train_loss", ax_loss), ("val_loss", ax_loss),
                        ("val_accuracy", ax_metric), ("val_balanced_accuracy", ax_metric),
                        ("val_auroc_macro", ax_metric), ("val_f1_macro", ax_metric)):
            if col in history:
                ax.plot(x, history[col], marker="o", ms=3, label=col)
        for ax in (ax_loss, ax_metric):
            for _, first in history.groupby("phase", sort=False)["epoch"].min().items():
                ax.axvline(first + 0.5, color="grey", lw=0.8, ls="--")
            ax.set_xlabel("epoch (dashed: phase starts)")
            ax.legend(fontsize=8)
        ax_loss.set_title("Loss")
        ax_metric.set_title("Validation metrics")
        fig.tight_layout()
        fig.savefig(folder / "learning_curves.png", dpi=110)
        plt.close(fig)
        written.append("learning_curves.png")

    cm = np.asarray(report["confusion"], dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    draw_confusion(ax, cm, norm, classes)
    ax.set_title("Validation confusion (row-normalised colour, counts)")
    fig.tight_layout()
    fig.savefig(folder / "confusion_matrix.png", dpi=110)
    plt.close(fig)
    written.append("confusion_matrix.png")
    return written


def draw_confusion(ax, cm: np.ndarray, norm: np.ndarray, classes: list[str], *,
                   annotate: bool = True):
    """Row-normalised colours ``norm``, counts ``cm`` written in the cells (``annotate``),
    classes on both axes; returns the image (for a colour bar)."""
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    if annotate:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return im
