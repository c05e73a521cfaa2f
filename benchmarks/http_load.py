"""HTTP load benchmark of ``dermsight serve``: throughput, latency, errors and memory.

Starts the server in a subprocess (the default model under models/ unless ``--model``), then
drives ``POST /v1/predict`` with `wrk <https://github.com/wg/wrk>`_ (Debian: ``apt-get install
wrk``): 8 connections over loopback, each posting the same multipart JPEG (built by a Lua
script). A short warm-up sizes the main run so that it sends at least ``--requests`` requests
(default 5,000) within ``--max-seconds``; more runs follow if it fell short. The server's
resident memory (RSS) is read from /proc at the start (after the warm-up) and after every run.

    python benchmarks/http_load.py                       # default model
    python benchmarks/http_load.py --model MODEL_DIR --connections 8 --requests 5000

Prints a Markdown table (and writes it with ``--out``); exits 1 if any request failed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

LUA = r"""
-- POST one multipart/form-data image to /v1/predict (path: first script argument).
local boundary = "----dermsightbench7MA4YWxkTrZu0gW"

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local image = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.path = "/v1/predict"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="bench.jpg"\r\n'
    .. "Content-Type: image/jpeg\r\n\r\n" .. image .. "\r\n"
    .. "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="top_k"\r\n\r\n3\r\n'
    .. "--" .. boundary .. "--\r\n"
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write("JSON:", string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p95_us": %d, '
    .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    except OSError:
        pass
    total = 0
    for p in pids:
        with open(f"/proc/{p}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def synthetic_photo(path: Path, width: int = 640, height: int = 480) -> Path:
    """A phone-sized JPEG of skin with a lesion (synthetic: no real data)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), np.float32)
    img[...] = (200, 152, 120)
    img *= (0.85 + 0.15 * xx / width)[..., None]
    blob = ((yy - height / 2) / (height / 6)) ** 2 + ((xx - width / 2) / (width / 7)) ** 2 < 1
    img[blob] = (110, 66, 50)
    img += rng.normal(0, 6, img.shape)
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return path


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as res:
                if res.status == 200:
                    with urllib.request.urlopen(f"{url}/v1/model", timeout=5) as m:
                        return json.load(m)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready in time")


def run_wrk(url: str, script: Path, image: Path, *, connections: int, threads: int,
            seconds: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s",
           "-s", str(script), url, "--", str(image)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON:"))
    result = json.loads(line[len("JSON:"):])
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder (default: the default model under models/)")
    ap.add_argument("--image", help="JPEG to post (default: a synthetic 640×480 photo)")
    ap.add_argument("--connections", type=int, default=8, help="concurrent clients")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--requests", type=int, default=5000, help="at least this many requests")
    ap.add_argument("--max-seconds", type=int, default=480, help="time bound of the runs")
    ap.add_argument("--concurrency", type=int, default=2,
                    help="server: inferences at once (dermsight serve --concurrency)")
    ap.add_argument("--server-threads", type=int, default=None,
                    help="server: onnxruntime threads per inference (dermsight serve --threads)")
    ap.add_argument("--out", help="also write the Markdown table here")
    args = ap.parse_args()

    if shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="dermsight-http-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    image = Path(args.image) if args.image else synthetic_photo(tmp / "photo.jpg")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "dermsight", "serve", "--port", str(port),
           "--concurrency", str(args.concurrency), "--no-web"]
    if args.model:
        cmd += ["--model", args.model]
    if args.server_threads:
        cmd += ["--threads", str(args.server_threads)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        info = wait_ready(url, proc)
        warm = run_wrk(url, script, image, connections=args.connections,
                       threads=args.threads, seconds=5)
        rss = [rss_mb(proc.pid)]
        rate = max(warm["requests"] / (warm["duration_us"] / 1e6), 1.0)
        seconds = min(args.max_seconds, math.ceil(args.requests / rate * 1.15) + 1)
        runs = []
        started = time.monotonic()
        while True:
            runs.append(run_wrk(url, script, image, connections=args.connections,
                                threads=args.threads, seconds=seconds))
            rss.append(rss_mb(proc.pid))
            total = sum(r["requests"] for r in runs)
            left = args.max_seconds - (time.monotonic() - started)
            if total >= args.requests or left < 5:
                break
            seconds = int(min(left, math.ceil((args.requests - total) / rate * 1.15) + 1))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    main_run = runs[0]
    total = sum(r["requests"] for r in runs)
    duration = sum(r["duration_us"] for r in runs) / 1e6
    errors = sum(r["errors"] for r in runs) + warm["errors"]
    size = Image.open(image).size
    rows = [
        ("model", f"{info.get('name') or '?'} {info.get('version') or ''} "
                  f"({info.get('precision') or 'auto'})".strip()),
        ("image posted", f"{size[0]}×{size[1]} JPEG, {image.stat().st_size / 1024:.0f} KiB"),
        ("clients (wrk connections)", str(args.connections)),
        ("server inference concurrency", str(args.concurrency)),
        ("requests (after a 5 s warm-up)", f"{total:,} in {duration:.1f} s ({len(runs)} run(s))"),
        ("throughput", f"{total / duration:.1f} req/s"),
        ("latency p50 / p95 / p99", f"{main_run['p50_us'] / 1000:.1f} / "
                                    f"{main_run['p95_us'] / 1000:.1f} / "
                                    f"{main_run['p99_us'] / 1000:.1f} ms"),
        ("errors (connect, read, write, non-2xx, timeout)", str(errors)),
        ("server RSS at start → after the run(s)",
         " → ".join(f"{r:.0f}" for r in rss) + " MiB"),
    ]
    table = "| measure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
    cores = os.cpu_count()
    table += (f"\n\n{cores} CPU cores, loopback; server and wrk on the same machine. "
              f"Command: `python benchmarks/http_load.py"
              f"{' --model ' + args.model if args.model else ''}`.")
    print(table)
    print(json.dumps({"warmup": warm, "runs": runs, "rss_mib": rss}), file=sys.stderr)
    if args.out:
        from dermsight.io import atomic_write_text

        atomic_write_text(args.out, table + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
