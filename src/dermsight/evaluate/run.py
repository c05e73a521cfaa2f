"""`dermsight evaluate`: score a trained run on one split of any dataset, calibrated, with
prediction sets, fairness by skin tone and Grad-CAM, into a report people read.

Steps: load the run (:func:`dermsight.train.checkpoint.load_run`); read the split
(:mod:`dermsight.evaluate.data`: any source, labels mapped onto the model's classes, skin tone
measured on the fly when the data has none); predict (:mod:`.predict`, optionally with
test-time augmentation); calibrate on the RUN's validation split (temperature scaling, then
split-conformal thresholds on the temperature-scaled probabilities) or re-use the run's
``calibration.json`` when it was fitted with the same settings (:mod:`.store`); the report
sections (:mod:`.sections`: metrics, reliability, conformal coverage, fairness with bootstrap
CIs); Grad-CAM on a seeded sample (:mod:`.cam_sample`); write ``OUT/`` atomically.

Outputs (``OUT`` defaults to ``<run>/eval-<source>-<split>/``): ``predictions.csv`` (``image_id``,
``label``, one calibrated probability column per class, then ``prediction`` and
``prediction_set``), ``report.json``, ``report.html`` (self-contained), ``figures/*.png``.

``<run>/calibration.json`` (read by every later stage) is
:class:`dermsight.schemas.Calibration`: the class order, the temperature (calibrated probs =
``softmax(logits / T)``), what it was fitted on, the conformal settings (method, mode, target,
the marginal threshold ``qhat``, per-class or per-group ``thresholds``, ``group_by``), the
validation figures, and for a model with metadata the photo-alone path's own
(``without_metadata``). How a set is rebuilt from it: :mod:`dermsight.evaluate.store`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from dermsight import DISCLAIMER, __version__
from dermsight.config import tta_mode
from dermsight.errors import ConfigError, DataError
from dermsight.evaluate import sections
from dermsight.evaluate.cam_sample import explain_sample
from dermsight.evaluate.data import group_values, load_scored_set
from dermsight.evaluate.predict import gallery_images, predict_logits
from dermsight.evaluate.store import (
    TONE_COLUMN,
    clean_json,
    conformal_from_calibration,
    cross_fit_frame,
    fit_and_store,
    fit_calibration,
    reusable,
    stored_calibration,
)
from dermsight.io import atomic_write_text, staging_dir
from dermsight.schemas import Calibration

__all__ = ["EvalOptions", "EvalResult", "clean_json", "conformal_from_calibration",
           "fit_calibration", "run_evaluate"]

log = logging.getLogger("dermsight.evaluate")


@dataclass
class EvalOptions:
    """Settings of one evaluation (the CLI flags)."""

    split: str = "test"
    out: str | Path | None = None
    coverage: float = 0.9
    conformal: str = "lac"
    conformal_mode: str = "marginal"
    bootstrap: int = 1000
    seed: int = 0
    cam: bool = True
    cam_samples: int = 200
    tta: str | bool | None = None  # none / hflip / flips / d4; None: the run's train.tta
    workers: int = 0
    batch_size: int = 32
    recalibrate: bool = False
    source_options: dict | None = None
    progress: bool = False


@dataclass
class EvalResult:
    out: Path
    report: dict
    calibration: dict = field(default_factory=dict)


@dataclass
class _Scored:
    """What one evaluation works on: the run, its settings and the scored rows."""

    run: object
    opt: EvalOptions
    tta: str
    classes: list[str]
    frame: pd.DataFrame
    y: np.ndarray
    pred: dict
    is_val: bool
    timing: dict

    def predict(self, frame: pd.DataFrame, name: str, *, without_metadata: bool = False
                ) -> dict:
        opt = self.opt
        return predict_logits(self.run, frame, tta=self.tta, batch_size=opt.batch_size,
                              workers=opt.workers, name=name, progress=opt.progress,
                              without_metadata=without_metadata)


# -- steps -----------------------------------------------------------------------------------------
def _check_options(opt: EvalOptions) -> None:
    if opt.conformal not in ("aps", "lac"):
        raise ConfigError(f"--conformal must be 'aps' or 'lac'; got {opt.conformal!r}")
    if opt.conformal_mode not in ("marginal", "class", "group"):
        raise ConfigError("--conformal-mode must be marginal, class or group; got "
                          f"{opt.conformal_mode!r}")
    if not 0.0 < opt.coverage < 1.0:
        raise ConfigError(f"--coverage must be between 0 and 1; got {opt.coverage}")
    if opt.bootstrap < 1 or opt.cam_samples < 0:
        raise ConfigError("--bootstrap must be >= 1 and --cam-samples >= 0")


def _load(run_path: Path, opt: EvalOptions):
    """The trained run and the test-time augmentation to predict with."""
    from dermsight.train.checkpoint import load_run

    if not run_path.is_dir():
        raise ConfigError(f"no run folder at {run_path}")
    run = load_run(run_path)
    if run.config is None:
        raise ConfigError(f"{run_path / 'config.yaml'} is missing: without it the run's "
                          "validation split (the calibration set) cannot be found")
    torch.manual_seed(opt.seed)
    try:
        tta = tta_mode(run.config.train.tta if opt.tta is None else opt.tta)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    size = tuple(run.preprocess.input_size)
    if tta == "d4" and size[0] != size[1]:
        raise ConfigError(f"d4 test-time augmentation needs a square input size; this run's is "
                          f"{list(size)} (use flips)")
    return run, tta


def _validation_rows(run, opt: EvalOptions) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The run's whole prepared manifest, its validation split (the calibration set) and the
    manifest's path."""
    from dermsight.train.run import load_manifest

    val_all = load_manifest(run.config, progress=opt.progress)
    val = val_all[val_all["split"] == "val"].reset_index(drop=True)
    if len(val) == 0:
        raise DataError(f"the run's prepared manifest ({run.config.prepared_dir()}) has an empty "
                        "'val' split: there is nothing to calibrate on")
    return val_all, val, str(run.config.prepared_dir() / "manifest.parquet")


