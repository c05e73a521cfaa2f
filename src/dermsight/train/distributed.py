"""Scale-out: one set of processes, connected once, for every phase of `dermsight train`.

Lightning's Trainer starts its processes and connects them inside ``fit``, which a run calls once
per phase, and some of a run's work lies outside any ``fit`` (preparing the data, caching phase
A's features, writing the run folder). :func:`session` therefore checks the scale-out keys
(``train.accelerator``, ``train.devices``, ``train.num_nodes``, ``train.strategy``,
``train.process_group_backend``) before any work, naming the key at fault, and
:meth:`Session.launch` does once what the first ``fit`` would: it starts the processes with the
strategy's own launcher (Lightning re-runs the command line for ``train.devices=N``; under
torchrun or SLURM they exist already) and connects them (``strategy.setup_environment``). Each
phase's Trainer then joins that process group with a DDP wrapper of its own
(:meth:`Processes.phase_strategy`).

Inside a run, :class:`Processes` holds what the phases share: which process writes (global rank
0: :meth:`Processes.rank_zero` runs a function there and hands its result, or its error, to every
process), and how a loader's samples are split across the processes and gathered back in sample
order (:meth:`Processes.shard`, :func:`merge_shards`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader

from dermsight.config import TrainConfig
from dermsight.errors import ConfigError, DermsightError

T = TypeVar("T")

_SCALE_OUT_KEYS = ("devices", "num_nodes", "precision", "strategy", "accelerator")


def merge_shards(gathered: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rows gathered from every process (``[world, n, ...]`` each, as ``all_gather`` returns
    them) as one set in sample order: ``gathered["index"]`` numbers the samples, and the
    repeats that even out the shards (``DistributedSampler`` pads the last ones) are dropped."""
    rows = {k: v.flatten(0, 1) for k, v in gathered.items()}
    _, first = np.unique(rows["index"].cpu().numpy(), return_index=True)
    keep = torch.as_tensor(first, device=rows["index"].device)
    return {k: v[keep] for k, v in rows.items()}


