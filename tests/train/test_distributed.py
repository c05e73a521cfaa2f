"""`dermsight train` under DDP: two processes on the CPU (gloo), started each way the README's
Scale-out section shows, against the one-process run of the same config; and the scale-out
settings a machine cannot run, refused before any work."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from dermsight.config import load_config
from dermsight.data.dataset import EpochSampler
from dermsight.errors import ConfigError
from dermsight.train.distributed import Processes, merge_shards
from dermsight.train.module import lighting_loss, soft_cross_entropy
from dermsight.train.run import run_training

PROJECT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The README's commands (Scale-out), as the tests run them.
DDP = ("dermsight train --config configs/quickstart.yaml train.devices=2 train.strategy=ddp "
       "train.accelerator=cpu")
TORCHRUN = ("torchrun --standalone --nproc-per-node 2 -m dermsight train --config "
            "configs/quickstart.yaml train.devices=2 train.strategy=ddp train.accelerator=cpu")
NODE = ("torchrun --nnodes 2 --node-rank {rank} --nproc-per-node 1 --master-addr 127.0.0.1 "
        "--master-port 29500 -m dermsight train --config configs/quickstart.yaml "
        "train.num_nodes=2 train.devices=1 train.strategy=ddp train.accelerator=cpu")
ONE = "dermsight train --config configs/quickstart.yaml"

# The quickstart config on a small synthetic set: 62 training images (phase A takes them all in
# one step; two processes get 31 each), 12 validation images.
# Dropout is off: each process draws its own dropout masks, so with it on the two runs would
# differ by design rather than by float rounding, and the comparison would test nothing.
TINY = ["data.source_options={n_patients: 30, size: 64, seed: 0}", "data.input_size=[64, 64]",
        "train.progress_bar=false", "model.drop_rate=0", "model.meta_dropout=0"]
# Both runs train on the same batches in the same order (phase A: one batch per epoch; then the
# processes share out the one-process order). What remains is float rounding (each process's
# batch is half the size, the gradient sum is split in two), which over the 20 epochs moves the
# validation metrics by at most about one of the 12 images: 0.1 on each, and on balanced
# accuracy one image of the smallest class (1 / (classes x its images), 0.125 with 2 of 4).
TOLERANCE = 0.1
METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "auroc_macro")


def tolerances(prepared: Path) -> dict[str, float]:
    """What one validation image can move each metric by (at least :data:`TOLERANCE`)."""
    manifest = pd.read_parquet(prepared / "manifest.parquet")
    counts = manifest.loc[manifest["split"] == "val", "label"].value_counts()
    one_of_smallest = 1.0 / (len(counts) * counts.min())
    return {**dict.fromkeys(METRICS, TOLERANCE),
            "balanced_accuracy": max(TOLERANCE, one_of_smallest + 1e-9)}


def readme_scale_out_commands() -> list[str]:
    """The command lines of the README's Scale-out block (continuations joined, comments
    dropped)."""
    text = (PROJECT / "README.md").read_text()
    block = text.split("**Scale-out**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    lines = (line.split("#", 1)[0].strip() for line in joined.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_readme_scale_out_commands_are_the_tested_ones():
    commands = readme_scale_out_commands()
    for command in (DDP, TORCHRUN, NODE.format(rank=0), NODE.format(rank=1)):
        assert command in commands


def _overrides(base: Path, name: str) -> list[str]:
    return [*TINY, f"data.root={base / 'synthetic'}", f"data.prepared={base / 'prepared'}",
            f"train.output_dir={base / name}", f"train.run_name={name}"]


def _start(command: str, base: Path, name: str, port: int | None = None) -> subprocess.Popen:
    args = shlex.split(command.replace("29500", str(port)) if port else command)
    args = [str(BIN / args[0]), *args[1:], *_overrides(base, name)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.Popen(args, cwd=PROJECT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _finish(*procs: subprocess.Popen) -> list[str]:
    """Wait for ``procs`` (stopping them all when one hangs); each must have succeeded.
    Returns their outputs."""
    outs = []
    try:
        for proc in procs:
            outs.append(proc.communicate(timeout=900)[0])
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # torchrun passes it on to the processes it started
                proc.communicate(timeout=60)
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-4000:]
    return outs


def _run(command: str, base: Path, name: str) -> Path:
    (out,) = _finish(_start(command, base, name))
    assert out.count(f"trained {name}:") == 1, out[-4000:]  # rank 0 alone says so
    return base / name / name


@pytest.fixture(scope="session")
def one_process(tmp_path_factory) -> tuple[Path, Path]:
    """(data folder, run folder) of the one-process run; the data are prepared there once."""
    base = tmp_path_factory.mktemp("ddp")
    return base, _run(ONE, base, "one")


def _check_two_process_run(run: Path, baseline: Path, prepared: Path) -> None:
    # one run folder, written once (the other process wrote nothing beside it)
    assert [p.name for p in run.parent.iterdir()] == [run.name]
    for name in ("config.yaml", "metrics.csv", "report.json", "weights.txt",
                 "figures/learning_curves.png", "figures/confusion_matrix.png"):
        assert (run / name).is_file(), name
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["best.pt"]
    report = json.loads((run / "report.json").read_text())
    base = json.loads((baseline / "report.json").read_text())
    assert report["processes"] == 2 and base["processes"] == 1
    assert (report["n_train"], report["n_val"]) == (base["n_train"], base["n_val"])

    # one row per epoch, the same epochs as the one-process run
    history, base_history = (pd.read_csv(r / "metrics.csv") for r in (run, baseline))
    assert history[["phase", "epoch"]].equals(base_history[["phase", "epoch"]])

    # validation during training scores the whole split: the final report (global rank 0
    # scoring the restored best weights on all the validation images alone) is the best
    # epoch's logged validation
    last = history[history["phase"] == history["phase"].iloc[-1]]
    best = last.loc[last["val_balanced_accuracy"].idxmax()]
    for name in METRICS:
        assert report["metrics"][name] == pytest.approx(best[f"val_{name}"], abs=1e-6), name

    # the seeded run of the same config, within about one validation image
    tolerance = tolerances(prepared)
    for name in METRICS:
        assert abs(report["metrics"][name] - base["metrics"][name]) <= tolerance[name], name


@pytest.mark.slow
def test_ddp_run_matches_the_one_process_run(one_process):
    base, baseline = one_process
    _check_two_process_run(_run(DDP, base, "ddp"), baseline, base / "prepared")


@pytest.mark.slow
def test_torchrun_run_matches_the_one_process_run(one_process):
    base, baseline = one_process
    _check_two_process_run(_run(TORCHRUN, base, "torchrun"), baseline, base / "prepared")


@pytest.mark.slow
def test_two_nodes_on_loopback_match_the_one_process_run(one_process):
    base, baseline = one_process
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    nodes = [_start(NODE.format(rank=rank), base, "nodes", port) for rank in (0, 1)]
    _finish(*nodes)
    _check_two_process_run(base / "nodes" / "nodes", baseline, base / "prepared")


# -- the pieces, in one process -----------------------------------------------------------------
def _processes(rank: int, world: int = 2) -> Processes:
    return Processes(SimpleNamespace(world_size=world, global_rank=rank), train=None)


class _Keys(Dataset):
    """Returns the sampler's keys: ``(index, epoch)``."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key):
        return key


