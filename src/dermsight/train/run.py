"""`dermsight train`: prepared manifest → phased fine-tuning → ``experiments/<run>/``.

Outputs: ``config.yaml`` (resolved), ``metrics.csv`` (one row per epoch and phase),
``report.json`` (validation metrics, per-phase cost), ``figures/`` (learning curves, confusion
matrix), ``checkpoints/best.pt`` (weights + everything needed to rebuild preprocessing and the
metadata encoder; never committed) and ``weights.txt`` (how to rebuild the weights).

Every phase also runs under DDP (``train.devices`` / ``train.num_nodes`` > 1, see
:mod:`dermsight.train.distributed`): global rank 0 prepares the data and writes the run folder
while the other processes wait, phase A's features are cached a share per process and gathered,
and validation is scored on the whole split in every process.
"""

from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from dermsight import __version__, metrics
from dermsight.config import Config, PhaseConfig, dump_config
from dermsight.errors import ConfigError
from dermsight.io import atomic_write_text
from dermsight.manifest import read_manifest
from dermsight.train.distributed import Processes, session
from dermsight.train.feature_cache import autocast, cached_loaders
from dermsight.train.module import DermModule, forward_tta

log = logging.getLogger("dermsight.train")


@dataclass
class TrainResult:
    run_dir: Path
    report: dict


# -- data ---------------------------------------------------------------------------------------
def load_manifest(cfg: Config, *, progress: bool = True) -> pd.DataFrame:
    """Read the prepared manifest, running `prepare` first when it does not exist yet."""
    return read_manifest(ensure_prepared(cfg, progress=progress))


def ensure_prepared(cfg: Config, *, progress: bool = True) -> Path:
    """The prepared folder of ``cfg.data``, running `prepare` first when it has no manifest."""
    folder = cfg.prepared_dir()
    if not (folder / "manifest.parquet").exists():
        from dermsight.prepare.pipeline import run_prepare

        log.info("preparing %s into %s", cfg.data.source, folder)
        run_prepare(cfg.data_prepare(str(folder)), progress=progress)
    return folder


# -- cached features --------------------------------------------------------------------------
# -- metrics history ----------------------------------------------------------------------------
class _History(L.Callback):
    """Collects one row per validation epoch: phase, epoch, train and validation metrics."""

    def __init__(self, phase: str, offset: int, rows: list[dict]) -> None:
        self.phase, self.offset, self.rows = phase, offset, rows
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        row = {"phase": self.phase, "epoch": self.offset + trainer.current_epoch,
               "phase_epoch": trainer.current_epoch,
               "seconds": round(time.perf_counter() - self._t0, 2)}
        for k, v in trainer.callback_metrics.items():
            row[k] = float(v)
        self.rows.append(row)
        self._t0 = time.perf_counter()


