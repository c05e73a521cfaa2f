"""The LightningModule: multitask losses, validation metrics, one optimiser per phase.

A batch is a dict from ``dermsight.data``: ``image`` [B,3,H,W] (or ``features`` [B,F] when a
phase trains on cached backbone features), ``meta`` [B,M], ``target`` [B,C] soft or one-hot,
``label`` [B], ``lighting`` [B] (1 = poor photo, NaN = unknown).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from dermsight import metrics
from dermsight.config import LossConfig, PhaseConfig, tta_mode
from dermsight.train.distributed import merge_shards


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *,
                       class_weights: torch.Tensor | None = None,
                       label_smoothing: float = 0.0,
                       sample_weight: torch.Tensor | None = None,
                       across: Callable[[torch.Tensor], torch.Tensor] | None = None
                       ) -> torch.Tensor:
    """Cross-entropy against soft targets [B,C] (one-hot works too), optionally class-weighted.

    Class weights scale each sample by the weight of its target distribution
    (``sum_c w_c · t_c``), ``sample_weight`` [B] multiplies that (0 leaves a sample out), and the
    loss is normalised by the sum of the sample weights (0 when they are all 0).

    ``across`` (DDP) turns the batch's sum of sample weights into the normaliser: the mean of
    every process's sum makes each process's loss its share of the loss of all the processes'
    batches together, whose gradient DDP's average of the processes' gradients then is.
    """
    num_classes = logits.shape[1]
    if label_smoothing:
        target = target * (1 - label_smoothing) + label_smoothing / num_classes
    per_sample = -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)
    if class_weights is None and sample_weight is None and across is None:
        return per_sample.mean()
    w = (target * class_weights[None, :]).sum(dim=1) if class_weights is not None \
        else torch.ones_like(per_sample)
    if sample_weight is not None:
        w = w * sample_weight
    total = w.sum() if across is None else across(w.sum().detach())
    return (w * per_sample).sum() / total.clamp_min(1e-8)


def tta_views(image: torch.Tensor, tta: str | bool | None) -> list[torch.Tensor]:
    """The views of a batch ``(N, C, H, W)`` that test-time augmentation ``tta`` averages over
    (:func:`~dermsight.config.tta_mode`); the first is the batch itself."""
    mode = tta_mode(tta)
    views = [image]
    if mode == "none":
        return views
    views.append(torch.flip(image, dims=[3]))
    if mode in ("flips", "d4"):
        views += [torch.flip(image, dims=[2]), torch.flip(image, dims=[2, 3])]
    if mode == "d4":
        if image.shape[2] != image.shape[3]:
            raise ValueError(f"d4 test-time augmentation needs square images, got "
                             f"{tuple(image.shape[2:])}")
        views += [v.transpose(2, 3) for v in views]
    return views


def forward_tta(model: torch.nn.Module, image: torch.Tensor, meta: torch.Tensor | None,
                tta: str | bool | None) -> dict[str, torch.Tensor]:
    """``model(image, meta)``, its outputs (logits) averaged over the views of
    :func:`tta_views` (one forward pass per view)."""
    views = tta_views(image, tta)
    layout = torch.channels_last if image.is_contiguous(memory_format=torch.channels_last) \
        else torch.contiguous_format  # a transposed view keeps the batch's memory layout
    out = model(views[0], meta)
    for view in views[1:]:
        more = model(view.contiguous(memory_format=layout), meta)
        out = {k: out[k] + more[k] for k in out}
    return {k: v / len(views) for k, v in out.items()} if len(views) > 1 else out


def lighting_loss(logit: torch.Tensor, target: torch.Tensor, *,
                  across: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Binary cross-entropy over the samples whose lighting target is known (not NaN).

    ``across`` (DDP) turns the batch's count of known targets into the normaliser, as in
    :func:`soft_cross_entropy` (then it runs in every process, whatever its batch)."""
    known = torch.isfinite(target)
    if across is not None:
        n = across(known.sum().float())
        return F.binary_cross_entropy_with_logits(logit[known], target[known],
                                                  reduction="sum") / n.clamp_min(1e-8)
    if not known.any():
        return logit.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logit[known], target[known])