@pytest.mark.parametrize("weights", [None, np.linspace(0.2, 3.0, 10)],
                         ids=["shuffle", "balanced"])
def test_each_steps_shares_are_the_one_process_batch(weights):
    """Every epoch, the processes' k-th batches together are the one-process run's k-th batch
    (of the sampler's seeded shuffle, or of its balanced draw with replacement)."""
    orders = []
    for epoch in (0, 1):
        sampler = EpochSampler(10, seed=3, weights=weights)
        sampler.set_epoch(epoch)
        one = [sorted(b[0].tolist()) for b in DataLoader(_Keys(), batch_size=4,
                                                        sampler=sampler)]
        shares = []
        for rank in (0, 1):
            loader = _processes(rank).shard(DataLoader(
                _Keys(), batch_size=2, sampler=EpochSampler(10, seed=3, weights=weights)))
            loader.sampler.set_epoch(epoch)  # as Lightning does at every epoch start
            shares.append([b[0].tolist() for b in loader])
        assert [sorted(a + b) for a, b in zip(*shares, strict=True)] == one
        orders.append(one)
    assert orders[0] != orders[1]


def test_merge_shards_restores_the_sample_order_without_the_padding():
    # 5 samples over 2 processes: DistributedSampler gives [0, 2, 4] and [1, 3, 0]
    index = torch.tensor([[0, 2, 4], [1, 3, 0]])
    gathered = {"index": index, "value": index.float()[..., None] * 10}
    merged = merge_shards(gathered)
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["value"][:, 0].tolist() == [0, 10, 20, 30, 40]