def _quiet_lightning() -> None:
    """Keep Lightning's banners and known-harmless warnings out of the user's console."""
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # frozen BatchNorm layers are kept in eval mode on purpose (see DermNet.train)
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # validation metrics are computed on the gathered split, the same in every process
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('val_")
    # inside Lightning's all_gather (torch >= 2.9)
    warnings.filterwarnings("ignore", message=r".*nn.functional.all_gather is deprecated")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- training ------------------------------------------------------------------------------------
def _run_name(cfg: Config) -> str:
    if cfg.train.run_name:
        return cfg.train.run_name
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{cfg.data.source}-{cfg.model.backbone}-{stamp}"


def _ema_callback(decay: float) -> L.Callback:
    """Lightning's EMA of the weights, keeping the last raw weights for a side-by-side check.

    The callback swaps the averaged weights in for validation, puts them in every checkpoint's
    ``state_dict`` and copies them into the model when the phase ends; ``raw_state`` holds the
    model's own weights at that moment.
    """
    from lightning.pytorch.callbacks import EMAWeightAveraging

    class _EMA(EMAWeightAveraging):
        raw_state: dict[str, torch.Tensor] | None = None

        def on_train_end(self, trainer, pl_module) -> None:
            self.raw_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
            super().on_train_end(trainer, pl_module)

    return _EMA(decay=decay)


def _trainer(cfg: Config, phase: PhaseConfig, run_dir: Path, history: _History,
             strategy=None) -> L.Trainer:
    """The phase's Trainer; ``strategy`` (default ``train.strategy``): a fresh one per phase
    (:meth:`~dermsight.train.distributed.Processes.phase_strategy`)."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    t = cfg.train
    callbacks: list[L.Callback] = [history]
    if phase.ema_decay:
        callbacks.append(_ema_callback(phase.ema_decay))
    if phase.early_stop_patience:
        callbacks.append(EarlyStopping(monitor=t.monitor, mode=_mode(t.monitor),
                                       patience=phase.early_stop_patience))
    # The EMA callback writes the averaged weights into full checkpoints only.
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename=f"phase-{phase.name}",
                                 monitor=t.monitor, mode=_mode(t.monitor), save_top_k=1,
                                 save_weights_only=not phase.ema_decay,
                                 enable_version_counter=False)
    callbacks.append(checkpoint)
    return L.Trainer(
        max_epochs=phase.epochs, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=strategy or t.strategy, precision=t.precision,
        deterministic=t.deterministic, callbacks=callbacks, logger=False,
        enable_progress_bar=t.progress_bar, enable_model_summary=False,
        limit_train_batches=t.limit_train_batches, num_sanity_val_steps=0,
        log_every_n_steps=10, default_root_dir=str(run_dir))


def _mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


def _restore_best(module: DermModule, trainer: L.Trainer, processes: Processes) -> None:
    """Load the phase's best weights in every process: global rank 0 wrote the checkpoint
    and reads it (no file system shared between nodes needed) and hands the weights on."""
    def read() -> dict | None:
        path = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if not (path and Path(path).exists()):
            return None
        # a checkpoint this run has just written (a full one, with the optimiser's state and
        # the loops', when EMA is on)
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
        Path(path).unlink()
        return state

    state = processes.rank_zero(read)
    if state is not None:
        module.load_state_dict(state)


@torch.no_grad()
def _score(module: DermModule, loader: DataLoader, precision: str) -> dict[str, float]:
    """Validation metrics of the module's current weights (its own forward: TTA, cache)."""
    module.eval()
    labels, probs = [], []
    with autocast(module, precision):
        for batch in loader:
            out = module(batch)
            labels.append(batch["label"].numpy())
            probs.append(torch.softmax(out["diagnosis"].float(), 1).numpy())
    return metrics.classification_summary(np.concatenate(labels), np.concatenate(probs))


def _ema_check(module: DermModule, trainer: L.Trainer, loader: DataLoader,
               precision: str) -> dict | None:
    """The phase's last averaged weights against its last raw weights, on the same validation
    batches in one run (then the averaged weights are back in place)."""
    ema = next((c for c in trainer.callbacks if hasattr(c, "raw_state")), None)
    if ema is None or ema.raw_state is None:
        return None
    t0 = time.perf_counter()
    averaged = {k: v.detach().clone() for k, v in module.state_dict().items()}
    report = {"last_epoch_ema": _score(module, loader, precision)}
    module.load_state_dict(ema.raw_state)
    report["last_epoch_raw"] = _score(module, loader, precision)
    module.load_state_dict(averaged)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, *, tta: str | bool = "none") -> dict:
    """Probabilities, labels and lighting scores over a loader (eval mode)."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {"label": [], "probs": [], "lighting": [],
                                        "lighting_score": []}
    for batch in loader:
        meta = batch["meta"] if batch["meta"].shape[-1] else None
        res = forward_tta(model, batch["image"], meta, tta)
        out["label"].append(batch["label"].numpy())
        out["probs"].append(torch.softmax(res["diagnosis"], 1).numpy())
        out["lighting"].append(batch["lighting"].numpy())
        if "lighting" in res:
            out["lighting_score"].append(torch.sigmoid(res["lighting"]).numpy())
    return {k: np.concatenate(v) for k, v in out.items() if v}


def run_training(cfg: Config, *, progress: bool = True) -> TrainResult:
    """Train ``cfg`` end to end and write the run folder. See the module docstring.

    With several processes (``train.devices`` x ``train.num_nodes`` > 1) this starts them, or
    joins those torchrun / SLURM started; every process returns the same result."""
    from dermsight.models.backbones import pretrained_cfg

    if not cfg.train.phases:
        raise ConfigError("train.phases is empty: declare at least one phase")
    _quiet_lightning()
    scale_out = session(cfg.train)
    world = scale_out.world_size
    if cfg.data.batch_size % world:
        raise ConfigError(f"data.batch_size={cfg.data.batch_size} is split over {world} "
                          "processes (train.devices x train.num_nodes): make it a multiple")
    # The backbone's weights decide the default preprocessing (fails early on unknown names).
    data_config = pretrained_cfg(cfg.model.backbone, cfg.model.pretrained)
    return scale_out.launch(_train, cfg, data_config, progress)


def _train(processes: Processes, cfg: Config, data_config: dict,
           progress: bool) -> TrainResult:
    from dermsight.data.datamodule import ManifestDataModule
    from dermsight.models import create_model

    run_dir = Path(cfg.train.output_dir) / processes.broadcast(_run_name(cfg))
    if processes.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    torch.use_deterministic_algorithms(cfg.train.deterministic, warn_only=True)

    manifest = read_manifest(processes.rank_zero(ensure_prepared, cfg, progress=progress))
    model_kwargs = dict(backbone=cfg.model.backbone, fusion=cfg.model.fusion,
                        color_calibration=cfg.model.color_calibration,
                        drop_rate=cfg.model.drop_rate, meta_hidden=cfg.model.meta_hidden,
                        meta_dropout=cfg.model.meta_dropout,
                        lighting_head=cfg.model.lighting_head)
    dm = ManifestDataModule.from_config(manifest, cfg.data, data_config, seed=cfg.train.seed)
    dm.batch_size = cfg.data.batch_size // processes.world_size  # per process
    dm.setup("fit")
    meta_dim = dm.encoder.dim_ if dm.encoder is not None else 0
    if meta_dim == 0 and cfg.model.fusion != "none":
        model_kwargs["fusion"] = "none"
    model = create_model(cfg.model.name, num_classes=len(dm.classes), meta_dim=meta_dim,
                         pretrained=cfg.model.pretrained, input_size=cfg.data.input_size,
                         **model_kwargs)
    if cfg.train.init_from:
        _init_from(model, cfg.train.init_from, dm)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    # from the whole train split, in every process
    class_weights = dm.class_weights(cap=cfg.loss.class_weight_cap,
                                     power=cfg.loss.class_weight_power)

    rows: list[dict] = []
    phases_report = []
    epoch_offset = 0
    started = time.perf_counter()
    for k, phase in enumerate(cfg.train.phases):
        if phase.epochs == 0:
            continue
        dm.reseed(cfg.train.seed + 1000 * k)  # fresh augmentation draws in every phase
        model.set_trainable(set(phase.train), top_fraction=phase.top_fraction)
        cached = phase.uses_cache()
        if cached and set(phase.train) != {"heads"}:
            raise ConfigError(f"train.phases[{phase.name}].cached_features needs train: [heads]")
        t0 = time.perf_counter()
        module = DermModule(model, loss=cfg.loss, phase=phase, class_weights=class_weights,
                            cached=cached, tta="none" if cached else cfg.train.tta,
                            channels_last=cfg.train.channels_last)
        history = _History(phase.name, epoch_offset, rows)
        trainer = _trainer(cfg, phase, run_dir, history, processes.phase_strategy())
        if cached:
            train_loader, val_loader = cached_loaders(model, dm, cfg, progress, processes)
        else:
            # The train loader's sampler draws each epoch's order from (seed, epoch): every
            # process takes its share of that order (Lightning's own wrapper would shuffle it
            # again), so the processes' batches together are the one-process run's batches.
            # Lightning shares out the validation images.
            train_loader, val_loader = processes.shard(dm.train_dataloader()), dm.val_dataloader()
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
        ema = processes.rank_zero(_ema_check, module, trainer, val_loader, cfg.train.precision)
        _restore_best(module, trainer, processes)
        # the side-by-side EMA check is not training time
        seconds = time.perf_counter() - t0 - (ema["seconds"] if ema else 0.0)
        n_seen = len(dm.train_set) * (trainer.current_epoch or phase.epochs)
        phases_report.append({
            "name": phase.name, "train": phase.train, "cached_features": cached,
            "epochs_run": int(trainer.current_epoch), "seconds": round(seconds, 1),
            "train_images_per_s": round(n_seen / max(seconds, 1e-9), 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)})
        if ema:
            phases_report[-1]["ema"] = {"decay": phase.ema_decay, **ema}
        epoch_offset += trainer.current_epoch

    checks = sum(p.get("ema", {}).get("seconds", 0.0) for p in phases_report)
    seconds = time.perf_counter() - started - checks
    report = processes.rank_zero(_write_run, run_dir, cfg, model, dm, phases_report, rows,
                                 seconds, model_kwargs, meta_dim, processes.world_size)
    return TrainResult(run_dir=run_dir, report=report)


def _write_run(run_dir: Path, cfg: Config, model, dm, phases: list[dict], rows: list[dict],
               seconds: float, model_kwargs: dict, meta_dim: int, world_size: int) -> dict:
    """Score the final weights and write the run folder (global rank 0 only)."""
    from dermsight.train.figures import write_training_figures

    report = _final_report(cfg, model, dm, phases, seconds)
    report["processes"] = world_size
    _save_checkpoint(run_dir, model, dm, cfg, model_kwargs, meta_dim)
    history = pd.DataFrame(rows)
    atomic_write_text(run_dir / "metrics.csv", history.to_csv(index=False))
    report["figures"] = write_training_figures(history, report, run_dir / "figures",
                                               classes=dm.classes)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(run_dir / "weights.txt", _weights_note(cfg, run_dir))
    return report


def _final_report(cfg: Config, model, dm, phases: list[dict], seconds: float) -> dict:
    val = predict(model, dm.val_dataloader(), tta=cfg.train.tta)
    summary = metrics.classification_summary(val["label"], val["probs"])
    per_auc = metrics.auroc_per_class(val["label"], val["probs"])
    report = {
        "dermsight_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "split": "val",
        "classes": list(dm.classes),
        "n_train": len(dm.train_set), "n_val": len(dm.val_set),
        "metrics": summary,
        "auroc_per_class": {c: (None if np.isnan(a) else float(a))
                            for c, a in zip(dm.classes, per_auc)},
        "confusion": metrics.confusion(val["label"], val["probs"]).tolist(),
        "phases": phases,
        "train_seconds": round(seconds, 1),
    }
    if "lighting_score" in val:
        # Validation photos that prepare found well lit, half of them degraded (seeded) on the
        # fly: the target is whether the photo was degraded.
        degraded = predict(model, dm.val_dataloader(degrade_p=0.5))
        keep = dm.val_set.lighting == 0
        report["lighting_degraded_val"] = {
            "n": int(keep.sum()), "n_degraded": int(degraded["lighting"][keep].sum()),
            "auroc": metrics.binary_auroc(degraded["lighting"][keep],
                                          degraded["lighting_score"][keep])}
    return report


def _init_from(model: torch.nn.Module, source: str, dm) -> None:
    """Load the weights of an earlier run whose classes and inputs match this one."""
    path = Path(source)
    if path.is_dir():
        path = path / "checkpoints" / "best.pt"
    if not path.is_file():
        raise ConfigError(f"train.init_from: no checkpoint at {path}")
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if list(payload["classes"]) != list(dm.classes):
        raise ConfigError(f"train.init_from: {path} has classes {payload['classes']}, "
                          f"this run has {list(dm.classes)}")
    encoder = dm.encoder.to_dict() if dm.encoder is not None else None
    if payload.get("encoder") != encoder:
        raise ConfigError(f"train.init_from: {path} encodes metadata differently from this run "
                          "(data.metadata must match)")
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(f"train.init_from: {path} does not fit this model "
                          f"(model.* must match): {exc}") from exc


def _save_checkpoint(run_dir: Path, model, dm, cfg: Config, model_kwargs: dict,
                     meta_dim: int) -> None:
    path = run_dir / "checkpoints" / "best.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "dermsight_version": __version__,
        "model": {"name": cfg.model.name, "num_classes": len(dm.classes), "meta_dim": meta_dim,
                  "input_size": list(model.data_config["input_size"][1:]), **model_kwargs},
        "state_dict": {k: v.contiguous() for k, v in model.state_dict().items()},
        "classes": list(dm.classes),
        "preprocess": dm.preprocess.to_dict(),
        "encoder": dm.encoder.to_dict() if dm.encoder is not None else None,
    }
    tmp = path.with_suffix(".pt.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def _weights_note(cfg: Config, run_dir: Path) -> str:
    pretrained = cfg.model.pretrained
    if cfg.train.init_from:
        origin = (f"Model: {cfg.model.backbone}, initialised from the weights of the earlier run "
                  f"{cfg.train.init_from} (train.init_from): rebuild that run first, as its own "
                  "weights.txt says.")
    else:
        weights = "the packaged ImageNet weights" if pretrained is True else (
            "random initialisation" if pretrained is False else str(pretrained))
        origin = f"Backbone: {cfg.model.backbone}, initialised from {weights}."
    return (
        "The weights of this run are in checkpoints/best.pt, which is never committed.\n"
        "Rebuild them with the project's own code (same seed, same metrics):\n\n"
        f"    dermsight train --config {run_dir / 'config.yaml'} --run-name {run_dir.name}\n\n"
        f"{origin}\n")
