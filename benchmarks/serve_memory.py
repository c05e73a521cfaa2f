"""Peak memory of ``dermsight serve`` under the worst-case probe: eight 6300×6300 JPEGs in one
``POST /v1/predict/batch`` (a request of a few MB), two such batches at once.

Starts the server in a subprocess (the default model under models/ unless ``--model``), warms
it up with one small prediction, resets the kernel's peak-RSS counter (``/proc/PID/clear_refs``)
and sends the batches; the server's peak resident memory is read from ``VmHWM`` (and sampled
every 20 ms as a check), its RSS before the probe and 3 s after it. ``--src`` runs the server
from another checkout's ``src`` folder (e.g. a ``git worktree`` of an older commit), so the
same script measures before and after a change.

    python benchmarks/serve_memory.py                      # this checkout
    python benchmarks/serve_memory.py --src runs/old-checkout/src   # another checkout, same probe

Prints a Markdown table (and writes it as JSON with ``--out``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

# the server start-up helpers of the HTTP load benchmark beside this script
from http_load import free_port, wait_ready
from PIL import Image


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def big_photo(side: int, seed: int) -> bytes:
    """A ``side``×``side`` JPEG of skin with a lesion: smooth, so it is small on the wire (the
    attacker's point) while it decodes to side² pixels. Drawn small and enlarged."""
    rng = np.random.default_rng(seed)
    small = 256
    yy, xx = np.mgrid[0:small, 0:small]
    img = np.empty((small, small, 3), np.float32)
    img[...] = (200, 152, 120)
    img *= (0.85 + 0.15 * xx / small)[..., None]
    r = 0.12 + 0.05 * rng.random()
    img[((yy - small / 2) / (r * small)) ** 2 + ((xx - small / 2) / (r * small)) ** 2 < 1] = (
        110, 66, 50)
    img += rng.normal(0, 3, img.shape)
    pic = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((side, side),
                                                                        Image.BILINEAR)
    buf = io.BytesIO()
    pic.save(buf, "JPEG", quality=70)
    return buf.getvalue()


def small_photo() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((224, 224, 3), (200, 150, 120), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the default model under models/)")
    ap.add_argument("--src", help="run the server from this src folder (PYTHONPATH)")
    ap.add_argument("--side", type=int, default=6300, help="image side in pixels")
    ap.add_argument("--files", type=int, default=8, help="files per batch")
    ap.add_argument("--batches", type=int, default=2, help="batches sent at once")
    ap.add_argument("--out", help="also write the results here (JSON)")
    args = ap.parse_args()

    photos = [big_photo(args.side, seed) for seed in range(args.files)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dermsight", "serve", "--port", str(port), "--no-web"]
    if args.model:
        cmd += ["--model", args.model]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.src, env.get("PYTHONPATH")]))
    tmp = Path(tempfile.mkdtemp(prefix="dermsight-mem-"))
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            samples.append(status_kib(proc.pid, "VmRSS"))
            time.sleep(0.02)

    try:
        wait_ready(url, proc)
        with httpx.Client(base_url=url, timeout=600) as c:
            r = c.post("/v1/predict", files={"file": ("w.jpg", small_photo(), "image/jpeg")})
            r.raise_for_status()
        time.sleep(1)
        before = status_kib(proc.pid, "VmRSS")
        with open(f"/proc/{proc.pid}/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM (peak RSS) to the current RSS
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()

        def batch(i: int) -> tuple[int, float, list]:
            files = [("files", (f"{i}-{j}.jpg", p, "image/jpeg")) for j, p in enumerate(photos)]
            t0 = time.perf_counter()
            with httpx.Client(base_url=url, timeout=600) as c:
                res = c.post("/v1/predict/batch", files=files)
            body = res.json()
            per_file = [("ok" if x.get("prediction") else x["error"]["code"])
                        for x in body.get("results", [])] or [body.get("error", {}).get("code")]
            return res.status_code, time.perf_counter() - t0, per_file

        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.batches) as ex:
            replies = list(ex.map(batch, range(args.batches)))
        wall = time.perf_counter() - t0
        peak = status_kib(proc.pid, "VmHWM")
        time.sleep(3)
        after = status_kib(proc.pid, "VmRSS")
        stop.set()
        sampler.join()
    finally:
        stop.set()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    result = {
        "request_mb": round(sum(len(p) for p in photos) / 2**20, 2),
        "image": f"{args.side}x{args.side}", "files_per_batch": args.files,
        "batches_at_once": args.batches, "src": args.src or "this checkout",
        "rss_before_mib": round(before / 1024), "peak_rss_mib": round(peak / 1024),
        "peak_sampled_mib": round(max(samples, default=0) / 1024),
        "rss_3s_after_mib": round(after / 1024), "wall_s": round(wall, 1),
        "replies": [{"status": s, "seconds": round(t, 1), "files": f} for s, t, f in replies],
    }
    print("| measure | value |\n|---|---|")
    for key, value in result.items():
        print(f"| {key} | {value} |")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
