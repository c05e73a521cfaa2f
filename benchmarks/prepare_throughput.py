"""Throughput of `dermsight prepare` on the 8,010 HAM10000 images (decode + validate + quality +
skin tone + hashing, then duplicates, splits, audit and figures).

Runs prepare with 1 and with 2 workers back to back in one process, so the ratio is measured
under the same machine load. Needs ../shared/data/ham10000.

    python benchmarks/prepare_throughput.py [--data ../shared/data] [--workers 1 2] [--out F]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from dermsight.config import load_config
from dermsight.prepare.pipeline import run_prepare

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(PROJECT.parent / "shared" / "data"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    root = Path(args.data) / "ham10000"
    if not root.exists():
        raise SystemExit(f"{root} not found")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            cfg = load_config(None, [
                "prepare.source=ham10000", f"prepare.root={root}", f"prepare.out={tmp}/w{workers}",
                f"prepare.workers={workers}"]).prepare
            t0 = time.perf_counter()
            result = run_prepare(cfg, progress=False)
            total = time.perf_counter() - t0
            n = result.audit["counts"]["listed"]
            rows.append({"workers": workers, "images": n,
                         "measure_images_per_s": result.audit["timing"]["images_per_second"],
                         "end_to_end_images_per_s": round(n / total, 1),
                         "seconds": round(total, 1)})
    print("| workers | images | measuring (img/s) | end to end (img/s) | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['images']} | {r['measure_images_per_s']} | "
              f"{r['end_to_end_images_per_s']} | {r['seconds']} |")
    if len(rows) > 1:
        print(f"\nspeed-up {rows[-1]['workers']} vs {rows[0]['workers']} workers: "
              f"{rows[-1]['end_to_end_images_per_s'] / rows[0]['end_to_end_images_per_s']:.2f}x")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
