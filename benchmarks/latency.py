"""Single-image latency on CPU: ONNX int8 vs ONNX fp32 vs PyTorch eager, side by side.

    python benchmarks/latency.py --model runs/hamexp --run experiments/ham10000 \
        [--threads 2] [--runs 200] [--warmup 20] [--out latency.json]

The model folder needs both ``model.onnx`` and ``model.int8.onnx`` (``dermsight export``
without ``--no-fp32``); ``--run`` is the run it was exported from (for the torch model). Every
backend gets the same preprocessed image (at the model's input size) and metadata, batch 1, with
``--threads`` intra-op threads (onnxruntime's ``intra_op_num_threads``, ``torch.set_num_threads``).
The runs are interleaved (each round times every backend once, in a rotating order), so
background load hits all of them alike; p50 / p95 are over ``--runs`` rounds after ``--warmup``.
A fourth row times the whole engine call (``Engine.predict`` on the decoded photo: preprocessing,
int8 model, photo quality and skin tone) for reference.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from dermsight.serve.engine import Engine
    from dermsight.train.checkpoint import load_run

    torch.set_num_threads(args.threads)
    engines = {p: Engine.load(args.model, precision=p, threads=args.threads)
               for p in ("int8", "fp32")}
    loaded = load_run(args.run)
    rng = np.random.default_rng(0)
    photo = np.clip(rng.normal([190, 140, 120], 25, (450, 600, 3)), 0, 255).astype(np.uint8)
    meta = {"age": 55, "sex": "male"} if engines["int8"].metadata_fields else None
    clean = [engines["int8"]._clean_metadata(meta, "", True)[0]]
    feeds = engines["int8"].feeds(engines["int8"].preprocess.batch([photo]), clean)
    image = torch.from_numpy(feeds["image"])
    tmeta = torch.from_numpy(feeds["meta"]) if "meta" in feeds else None
    model = loaded.model.eval()

    def onnx(precision):
        session = engines[precision].session
        return lambda: session.run(["diagnosis_logits"], feeds)

    def eager():
        with torch.inference_mode():
            model(image, tmeta)

    backends = {"ONNX int8": onnx("int8"), "ONNX fp32": onnx("fp32"), "torch eager": eager,
                "engine int8 end-to-end": lambda: engines["int8"].predict([photo], [meta])}
    names = list(backends)
    times = {n: [] for n in names}
    for r in range(args.warmup + args.runs):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            t0 = time.perf_counter()
            backends[name]()
            if r >= args.warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    stats = {n: {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)),
                 "mean_ms": float(np.mean(t))} for n, t in times.items()}
    ref = stats["torch eager"]["p50_ms"]
    h, w = engines["int8"].preprocess.input_size
    print(f"Single-image latency, {h}×{w} input, batch 1, {args.threads} threads, "
          f"{args.runs} interleaved runs after {args.warmup} warm-up "
          f"({platform.processor() or platform.machine()}, onnxruntime {ort.__version__}, "
          f"torch {torch.__version__}):\n")
    print("| backend | p50 ms | p95 ms | speed-up vs torch eager (p50) |")
    print("|---|---|---|---|")
    for n, s in stats.items():
        print(f"| {n} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | {ref / s['p50_ms']:.2f}× |")
    if args.out:
        args.out.write_text(json.dumps({"threads": args.threads, "runs": args.runs,
                                        "input_size": [h, w], "stats": stats}, indent=2))


if __name__ == "__main__":
    main()