def _calibrate(s: _Scored, val: pd.DataFrame, val_manifest: str
               ) -> tuple[Calibration, bool, dict | None]:
    """The run's stored calibration when it was fitted with these settings, else one fitted
    on the validation rows and stored; whether it was re-used; and the photo-alone logits of
    the validation rows when they were predicted here."""
    from dermsight.evaluate.data import add_group_columns

    run, opt = s.run, s.opt
    has_meta = run.encoder is not None  # two paths: with the patient's details, photo alone
    want = {"classes": s.classes, "n": int(len(val)), "manifest": val_manifest, "tta": s.tta,
            "method": opt.conformal, "mode": opt.conformal_mode, "target": float(opt.coverage),
            "without_metadata": has_meta}
    stored = None if opt.recalibrate else stored_calibration(run)
    if reusable(stored, want):
        return stored, True, None
    if s.is_val:
        val_frame, val_pred = s.frame, s.pred
    else:
        val_frame = add_group_columns(val)
        val_pred = s.predict(val, "run val (calibration)")
    val_alone = s.predict(val_frame, "run val, photo alone", without_metadata=True) \
        if has_meta else None
    fitted_on = {"split": "val", "n": int(len(val)), "manifest": val_manifest,
                 "source": run.config.data.source, "root": run.config.data.root, "tta": s.tta}
    calibration = fit_and_store(run, val_pred, group_values(val_frame, TONE_COLUMN), opt=opt,
                                fitted_on=fitted_on, alone_pred=val_alone)
    return calibration, False, val_alone


def _notes(scored, overlap: dict, is_val: bool) -> list[str]:
    notes = list(scored.notes)
    if overlap.get("n_group_seen"):
        notes.append(f"{overlap['n_group_seen']} of {overlap['n']} scored images "
                     f"({overlap['share_seen']:.0%}) show a lesion/patient (group_id) that is "
                     "also in the run's training split: see 'Overlap with training' for the "
                     "figures on unseen lesions")
    if is_val:
        notes.append("the scored split IS the run's validation split, on which the temperature "
                     "and conformal thresholds were fitted: ECE after scaling and coverage are "
                     "in-sample here (see the 2-fold cross-fit estimates)")
    return notes


def _data_summary(scored) -> dict:
    summary = scored.summary()
    summary["n_excluded"] = len(summary["excluded"])
    if len(summary["excluded"]) > 100:
        summary["excluded"] = summary["excluded"][:100]
    return summary


def _write(out: Path, s: _Scored, report: dict, probs, sets, panels: dict,
           started: float) -> dict:
    """Write predictions.csv, the figures, report.html and report.json into ``out``
    (atomically); returns the report as written."""
    from dermsight.evaluate import figures, report_html

    classes, frame = s.classes, s.frame
    t0 = time.perf_counter()
    with staging_dir(out, last="report.json") as stage:
        table = pd.DataFrame({"image_id": frame["image_id"].astype(str).to_numpy(),
                              "label": [classes[k] for k in s.y]})
        for k, c in enumerate(classes):
            table[c] = probs[:, k]
        table["prediction"] = [classes[k] for k in probs.argmax(1)]
        table["prediction_set"] = ["|".join(classes[k] for k in np.flatnonzero(row))
                                   for row in sets]
        atomic_write_text(stage / "predictions.csv", table.to_csv(index=False,
                                                                  float_format="%.6g"))
        report["figures"] = figures.write_eval_figures(
            stage / "figures", report, classes=classes, panels=panels,
            gallery_images=gallery_images(s.run, frame, report["galleries"]))
        s.timing["write_seconds"] = round(time.perf_counter() - t0, 1)
        s.timing["total_seconds"] = round(time.perf_counter() - started, 1)
        report["timing"] = s.timing
        report = clean_json(report)
        atomic_write_text(stage / "report.html",
                          report_html.render(report, stage / "figures"))
        atomic_write_text(stage / "report.json", json.dumps(report, indent=2))
    return report


