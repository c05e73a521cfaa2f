"""Write the model folder (see :mod:`dermsight.export`)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dermsight.errors import ConfigError, DataError
from dermsight.export.graph import DEFAULT_OPSET, export_onnx
from dermsight.export.info import build_info, fit_conformal, served_conformal, train_command
from dermsight.io import atomic_write_text, sha256_file, staging_dir
from dermsight.schemas import Calibration, ModelJson

log = logging.getLogger(__name__)

FP32, INT8, MODEL_JSON, CARD = "model.onnx", "model.int8.onnx", "model.json", "MODEL_CARD.md"
CONFORMAL_ALPHA = 0.1


@dataclass
class ExportResult:
    out: Path
    info: dict
    files: dict[str, Path]


# ---- data -------------------------------------------------------------------------------------
def _manifest(loaded) -> Any:
    """The run's prepared manifest, or None (with a log line) when it is not on this machine."""
    from dermsight.manifest import read_manifest

    if loaded.config is None:
        return None
    folder = loaded.config.prepared_dir()
    if not (folder / "manifest.parquet").is_file():
        log.warning("no prepared manifest at %s: parity and calibration are skipped", folder)
        return None
    return read_manifest(folder)


def _split_arrays(loaded, manifest, split: str, n: int | None, seed: int = 0
                  ) -> dict[str, np.ndarray] | None:
    """Eval-mode model inputs of up to ``n`` rows (seeded sample) of ``split``: image, meta,
    has_meta, label (the training dataset's own loading, without augmentation)."""
    from dermsight.data.dataset import ManifestDataset

    frame = manifest[manifest["split"] == split]
    if len(frame) == 0:
        return None
    if n is not None and n < len(frame):
        frame = frame.sample(n=n, random_state=seed)
    ds = ManifestDataset(frame.reset_index(drop=True), loaded.classes, loaded.preprocess,
                         encoder=loaded.encoder, name=f"split '{split}'")
    items = [ds[i] for i in range(len(ds))]
    out = {"image": np.stack([it["image"].numpy() for it in items]),
           "label": np.array([int(it["label"]) for it in items])}
    if loaded.encoder is not None:
        out["meta"] = np.stack([it["meta"].numpy() for it in items]).astype(np.float32)
        out["has_meta"] = np.ones(len(items), np.float32)
    return out


def _feeds(arrays: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(arrays[k][sl]) for k in ("image", "meta", "has_meta")
            if k in arrays}


def _onnx_logits(path: Path, arrays: dict[str, np.ndarray], batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    n = len(arrays["image"])
    return np.concatenate([session.run(["diagnosis_logits"], _feeds(arrays, slice(s, s + batch)))[0]
                           for s in range(0, n, batch)])


def _torch_logits(model, arrays: dict[str, np.ndarray], *, with_meta: bool, batch: int = 32
                  ) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(arrays["image"]), batch):
            image = torch.from_numpy(arrays["image"][s:s + batch])
            meta = torch.from_numpy(arrays["meta"][s:s + batch]) \
                if with_meta and "meta" in arrays else None
            out.append(model(image, meta)["diagnosis"].numpy())
    return np.concatenate(out)


