"""The audit: what `prepare` kept, excluded and merged, as counts and figures a person reads.

Functions here only format what the pipeline measured; they never recompute features.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from dermsight.features.quality import QUALITY_KEYS as QUALITY_COLUMNS
from dermsight.features.skintone import MONK_SRGB
from dermsight.manifest import split_list

TONE_ORDER = ["light", "medium", "dark"]
SPLIT_ORDER = ["train", "val", "test"]


def _counts(series: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in series.value_counts(dropna=False).sort_index().items()}


def _crosstab(frame: pd.DataFrame, row: str, col: str = "split") -> dict:
    table = pd.crosstab(frame[row].fillna("unknown"), frame[col].fillna("unknown"))
    return {str(r): {str(c): int(v) for c, v in vals.items()} for r, vals in table.iterrows()}


def summarise(frame: pd.DataFrame) -> dict:
    """Counts per class × split, per tone bucket, per lighting label, and tips."""
    tips = Counter(t for cell in frame["tips"] for t in split_list(cell))
    out = {
        "images": int(len(frame)),
        "groups": int(frame["group_id"].nunique()),
        "classes": _crosstab(frame, "label"),
        "tone_bucket": _crosstab(frame, "tone_bucket"),
        "ita_category": _counts(frame["ita_category"]),
        "monk_estimate": _counts(frame["monk_estimate"]),
        "lighting": {
            "ok": int(frame["lighting_ok"].sum()),
            "poor": int((~frame["lighting_ok"]).sum()),
            "by_split": _crosstab(frame.assign(
                lighting=frame["lighting_ok"].map({True: "ok", False: "poor"})), "lighting"),
            "tips": dict(tips.most_common()),
        },
    }
    for col in ("fitzpatrick", "monk"):
        if frame[col].notna().any():
            out[f"{col}_label"] = _counts(frame[col].astype("Int64").astype("string"))
    return out


def write_figures(frame: pd.DataFrame, folder: Path) -> list[str]:
    """Class balance, skin-tone distribution and quality histograms as PNGs. Returns names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(name)

    # 1. class balance per split
    table = pd.crosstab(frame["label"].fillna("unlabelled"), frame["split"])
    table = table[[s for s in SPLIT_ORDER if s in table.columns]]
    table = table.loc[table.sum(axis=1).sort_values().index]
    fig, ax = plt.subplots(figsize=(8, max(3, 0.3 * len(table) + 1)))
    left = np.zeros(len(table))
    for split in table.columns:
        ax.barh(table.index, table[split], left=left, label=split)
        left += table[split].to_numpy()
    ax.set_xlabel("images")
    ax.set_title("Class balance by split")
    ax.legend()
    save(fig, "class_balance.png")

    # 2. skin tone: ITA histogram by bucket, Monk estimate, ITA against labelled Fitzpatrick
    has_fst = frame["fitzpatrick"].notna().sum() >= 10
    fig, axes = plt.subplots(1, 3 if has_fst else 2, figsize=(14 if has_fst else 10, 3.8))
    bins = np.linspace(-90, 90, 46)
    for bucket in TONE_ORDER:
        vals = frame.loc[frame["tone_bucket"] == bucket, "ita"].dropna()
        axes[0].hist(vals, bins=bins, alpha=0.75, label=f"{bucket} ({len(vals)})")
    axes[0].set_xlabel("ITA° (median over skin)")
    axes[0].set_ylabel("images")
    axes[0].set_title("Skin tone (ITA)")
    axes[0].legend()
    monk = frame["monk_estimate"].dropna().astype(int).value_counts().reindex(range(1, 11),
                                                                             fill_value=0)
    axes[1].bar(monk.index, monk.to_numpy(), color=MONK_SRGB / 255.0)
    axes[1].set_xticks(range(1, 11))
    axes[1].set_xlabel("estimated Monk tone")
    axes[1].set_title("Monk estimate")
    if has_fst:
        data = [frame.loc[frame["fitzpatrick"] == t, "ita"].dropna() for t in range(1, 7)]
        axes[2].boxplot(data, tick_labels=[str(t) for t in range(1, 7)])
        axes[2].set_xlabel("labelled Fitzpatrick type")
        axes[2].set_ylabel("ITA°")
        axes[2].set_title("ITA against the label")
    save(fig, "tone_distribution.png")

    # 3. quality feature histograms, well lit against poor
    fig, axes = plt.subplots(2, 6, figsize=(19, 6))
    ok = frame["lighting_ok"].fillna(False).astype(bool)
    for ax, col in zip(axes.ravel(), QUALITY_COLUMNS):
        vals = frame[col].astype(float)
        if col == "q_laplacian_var":
            vals = np.log10(vals.clip(lower=1e-3))
            ax.set_xlabel("log10")
        edges = np.histogram_bin_edges(vals.dropna(), bins=30)
        ax.hist(vals[ok].dropna(), bins=edges, alpha=0.7, label="well lit")
        ax.hist(vals[~ok].dropna(), bins=edges, alpha=0.7, label="poor")
        ax.set_title(col.removeprefix("q_"))
    axes[0, 0].legend()
    fig.suptitle("Photo-quality features")
    save(fig, "quality_histograms.png")
    return written
