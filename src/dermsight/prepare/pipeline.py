"""`dermsight prepare`: source → validated, measured, de-duplicated, split manifest + audit.

Steps: read the source's rows; open, decode and measure every image in parallel (bad files are
excluded and listed, never fatal); merge groups over near-duplicates; merge or drop rare
classes; assign grouped, stratified splits (or keep the source's official split); write
``manifest.parquet``, ``audit.json`` and ``figures/`` atomically.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from dermsight import __version__
from dermsight.config import PrepareConfig
from dermsight.errors import DataError
from dermsight.io import (
    atomic_write_text,
    check_output_dir,
    remove_stale_staging,
    staging_dir,
)
from dermsight.manifest import ALL_COLUMNS, conform, join_list, write_manifest
from dermsight.prepare import audit as audit_mod
from dermsight.prepare.duplicates import (
    cluster_labels,
    hashes_to_uint64,
    merge_groups,
    near_duplicate_pairs,
)
from dermsight.prepare.measure import MeasureSettings, measure_image
from dermsight.prepare.splits import (
    assign_splits,
    check_grouping,
    handle_rare_classes,
    split_summary,
)
from dermsight.sources import create_source

_SETTINGS: MeasureSettings | None = None


@dataclass
class PrepareResult:
    out: Path
    manifest: pd.DataFrame
    audit: dict


def _init_worker(settings: MeasureSettings) -> None:
    global _SETTINGS
    _SETTINGS = settings


def _measure_task(task: tuple[str, str | None]) -> dict:
    return measure_image(task[0], task[1], _SETTINGS)


def measure_all(uris: list[str], mask_uris: list[str | None], settings: MeasureSettings, *,
                workers: int, progress: bool = True) -> list[dict]:
    """Measure images in order, streaming over ``workers`` processes with a progress bar."""
    tasks = list(zip(uris, mask_uris))
    bar = dict(total=len(tasks), desc="measuring images", unit="img", disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    if workers <= 1 or len(tasks) < 2:
        _init_worker(settings)
        return [_measure_task(t) for t in tqdm(tasks, **bar)]
    chunk = max(1, min(32, len(tasks) // (workers * 8)))
    ctx = mp.get_context("forkserver")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        return list(tqdm(pool.imap(_measure_task, tasks, chunksize=chunk), **bar))


def _feature_frame(results: list[dict]) -> pd.DataFrame:
    rows = []
    for r in results:
        row = {k: v for k, v in r.items() if k in ALL_COLUMNS}
        row["tips"] = join_list(r.get("tips", []))
        rows.append(row)
    return pd.DataFrame(rows)


def _find_duplicates(frame: pd.DataFrame, thumbs: np.ndarray, cfg: PrepareConfig) -> tuple[
        pd.DataFrame, dict]:
    """Cluster near-duplicates, merge their groups; return the frame and the audit section."""
    section = {"enabled": cfg.dedupe.enabled, "max_distance": cfg.dedupe.max_distance,
               "max_thumb_distance": cfg.dedupe.max_thumb_distance, "clusters": [],
               "groups_merged": 0}
    if not cfg.dedupe.enabled or len(frame) < 2:
        return frame, section
    hashes = hashes_to_uint64(frame["phash"].tolist())
    pairs = near_duplicate_pairs(hashes, cfg.dedupe.max_distance, thumbs=thumbs,
                                 max_thumb_distance=cfg.dedupe.max_thumb_distance)
    frame = frame.copy()
    if pairs:
        labels = cluster_labels(len(frame), pairs)
        sizes = np.bincount(labels)
        ids = frame["image_id"].to_numpy()
        fitz = frame["fitzpatrick"]
        for lab in np.flatnonzero(sizes > 1):
            members = np.flatnonzero(labels == lab)
            name = f"dup-{min(ids[members])}"
            frame.loc[frame.index[members], "duplicate_cluster"] = name
            section["clusters"].append({
                "cluster": name,
                "images": [str(ids[m]) for m in members],
                "labels": sorted({str(x) for x in frame["label"].iloc[members].dropna()}),
                "groups": sorted({str(x) for x in frame["group_id"].iloc[members]}),
                "fitzpatrick": sorted({int(x) for x in fitz.iloc[members].dropna()}),
            })
        before = frame["group_id"].nunique()
        frame["group_id"] = pd.array(merge_groups(frame["group_id"].tolist(), pairs),
                                     dtype="string")
        section["groups_merged"] = int(before - frame["group_id"].nunique())
    section["n_clusters"] = len(section["clusters"])
    section["n_images"] = sum(len(c["images"]) for c in section["clusters"])
    section["pairs"] = [{"a": str(frame["image_id"].iloc[i]), "b": str(frame["image_id"].iloc[j]),
                         "bits": d} for i, j, d in pairs]
    section["conflicting_labels"] = [c["cluster"] for c in section["clusters"]
                                     if len(c["labels"]) > 1]
    section["conflicting_fitzpatrick"] = [c["cluster"] for c in section["clusters"]
                                          if len(c["fitzpatrick"]) > 1]
    return frame, section


def _split(frame: pd.DataFrame, cfg: PrepareConfig) -> tuple[pd.DataFrame, dict]:
    has = frame["split"].notna()
    if has.all():
        section = {"method": "official (kept from the source)"}
    elif has.any():
        missing = frame.loc[~has, "image_id"].iloc[0]
        raise DataError(f"column 'split' is set for some rows but not for {missing!r}: a source "
                        "gives a split for every row or for none")
    else:
        frame = frame.copy()
        frame["split"] = assign_splits(frame, val_fraction=cfg.split.val_fraction,
                                       test_fraction=cfg.split.test_fraction, seed=cfg.seed)
        section = {"method": "grouped stratified (StratifiedGroupKFold)", "seed": cfg.seed,
                   "val_fraction": cfg.split.val_fraction,
                   "test_fraction": cfg.split.test_fraction}
    section["groups_in_several_splits"] = check_grouping(frame)
    section.update(split_summary(frame))
    return frame, section


def run_prepare(cfg: PrepareConfig, *, progress: bool = True) -> PrepareResult:
    """Run the whole prepare stage and write its outputs. See the module docstring."""
    started = time.perf_counter()
    check_output_dir(cfg.out)  # before any image is measured
    remove_stale_staging(cfg.out)
    root = cfg.resolved_root()
    source = create_source(cfg.source, root, **cfg.source_options)
    listed = source.load()

    settings = MeasureSettings(min_side=cfg.images.min_side, max_pixels=cfg.images.max_pixels,
                               feature_size=cfg.images.feature_size, quality=cfg.quality)
    t0 = time.perf_counter()
    results = measure_all(listed["image_uri"].tolist(),
                          [None if pd.isna(m) else m for m in listed["mask_uri"]],
                          settings, workers=cfg.workers, progress=progress)
    measure_seconds = time.perf_counter() - t0
    ok = np.array([r["ok"] for r in results], dtype=bool)
    excluded = [{"image_id": str(i), "path": str(u), "reason": r["reason"]}
                for i, u, r, good in zip(listed["image_id"], listed["image_uri"], results, ok)
                if not good]
    if not ok.any():
        raise DataError(f"{cfg.source}: none of the {len(listed)} images at '{root}' could be "
                        f"used; first problem: {excluded[0]['path']}: {excluded[0]['reason']}")
    kept_results = [r for r, good in zip(results, ok) if good]
    features = _feature_frame(kept_results)
    thumbs = np.stack([np.frombuffer(r["thumb"], dtype=np.uint8) for r in kept_results])
    frame = listed[ok].reset_index(drop=True)
    frame = pd.concat([frame, features], axis=1)
    frame = conform(frame, source=cfg.source, columns=ALL_COLUMNS)

    frame, dup_section = _find_duplicates(frame, thumbs, cfg)
    frame, rare_section = handle_rare_classes(frame, min_count=cfg.split.min_class_count,
                                              policy=cfg.split.rare_classes)
    if len(frame) == 0:
        raise DataError(f"{cfg.source}: no images left after dropping rare classes "
                        f"(split.min_class_count={cfg.split.min_class_count})")
    frame, split_section = _split(frame, cfg)
    if split_section["groups_in_several_splits"] and split_section["method"].startswith("grouped"):
        raise AssertionError("grouped split leaked groups")  # a bug, never a data problem

    elapsed = time.perf_counter() - started
    audit = {
        "dermsight_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": cfg.source,
        "root": root,
        "config": cfg.model_dump(mode="json"),
        "counts": {"listed": int(len(listed)), "kept": int(len(frame)),
                   "excluded": len(excluded), "dropped_rare": int(ok.sum() - len(frame))},
        "excluded": excluded,
        "source_issues": source.issues,
        "duplicates": dup_section,
        "rare_classes": rare_section,
        "splits": split_section,
        "summary": audit_mod.summarise(frame),
        "timing": {"seconds": round(elapsed, 2), "measure_seconds": round(measure_seconds, 2),
                   "images_per_second": round(len(listed) / max(measure_seconds, 1e-9), 1),
                   "workers": cfg.workers},
    }
    with staging_dir(cfg.out, last="manifest.parquet") as stage:
        if cfg.figures:
            audit["figures"] = audit_mod.write_figures(frame, stage / "figures")
        atomic_write_text(stage / "audit.json", json.dumps(audit, indent=2, default=str))
        write_manifest(frame, stage / "manifest.parquet")
    return PrepareResult(out=Path(cfg.out), manifest=frame, audit=audit)