def _softmax(z: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = z.astype(np.float64) / t
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def conformal_sets(probs: np.ndarray, conformal: dict) -> np.ndarray:
    """Bool (n, C) sets of ``probs`` under model.json's marginal conformal settings (LAC or
    non-randomised APS; the top class always included), as the serving engine builds them."""
    from dermsight.predsets import prediction_sets

    return prediction_sets(probs, float(conformal["threshold"]), conformal.get("method", "lac"))



def _fp32_parity(path: Path, model, val: dict[str, np.ndarray], fp32: np.ndarray) -> dict:
    """How far the fp32 graph's probabilities (``fp32``: its logits of ``val``) are from
    PyTorch's, with and without metadata, and its accuracy."""
    ref = _torch_logits(model, val, with_meta=True)
    out = {"n_val_images": int(len(fp32)),
           "fp32_max_abs_prob_diff": float(np.abs(_softmax(fp32) - _softmax(ref)).max())}
    if "meta" in val:  # the "no metadata" path (has_meta = 0) against model(image, None)
        k = min(64, len(fp32))
        no_meta = {**{x: v[:k] for x, v in val.items()}, "has_meta": np.zeros(k, np.float32)}
        diff = np.abs(_softmax(_onnx_logits(path, no_meta))
                      - _softmax(_torch_logits(model, no_meta, with_meta=False)))
        out["fp32_no_metadata_max_abs_prob_diff"] = float(diff.max())
    out["fp32_accuracy"] = float((fp32.argmax(1) == val["label"]).mean())
    return out


def _calibration(loaded) -> Calibration | None:
    """The run's calibration.json, validated (None when ``dermsight evaluate`` has not
    calibrated the run)."""
    from dermsight.train.checkpoint import CALIBRATION

    if not loaded.calibration:
        return None
    where = loaded.run_dir / CALIBRATION if loaded.run_dir is not None else CALIBRATION
    return Calibration.parse(loaded.calibration, where)


# ---- export -----------------------------------------------------------------------------------
def export_model(run: str | Path, out: str | Path, *, int8: bool = True,
                 opset: int = DEFAULT_OPSET, calibration_images: int = 200,
                 parity_images: int | None = None, keep_fp32: bool = True,
                 progress: bool = True, photo_type: str | None = None) -> ExportResult:
    """Export the run folder ``run`` into the model folder ``out`` (see the module docstring).

    Args:
        int8: also write ``model.int8.onnx`` (static QDQ; needs the run's prepared manifest
            for calibration images).
        calibration_images: training images used to calibrate the int8 activation ranges.
        parity_images: validation images for the parity figures (None = the whole split).
        keep_fp32: keep ``model.onnx`` in ``out``; False leaves only the int8 model (its
            sha256 stays in model.json, marked ``"included": false``), e.g. for a folder
            committed to git.
        photo_type: the kind of photo the model answers (``dermoscopy`` / ``clinical``;
            default: the training source's own, e.g. HAM10000 → dermoscopy); the router sends
            it only photos of that kind.
    """
    from dermsight.export.card import write_card
    from dermsight.export.quantize import quantize_int8
    from dermsight.train.checkpoint import load_run

    started = time.perf_counter()
    loaded = load_run(run)
    run_dir = Path(run) if Path(run).is_dir() else Path(run).parent
    size = tuple(loaded.preprocess.input_size)
    manifest = _manifest(loaded)
    val = _split_arrays(loaded, manifest, "val", parity_images) if manifest is not None else None
    if int8 and manifest is None:
        raise DataError("int8 export needs calibration images from the run's prepared manifest, "
                        "which is not on this machine; export with --no-int8")
    out = Path(out)
    files: dict[str, dict] = {}
    parity: dict[str, Any] = {}
    quant: dict | None = None
    with staging_dir(out, last=MODEL_JSON) as stage:
        module = export_onnx(loaded.model, stage / FP32, size, opset=opset)
        files["fp32"] = {"path": FP32}
        calibration = _calibration(loaded)
        temperature = 1.0 if calibration is None else calibration.temperature
        conformal = None
        if calibration is not None:
            served = served_conformal(calibration.conformal, val_metrics=calibration.val_metrics,
                                      fitted_on=calibration.fitted_on)
            conformal = None if served is None else served.dump()
        if val is not None:
            fp32 = _onnx_logits(stage / FP32, val)
            parity.update(_fp32_parity(stage / FP32, loaded.model, val, fp32))
            if conformal is None:
                conformal = fit_conformal(_softmax(fp32, temperature), val["label"],
                                          CONFORMAL_ALPHA)
            if conformal.get("threshold") is not None and conformal.get("mode") != "group":
                sets = conformal_sets(_softmax(fp32, temperature), conformal)
                conformal["exported_val_coverage"] = float(
                    sets[np.arange(len(sets)), val["label"]].mean())
                conformal["exported_val_mean_set_size"] = float(sets.sum(1).mean())
        if int8:
            train = _split_arrays(loaded, manifest, "train", calibration_images, seed=1)
            if train is None:
                raise DataError("int8 export needs training images; the run's manifest has "
                                "no 'train' rows")
            calib = {k: v for k, v in train.items() if k != "label"}
            quant = quantize_int8(stage / FP32, stage / INT8, calib)
            files["int8"] = {"path": INT8}
            if val is not None:
                q = _onnx_logits(stage / INT8, val)
                parity["int8_top1_agreement"] = float((q.argmax(1) == fp32.argmax(1)).mean())
                parity["int8_max_abs_prob_diff"] = float(
                    np.abs(_softmax(q) - _softmax(fp32)).max())
                parity["int8_accuracy"] = float((q.argmax(1) == val["label"]).mean())
        for entry in files.values():
            path = stage / entry["path"]
            entry.update(sha256=sha256_file(path), bytes=path.stat().st_size, included=True)
        if not keep_fp32:
            if not int8:
                raise ConfigError("keep_fp32=False needs int8=True: the folder would hold no "
                                  "model")
            (stage / FP32).unlink()
            files["fp32"]["included"] = False
        info = build_info(loaded, run_dir, module, files, parity, quant, conformal, calibration,
                          manifest, opset, started, photo_type)
        flags = [f"--run {run}", f"--out {out}"] + (["--no-int8"] if not int8 else []) \
            + (["--no-fp32"] if not keep_fp32 else []) \
            + ([f"--opset {opset}"] if opset != DEFAULT_OPSET else [])
        info["rebuild"] = {"export": "dermsight export " + " ".join(flags),
                           "train": train_command(run_dir)}
        info = ModelJson.parse(info, stage / MODEL_JSON).dump()
        atomic_write_text(stage / MODEL_JSON, json.dumps(info, indent=2) + "\n")
        write_card(stage / CARD, info)
    for key, name in (("int8", INT8), ("fp32", FP32)):
        if not files.get(key, {}).get("included") and (out / name).exists():
            (out / name).unlink()  # a stale model of an earlier export must not be served
    return ExportResult(out=out, info=info, files={k: out / v["path"] for k, v in files.items()
                                                   if v["included"]})