@dataclass
class Processes:
    """The processes of one run (one, or those of a DDP session), seen from one of them."""

    strategy: Any  # lightning.pytorch.strategies.Strategy, connected
    train: TrainConfig

    @property
    def distributed(self) -> bool:
        from lightning.pytorch.strategies import DDPStrategy

        return isinstance(self.strategy, DDPStrategy)

    @property
    def world_size(self) -> int:
        return getattr(self.strategy, "world_size", 1)  # a single-device strategy has none

    @property
    def global_rank(self) -> int:
        return getattr(self.strategy, "global_rank", 0)

    @property
    def is_global_zero(self) -> bool:
        return self.strategy.is_global_zero

    @property
    def root_device(self) -> torch.device:
        return self.strategy.root_device

    def phase_strategy(self) -> Any:
        """A fresh strategy for one phase's Trainer: the configured one, or for DDP a wrapper
        built around what this phase trains (see :func:`_ddp`)."""
        return _ddp(self.train) if self.distributed else self.train.strategy

    def barrier(self) -> None:
        self.strategy.barrier()

    def broadcast(self, obj: T) -> T:
        """Global rank 0's ``obj`` on every process."""
        return self.strategy.broadcast(obj, src=0)

    def rank_zero(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``function(*args, **kwargs)`` on global rank 0 only (e.g. writing the run folder),
        the others waiting; every process returns its result, or raises its error."""
        result, error = None, None
        if self.is_global_zero:
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                if self.world_size == 1:
                    raise
                error = exc
        if self.world_size > 1:
            shared = error if isinstance(error, DermsightError) or error is None else \
                RuntimeError(f"global rank 0 failed: {error!r}")
            result, shared = self.broadcast((result, shared))
            if error is not None:
                raise error
            if shared is not None:
                raise shared
        return result

    def shard(self, loader: DataLoader) -> DataLoader:
        """This process's share of ``loader``'s samples, in the loader's order: Lightning's
        ``DistributedSamplerWrapper`` takes every ``world_size``-th one (the last few repeated so
        that every process has as many; :func:`merge_shards` drops them again)."""
        if self.world_size == 1:
            return loader
        from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

        sampler = DistributedSamplerWrapper(loader.sampler, num_replicas=self.world_size,
                                            rank=self.global_rank, shuffle=False)
        return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                          num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                          collate_fn=loader.collate_fn,
                          persistent_workers=loader.persistent_workers)

    def gather(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Every process's rows of :meth:`shard`'s samples (with ``rows["index"]``), merged in
        sample order on every process (on the CPU)."""
        if self.world_size == 1:
            return rows
        device = self.root_device  # nccl gathers tensors on the GPU
        gathered = {k: self.strategy.all_gather(v.to(device)) for k, v in rows.items()}
        return {k: v.cpu() for k, v in merge_shards(gathered).items()}


@dataclass
class Session:
    """Checked scale-out settings, not yet launched (see :func:`session`)."""

    strategy: Any
    train: TrainConfig

    @property
    def world_size(self) -> int:
        return getattr(self.strategy, "world_size", 1)

    def launch(self, function: Callable[..., T], *args: Any) -> T:
        """``function(processes, *args)`` in every process of the session, connected.

        Processes this call starts are stopped when this one fails, and waited for when it
        returns (the run folder is complete once the command returns)."""
        processes = Processes(self.strategy, self.train)
        launcher = self.strategy.launcher if processes.distributed else None
        if launcher is None:
            return function(processes, *args)

        def connected() -> T:
            self.strategy.setup_environment()  # torch.distributed.init_process_group
            try:
                result = function(processes, *args)
            except BaseException:
                if getattr(launcher, "procs", None):
                    launcher.kill(signal.SIGKILL)
                raise
            finally:
                torch.distributed.destroy_process_group()
            for proc in getattr(launcher, "procs", []):
                proc.wait()
            return result

        return launcher.launch(connected)


def _ddp(train: TrainConfig) -> Any:
    """DDP over the parameters a phase trains (each phase's Trainer wraps the model anew, after
    the phase has frozen the rest; frozen parameters are not DDP's). ``static_graph``: a phase's
    forward uses the same parameters at every step, so a trainable one it never reaches (the
    learned no-metadata embedding, say, while metadata dropout is off) is found at the first
    step, not searched for at every step as ``find_unused_parameters`` does."""
    from lightning.pytorch.strategies import DDPStrategy

    return DDPStrategy(process_group_backend=train.process_group_backend, static_graph=True,
                       find_unused_parameters=train.strategy.endswith("_true"))


def session(train: TrainConfig) -> Session:
    """Check ``train``'s scale-out keys against this machine (and against torchrun's or SLURM's
    process counts when they started this process); raises ConfigError naming the key."""
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.strategies import DDPStrategy

    _check_accelerator(train.accelerator)

    def build(strategy: Any) -> Any:
        try:
            trainer = L.Trainer(accelerator=train.accelerator, devices=train.devices,
                                num_nodes=train.num_nodes, strategy=strategy,
                                precision=train.precision, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False)
        except (MisconfigurationException, ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(f"{_at_fault(str(exc), train)}: {exc}") from None  # Lightning's
        return trainer.strategy

    strategy = build("auto" if train.strategy == "auto" else _ddp(train))
    if train.strategy == "auto" and isinstance(strategy, DDPStrategy):
        strategy = build(_ddp(train))  # auto picked ddp: several processes
    if isinstance(strategy, DDPStrategy):
        _check_backend(train.process_group_backend, strategy.root_device)
        try:
            strategy.cluster_environment.validate_settings(
                num_devices=len(strategy.parallel_devices), num_nodes=strategy.num_nodes)
        except ValueError as exc:  # torchrun / SLURM started another number of processes
            raise ConfigError(f"train.devices={train.devices}, train.num_nodes="
                              f"{train.num_nodes}: {exc}") from None
    return Session(strategy, train)


def _at_fault(message: str, train: TrainConfig) -> str:
    """The ``train.*`` key(s) a Lightning error message is about, with their values."""
    keys = [k for k in _SCALE_OUT_KEYS if k in message.lower()][:1] or _SCALE_OUT_KEYS
    return ", ".join(f"train.{k}={getattr(train, k)}" for k in keys)


def _check_accelerator(name: str) -> None:
    from lightning.pytorch.accelerators import (
        AcceleratorRegistry,
        CUDAAccelerator,
        MPSAccelerator,
    )

    if name == "auto":
        return
    known = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if name == "gpu":
        available = CUDAAccelerator.is_available() or MPSAccelerator.is_available()
    elif name in known:
        try:
            available = AcceleratorRegistry[name]["accelerator"].is_available()
        except (ImportError, RuntimeError):  # e.g. tpu without torch_xla
            available = False
    else:
        raise ConfigError(f"train.accelerator: unknown accelerator {name!r}; known: "
                          f"{', '.join(known)}")
    if not available:
        device = "GPU" if name == "gpu" else name
        raise ConfigError(f"train.accelerator={name}: Lightning finds no {device} device on this "
                          "machine (train.accelerator=cpu or auto runs here)")


def _check_backend(backend: str | None, device: torch.device) -> None:
    if backend is None:
        return
    if not torch.distributed.is_backend_available(backend):
        raise ConfigError(f"train.process_group_backend={backend}: this PyTorch build has no "
                          f"{backend} backend")
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"train.process_group_backend=nccl needs CUDA GPUs, and this run's "
                          f"processes run on {device.type} (train.accelerator); use gloo there")
