"""Files and folders for ``dermsight predict``: collect the images, predict them in batches
with an :class:`~dermsight.serve.engine.Engine` or the served models (a file that cannot be read
is reported, never stops the run), and format the records as text, CSV or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".heic")


def collect_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files in ``paths``: files as given, folders searched recursively for image suffixes
    (sorted). A path that does not exist raises DataError naming it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file()
                          and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


def predict_files(engine: Any, files: Sequence[Path], *, top_k: int = 3,
                  metadata: dict | None = None, progress: bool = True,
                  max_pixels: int | None = None, photo_type: str | None = None,
                  metadata_table: Any = None) -> list[dict]:
    """One record per file: ``{"file", "ok", "error"?, **Prediction.to_dict()}``. A file that
    cannot be read or decoded gets ``ok: False`` and the reason; it never stops the run.

    ``engine``: an :class:`Engine`, or :class:`~dermsight.serve.served.ServedModels` (each
    photo routed to the model for its kind; ``photo_type`` forces a kind for every file).
    ``metadata_table``: a :class:`~dermsight.serve.metadata_csv.MetadataTable` giving each file
    its own metadata (its warnings go into the file's record); else ``metadata`` for all."""
    from tqdm.auto import tqdm

    from dermsight.imaging import DEFAULT_MAX_PIXELS, decode_rgb

    records: list[dict] = []
    batch: list[tuple[int, np.ndarray, dict | None, list[str]]] = []

    def flush() -> None:
        kwargs = {"photo_types": photo_type} if hasattr(engine, "route") else {}
        preds = engine.predict([b[1] for b in batch], [b[2] for b in batch], top_k=top_k,
                               **kwargs)
        for (i, _, _, notes), pred in zip(batch, preds):
            records[i].update(ok=True, **pred.to_dict())
            records[i]["warnings"] = notes + records[i]["warnings"]
        batch.clear()

    with tqdm(total=len(files), desc="predicting", unit="image", disable=not progress) as bar:
        for path in files:
            records.append({"file": str(path)})
            try:
                rgb = decode_rgb(path.read_bytes(), name=path.name,
                                 max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
            except (OSError, DataError) as exc:
                records[-1].update(ok=False, error=str(exc))
                bar.update(1)
                continue
            meta, notes = (metadata_table.lookup(path) if metadata_table is not None
                           else (metadata, []))
            batch.append((len(records) - 1, rgb, meta, notes))
            if len(batch) >= engine.batch_size:
                flush()
            bar.update(1)
        if batch:
            flush()
    return records


def format_records(records: list[dict], fmt: str = "text") -> str:
    """``predict_files`` records as ``"json"``, ``"csv"`` (one row per file) or ``"text"``."""
    import csv
    import io

    if fmt == "json":
        return json.dumps(records, indent=2) + "\n"
    rows = []
    classes: dict[str, None] = {}  # one probability column per class of the answering models
    for r in records:
        classes.update(dict.fromkeys(r.get("probabilities") or {}))
    for r in records:
        top = r.get("top_k") or []
        light = r.get("lighting") or {}
        tone = r.get("skin_tone") or {}
        probs = r.get("probabilities") or {}
        rows.append({
            "file": r["file"], "ok": r["ok"], "error": r.get("error", ""),
            "photo_type": r.get("photo_type") or "", "model": r.get("model") or "",
            "refused": bool(r.get("refused")) if r["ok"] else "",
            "top1": top[0]["label"] if top else "",
            "top1_probability": f"{top[0]['probability']:.4f}" if top else "",
            "top_k": ";".join(f"{t['label']}:{t['probability']:.4f}" for t in top),
            "conformal_set": ";".join(r.get("conformal_set") or []),
            "lighting_ok": light.get("ok", ""), "lighting_tips": " ".join(light.get("tips", [])),
            "ita": "" if tone.get("ita") is None else f"{tone['ita']:.1f}",
            "skin_tone": tone.get("bucket") or "", "monk": tone.get("monk") or "",
            "skin_type": tone.get("skin_type") or "",
            "warnings": " ".join(r.get("warnings") or []),
            "message": r.get("message") or "",
            **{c: f"{probs[c]:.6f}" if c in probs else "" for c in classes},
        })
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(rows[0]) if rows else ["file", "ok", "error"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue()
    if fmt != "text":
        raise ValueError(f"format must be json, csv or text, got {fmt!r}")
    lines = []
    for r, row in zip(records, rows):
        if not r["ok"]:
            lines.append(f"{row['file']}: ERROR {row['error']}")
            continue
        if r.get("refused"):
            lines.append(f"{row['file']}: no assessment ({row['photo_type']}): {r['message']}")
            continue
        answered = f"[{row['photo_type']} → {row['model']}] " if row["model"] else ""
        text = (f"{row['file']}: {answered}{row['top_k'].replace(';', ', ')} | set: "
                f"{r['conformal_text']}")
        if not row["lighting_ok"]:
            text += f" | retake: {row['lighting_tips']}"
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "")
