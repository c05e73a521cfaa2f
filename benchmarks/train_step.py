"""One training step (forward, backward, AdamW) of a backbone on CPU, four ways, side by side.

    python benchmarks/train_step.py [--backbone tf_efficientnet_lite0] [--size 160 208]
        [--batch 32] [--rounds 6] [--inference | --freeze | --sizes H W H W ...]
        [--out train_step.json]

Modes: fp32 (NCHW), fp32 channels-last (NHWC), bf16 autocast (NCHW), bf16 autocast
channels-last — the settings ``train.precision`` (``32-true`` / ``bf16-mixed``) and
``train.channels_last`` pick. Each mode has its own copy of the model (random weights: speed
does not depend on them) and optimiser; the rounds are interleaved (each round times one step
of every mode, in a rotating order, after one warm-up step each), so background load hits all
modes alike. Reports the median seconds per step and images/s, and the speed-up over the
first mode (fp32; with ``--freeze``, all blocks + colour).
``--inference``: time a forward pass in eval mode without gradients instead (what phase-A
feature caching and per-epoch validation cost).
``--freeze``: compare what a phase trains instead, all in bf16 channels-last on dermsight's
``DermNet`` (its real ``set_trainable``): every block plus the colour layer (the colour layer
sits in front of the backbone, so its gradient needs the backward pass through every block)
against the top 6/7, 5/7 and 4/7 of the backbone's blocks (``top_fraction`` 0.8 / 0.7 / 0.55
of a 7-stage EfficientNet) with the colour layer frozen.
``--sizes``: compare input sizes instead (e.g. ``--sizes 192 256 224 224``), each with the
HAM10000 config's training step (``DermNet``, top 5 of 7 blocks, bf16 channels-last).
bf16 is fast only on CPUs with AVX512-BF16 or AMX; without them it is much slower.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

MODES = {"fp32": (False, False), "fp32 channels-last": (False, True),
         "bf16": (True, False), "bf16 channels-last": (True, True)}
# --freeze: (trainable groups, top_fraction), all bf16 channels-last
FREEZE = {"all blocks + colour": (None, 1.0),  # None: every group (DermNet.PARAMETER_GROUPS)
          "top_fraction 0.8": (["heads", "backbone_top"], 0.8),
          "top_fraction 0.7": (["heads", "backbone_top"], 0.7),
          "top_fraction 0.55": (["heads", "backbone_top"], 0.55)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tf_efficientnet_lite0")
    ap.add_argument("--size", type=int, nargs=2, default=(160, 208), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--inference", action="store_true",
                    help="forward only (eval mode, no gradients) instead of a training step")
    ap.add_argument("--freeze", action="store_true",
                    help="compare trainable parameter groups (bf16 channels-last) instead")
    ap.add_argument("--sizes", type=int, nargs="+", metavar="H W",
                    help="compare input sizes (H W pairs) with the HAM10000 config's step")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if sum(map(bool, (args.inference, args.freeze, args.sizes))) > 1:
        ap.error("--inference, --freeze and --sizes exclude each other")
    if args.sizes and len(args.sizes) % 2:
        ap.error("--sizes takes pairs: H W [H W ...]")

    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, *args.size)
    y = torch.randint(0, args.classes, (args.batch,))
    setups = {}
    if args.sizes:
        from dermsight.models.dermnet import DermNet

        base = DermNet(args.backbone, args.classes, pretrained=False, lighting_head=False)
        for h, w in zip(args.sizes[::2], args.sizes[1::2]):
            model = copy.deepcopy(base).to(memory_format=torch.channels_last)
            model.set_trainable(["heads", "backbone_top"], 0.7)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            xx = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
            setups[f"{h}x{w}"] = (model, torch.optim.AdamW(params, 1e-4), xx, True)
    elif args.freeze:
        from dermsight.models.dermnet import PARAMETER_GROUPS, DermNet

        base = DermNet(args.backbone, args.classes, pretrained=False, lighting_head=False)
        xx = x.contiguous(memory_format=torch.channels_last)
        for name, (groups, top) in FREEZE.items():
            model = copy.deepcopy(base).to(memory_format=torch.channels_last)
            model.set_trainable(groups or PARAMETER_GROUPS, top)
            model.train()
            params = [p for p in model.parameters() if p.requires_grad]
            setups[name] = (model, torch.optim.AdamW(params, 1e-4), xx, True)
    else:
        import timm

        base = timm.create_model(args.backbone, num_classes=args.classes)
        for name, (bf16, cl) in MODES.items():
            model = copy.deepcopy(base).train(not args.inference)
            xx = x
            if cl:
                model = model.to(memory_format=torch.channels_last)
                xx = x.contiguous(memory_format=torch.channels_last)
            setups[name] = (model, torch.optim.AdamW(model.parameters(), 1e-4), xx, bf16)

    def step(name: str) -> float:
        model, opt, xx, bf16 = setups[name]
        t = time.perf_counter()
        if args.inference:
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                model(xx)
            return time.perf_counter() - t
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(xx)
            out = out["diagnosis"] if isinstance(out, dict) else out  # DermNet: a dict per task
            loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    names = list(setups)
    for name in names:  # warm-up (oneDNN primitive creation)
        step(name)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(step(name))
    ref = float(np.median(times[names[0]]))
    result = {"backbone": args.backbone, "size": list(args.size), "batch": args.batch,
              "what": "inference" if args.inference else
              "training step by trainable groups, bf16 channels-last" if args.freeze else
              "training step by input size, top_fraction 0.7, bf16 channels-last" if args.sizes
              else
              "training step",
              "rounds": args.rounds, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "speedup_over": names[0], "modes": {}}
    at = "the sizes below" if args.sizes else f"{args.size[0]}x{args.size[1]}"
    print(f"{result['what']}: {args.backbone}, batch {args.batch} at {at}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds")
    for name in names:
        med = float(np.median(times[name]))
        result["modes"][name] = {"seconds_per_step": med, "images_per_s": args.batch / med,
                                 "speedup": ref / med}
        print(f"  {name:20s} {med:6.3f} s/step  {args.batch / med:6.1f} images/s  "
              f"{ref / med:4.2f}x")
    if args.out:
        from dermsight.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