def test_losses_across_processes_are_the_whole_batch_loss():
    """With ``across`` (the mean of the processes' sums, as all_reduce gives it), the mean of two
    halves' losses, and of their gradients (what DDP averages), is the whole batch's."""
    torch.manual_seed(0)
    logits = torch.randn(8, 3, requires_grad=True)
    target = F.one_hot(torch.tensor([0, 0, 0, 1, 2, 2, 1, 0]), 3).float()
    weights = torch.tensor([0.5, 2.0, 3.0])
    keep = torch.tensor([1.0, 1, 0, 1, 1, 1, 0, 1])
    light = torch.tensor([1.0, float("nan"), 0, float("nan"), float("nan"), 1, 0, 1])
    halves = (slice(0, 4), slice(4, 8))

    def loss(part=slice(None), ce=None, bce=None):
        return (soft_cross_entropy(logits[part], target[part], class_weights=weights,
                                   sample_weight=keep[part], label_smoothing=0.1, across=ce)
                + lighting_loss(logits[part, 0], light[part], across=bce))

    sums = {"ce": [], "bce": []}  # each half's own sums, then their mean for both
    for part in halves:
        loss(part, ce=lambda v: sums["ce"].append(v) or v,
             bce=lambda v: sums["bce"].append(v) or v)
    mean = {k: torch.stack(v).mean() for k, v in sums.items()}
    shared = sum(loss(part, ce=lambda _: mean["ce"], bce=lambda _: mean["bce"])
                 for part in halves) / 2
    whole = loss()
    assert torch.isclose(shared, whole, atol=1e-6)
    (grad_shared,) = torch.autograd.grad(shared, logits)
    (grad_whole,) = torch.autograd.grad(whole, logits)
    assert torch.allclose(grad_shared, grad_whole, atol=1e-6)
    assert mean["ce"] != sums["ce"][0]  # the halves differ: the test means something


# -- settings the machine cannot run --------------------------------------------------------------
TINY_CPU = ["data.source=synthetic", "data.num_workers=0", "model.pretrained=false",
            "train.progress_bar=false"]


def _cfg(tmp_path, *extra):
    return load_config(None, [*TINY_CPU, f"data.root={tmp_path / 'synthetic'}",
                              f"data.prepared={tmp_path / 'prepared'}",
                              f"train.output_dir={tmp_path / 'experiments'}", *extra])


@pytest.mark.parametrize("overrides, key", [
    (["train.accelerator=gpu"], "train.accelerator"),
    (["train.accelerator=quantum"], "train.accelerator"),
    (["train.accelerator=cpu", "train.devices=0"], "train.devices"),
    (["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp",
      "train.process_group_backend=nccl"], "train.process_group_backend"),
    (["train.accelerator=cpu", "train.devices=2", "train.strategy=ddp", "data.batch_size=15"],
     "data.batch_size"),
], ids=["gpu-without-gpu", "unknown-accelerator", "no-devices", "nccl-on-cpu",
        "batch-not-split-evenly"])
def test_scale_out_the_machine_cannot_run_fails_before_any_work(tmp_path, overrides, key):
    if "train.accelerator=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_training(_cfg(tmp_path, *overrides), progress=False)
    assert not any(tmp_path.iterdir())  # nothing prepared, nothing written


def test_unknown_strategy_is_refused_with_the_key():
    with pytest.raises(ConfigError, match=r"train\.strategy"):
        load_config(None, ["train.strategy=horovod"])


def test_torchrun_process_count_must_match_train_devices(tmp_path, monkeypatch):
    # what torchrun --nproc-per-node 2 sets in each process it starts
    for name, value in {"RANK": "0", "GROUP_RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2",
                        "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                        "MASTER_PORT": "29500", "TORCHELASTIC_RUN_ID": "test"}.items():
        monkeypatch.setenv(name, value)
    cfg = _cfg(tmp_path, "train.accelerator=cpu", "train.devices=1", "train.strategy=ddp")
    with pytest.raises(ConfigError, match=r"train\.devices=1"):
        run_training(cfg, progress=False)
    assert not any(tmp_path.iterdir())