class DermModule(L.LightningModule):
    """Trains a ``DermNet`` for one phase. ``cached=True``: batches carry ``features``."""

    def __init__(self, model: torch.nn.Module, *, loss: LossConfig, phase: PhaseConfig,
                 class_weights: np.ndarray | None = None, cached: bool = False,
                 tta: str | bool = "none", channels_last: bool = False) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last
        self.loss_cfg = loss
        self.phase = phase
        self.cached = cached
        self.tta = tta_mode(tta)
        weights = torch.as_tensor(class_weights, dtype=torch.float32) \
            if class_weights is not None and loss.class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self._val: list[dict[str, np.ndarray]] = []

    # -- forward -----------------------------------------------------------------------------
    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        meta = batch.get("meta")
        if meta is not None and meta.shape[-1] == 0:
            meta = None
        if self.cached:
            return self.model.forward_head(batch["features"], meta)
        image = batch["image"]
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        return forward_tta(self.model, image, meta, "none" if self.training else self.tta)

    def _losses(self, out: dict, batch: dict,
                across: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> dict[str, torch.Tensor]:
        """The weighted losses of a batch; ``across``: see :func:`soft_cross_entropy`."""
        cfg = self.loss_cfg
        keep = None
        if self.training and not cfg.diagnosis_on_degraded and "degraded" in batch:
            keep = 1.0 - batch["degraded"].float()  # a ruined photo teaches lighting only
        losses = {"diagnosis": soft_cross_entropy(
            out["diagnosis"], batch["target"], class_weights=self.class_weights,
            label_smoothing=cfg.label_smoothing if self.training else 0.0, sample_weight=keep,
            across=across)}
        total = cfg.diagnosis_weight * losses["diagnosis"]
        if "lighting" in out and cfg.lighting_weight:
            losses["lighting"] = lighting_loss(out["lighting"].float(), batch["lighting"],
                                               across=across)
            total = total + cfg.lighting_weight * losses["lighting"]
        color = getattr(self.model, "color", None)
        if color is not None and cfg.color_l2 and not self.cached:
            total = total + cfg.color_l2 * color.penalty()
        losses["total"] = total
        return losses

    # -- steps -------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        # Lightning keeps whatever mode the module was left in (phase A's feature caching and
        # the scoring between phases leave it in eval mode), which would switch off dropout and
        # the whole-record metadata dropout that teaches the photo-alone path. DermNet.train
        # keeps the BatchNorm layers of frozen parts in eval mode.
        self.model.train()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        across = None
        if self.trainer.world_size > 1:
            # normalise by the mean over the processes of a per-batch sum (see soft_cross_entropy)
            def across(total: torch.Tensor) -> torch.Tensor:
                return self.trainer.strategy.reduce(total, reduce_op="mean")
        losses = self._losses(self(batch), batch, across)
        n = len(batch["label"])
        for name, value in losses.items():
            self.log(f"train_loss_{name}" if name != "total" else "train_loss", value,
                     on_step=False, on_epoch=True, batch_size=n, prog_bar=name == "total",
                     sync_dist=True)  # averaged over the processes once per epoch
        return losses["total"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self(batch)
        record = {k: batch[k] for k in ("index", "label", "target", "lighting") if k in batch}
        record["diagnosis"] = out["diagnosis"].float()
        if "lighting" in out:
            record["lighting_logit"] = out["lighting"].float()
        self._val.append({k: v.detach() for k, v in record.items()})

    def on_validation_epoch_end(self) -> None:
        """Metrics and loss of the whole validation split, the same in every process: each
        process scores its share, and the shares are gathered (in sample order, without the
        repeats that even them out) before anything is computed."""
        if not self._val:
            return
        rows = {k: torch.cat([r[k] for r in self._val]) for k in self._val[0]}
        self._val.clear()
        if self.trainer.world_size > 1:
            rows = merge_shards(self.all_gather(rows))
        out = {"diagnosis": rows["diagnosis"]}
        if "lighting_logit" in rows:
            out["lighting"] = rows["lighting_logit"]
        self.log("val_loss", self._losses(out, rows)["total"])
        label = rows["label"].cpu().numpy()
        probs = torch.softmax(rows["diagnosis"], 1).cpu().numpy()
        summary = metrics.classification_summary(label, probs)
        for name, value in summary.items():
            self.log(f"val_{name}", value, prog_bar=name in ("accuracy", "balanced_accuracy"))
        if "lighting_logit" in rows:
            auc = metrics.binary_auroc(rows["lighting"].cpu().numpy(),
                                       torch.sigmoid(rows["lighting_logit"]).cpu().numpy())
            if np.isfinite(auc):
                self.log("val_lighting_auroc", auc)

    # -- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        phase = self.phase
        opt = torch.optim.AdamW(params, lr=phase.lr, weight_decay=phase.weight_decay)
        if phase.schedule == "constant":
            return opt
        if phase.schedule == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.3,
                                                               patience=1)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched,
                                                       "monitor": "val_balanced_accuracy"}}
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = one_cycle(opt, max_lr=phase.lr, total_steps=total,
                          warmup_fraction=phase.warmup_fraction)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def one_cycle(opt: torch.optim.Optimizer, *, max_lr: float, total_steps: int,
              warmup_fraction: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """Cosine one-cycle over ``total_steps``, warming up for ``warmup_fraction`` of them.

    torch's OneCycleLR divides by zero at its first step when ``warmup_fraction × total_steps``
    is exactly 1 (e.g. 0.1 × 10 steps); the fraction is nudged off that point.
    """
    pct = max(warmup_fraction, 1e-3)
    if float(pct * total_steps) - 1 == 0:
        pct *= 1 + 1e-6
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total_steps,
                                               pct_start=pct, anneal_strategy="cos")
