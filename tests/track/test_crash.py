"""A server killed (SIGKILL) in the middle of uploads restarts to a consistent state."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from trackhelpers import photo_bytes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir, port):
    env = {**os.environ, "DERMSIGHT_TREND_MODEL": str(data_dir / "no-model")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dermsight", "track", "serve", "--no-predict", "--port", str(port),
         "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/track/subjects", timeout=1)
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start")


@pytest.mark.slow
def test_killed_server_restarts_consistent_and_accepts_uploads(tmp_path):
    from dermsight.track.service import Tracker

    data = tmp_path / "t"
    t = Tracker.from_dir(data)
    key = t.create_key("crash")
    t.close()
    h = {"X-API-Key": key}
    port = _free_port()
    proc = _start(data, port)
    base = f"http://127.0.0.1:{port}/v1/track"
    subj = httpx.post(f"{base}/subjects", json={}, headers=h).json()["id"]
    ser = httpx.post(f"{base}/subjects/{subj}/series", json={}, headers=h).json()["id"]

    ok_ids, stop = [], threading.Event()

    def upload(worker):
        i = 0
        while not stop.is_set():
            try:
                r = httpx.post(f"{base}/series/{ser}/photos", headers=h, timeout=30,
                               files={"file": ("p.jpg", photo_bytes(worker * 10_000 + i,
                                                                    size=(48, 64)))})
                if r.status_code == 201:
                    ok_ids.append(r.json()["id"])
            except httpx.HTTPError:
                return
            i += 1

    workers = [threading.Thread(target=upload, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    while len(ok_ids) < 12:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-upload: requests are in flight
    proc.wait()
    stop.set()
    for w in workers:
        w.join()

    proc = _start(data, port)  # start-up runs the migrations and reconciles the store
    try:
        tl = httpx.get(f"{base}/series/{ser}/timeline", headers=h).json()
        ids = {p["id"] for p in tl["photos"]}
        assert set(ok_ids) <= ids  # every acknowledged upload survived
        t = Tracker.from_dir(data, reconcile=False)
        files = [u for u, _ in t.store.list()]
        assert len(files) == t.counts()["photos"] == len(ids)
        assert t.reconcile()["missing_files"] == []
        r = httpx.post(f"{base}/series/{ser}/photos", headers=h,
                       files={"file": ("new.jpg", photo_bytes(999_999))})
        assert r.status_code == 201, r.text
        assert t.counts()["photos"] == len(ids) + 1 == len(t.store.list())
        t.close()
    finally:
        proc.kill()
        proc.wait()