# -- the pipeline ----------------------------------------------------------------------------------
def run_evaluate(run_dir: str | Path, *, source: str, root: str | None,
                 options: EvalOptions | None = None) -> EvalResult:
    """Evaluate the run in ``run_dir`` on ``options.split`` of ``source`` at ``root``; see
    the module docstring. Raises ConfigError / DataError naming what is missing."""
    opt = options or EvalOptions()
    _check_options(opt)
    started = time.perf_counter()
    run_path = Path(run_dir)
    run, tta = _load(run_path, opt)
    classes, timing = list(run.classes), {}

    t0 = time.perf_counter()
    scored = load_scored_set(classes, source=source, root=root, split=opt.split,
                             source_options=opt.source_options, run_config=run.config,
                             workers=max(opt.workers, 1), progress=opt.progress)
    frame = scored.frame
    timing["read_seconds"] = round(time.perf_counter() - t0, 1)
    val_all, val, val_manifest = _validation_rows(run, opt)
    is_val = set(frame["image_uri"]) == set(val["image_uri"])

    t0 = time.perf_counter()
    pred = predict_logits(run, frame, tta=tta, batch_size=opt.batch_size, workers=opt.workers,
                          name=f"{source} {opt.split}", progress=opt.progress)
    timing["predict_seconds"] = round(time.perf_counter() - t0, 1)
    timing["images_per_second"] = round(len(frame) / max(timing["predict_seconds"], 1e-9), 1)
    s = _Scored(run, opt, tta, classes, frame, pred["label"], pred, is_val, timing)

    t0 = time.perf_counter()
    calibration, reused, val_alone = _calibrate(s, val, val_manifest)
    timing["calibration_seconds"] = round(time.perf_counter() - t0, 1)
    probs = softmax(pred["logits"] / calibration.temperature, axis=1)
    report, sets = _sections(s, calibration, reused, val_alone, probs)
    t0 = time.perf_counter()
    explain, panels = ({"skipped": "--no-cam"}, {})
    if opt.cam and opt.cam_samples > 0:
        explain, panels = explain_sample(run, frame, s.y, probs, samples=opt.cam_samples,
                                         seed=opt.seed)
        timing["cam_seconds"] = round(time.perf_counter() - t0, 1)
    galleries = sections.galleries(probs, s.y, frame, classes, sets)
    own_source = source == run.config.data.source
    overlap = sections.overlap_with_train(
        frame, val_all[val_all["split"] == "train"] if own_source else None, s.y, probs)
    without_metadata = report.pop("without_metadata")
    report = {
        "dermsight_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "disclaimer": DISCLAIMER,
        "run": str(run_path), "run_name": run_path.name, "classes": classes,
        "source": source, "split": opt.split, "n": int(len(s.y)), "tta": tta,
        "is_validation_split": is_val, "notes": _notes(scored, overlap, is_val),
        "data": _data_summary(scored), **report,
        "explain": explain, "galleries": galleries, "overlap_with_train": overlap,
        "without_metadata": without_metadata,
    }
    out = Path(opt.out) if opt.out else run_path / f"eval-{source}-{opt.split}"
    report = _write(out, s, report, probs, sets, panels, started)
    return EvalResult(out=out, report=report, calibration=calibration.dump())


def _sections(s: _Scored, calibration: Calibration, reused: bool, val_alone: dict | None,
              probs: np.ndarray) -> tuple[dict, np.ndarray]:
    """The report's metrics, calibration, conformal, fairness and photo-alone sections, and
    the prediction sets of the scored rows."""
    opt, y, frame, logits = s.opt, s.y, s.frame, s.pred["logits"]
    cross_fit = cross_fit_frame(logits, y, frame, opt, s.classes) if s.is_val else None
    calib = sections.calibration_section(y, logits, probs, frame, calibration, reused=reused)
    conformal, sets = sections.conformal_section(conformal_from_calibration(calibration),
                                                 probs, y, frame, s.classes,
                                                 opt.conformal_mode)
    if cross_fit is not None:
        sections.add_cross_fit(calib, conformal, cross_fit)
    without_metadata = None
    if s.run.encoder is not None:
        t0 = time.perf_counter()
        if val_alone is None or not s.is_val:  # the scored rows are not the ones predicted
            val_alone = s.predict(frame, "photo alone", without_metadata=True)
        without_metadata = sections.without_metadata_section(
            val_alone["logits"], y, frame, calibration.path(without_metadata=True), opt=opt,
            classes=s.classes, cross_fit=s.is_val)
        s.timing["without_metadata_seconds"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    fairness = sections.fairness(y, probs, frame, n_resamples=opt.bootstrap, seed=opt.seed)
    s.timing["fairness_seconds"] = round(time.perf_counter() - t0, 1)
    return {"metrics": sections.metrics_section(y, probs, s.classes, s.pred),
            "calibration": calib, "conformal": conformal, "fairness": fairness,
            "fairness_settings": {"n_resamples": opt.bootstrap, "seed": opt.seed, "min_n": 30,
                                  "ci": 0.95, "gap_metric": "accuracy",
                                  "bootstrapped": list(sections.FAIRNESS_METRICS),
                                  "without_ci": ["auroc_macro", "ece"]},
            "without_metadata": without_metadata}, sets
