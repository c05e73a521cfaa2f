"""A real uvicorn server on a loopback port, for tests that need a socket, and a headless
browser (Debian's chromium driven by Playwright) for the browser tests."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_server(app):
    """Run ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("DERMSIGHT_TEST_ARTIFACTS", REPO / "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def browser_page(width: int = 1200, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


class CountingEngine:
    """The real engine, counting images per call and calls running at once (with a delay)."""

    def __init__(self, engine, delay: float = 0.0) -> None:
        self._engine = engine
        self.delay = delay
        self.running = self.peak = 0
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def predict(self, images, *args, **kwargs):
        with self._lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.batch_sizes.append(len(images))
        try:
            time.sleep(self.delay)
            return self._engine.predict(images, *args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def stream_until_answered(sock: socket.socket, fill: bytes, limit: int) -> tuple[int, bytes]:
    """Send chunked-encoding chunks of ``fill`` until the server answers or ``limit`` bytes
    went; returns the bytes sent and the reply (read up to its JSON body)."""
    import select

    frame = f"{len(fill):x}\r\n".encode() + fill + b"\r\n"
    sent = 0
    try:
        while sent < limit:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            sock.sendall(frame)
            sent += len(fill)
    except (BrokenPipeError, ConnectionResetError):
        pass
    reply = b""
    with contextlib.suppress(OSError):
        while b"}" not in reply:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
    return sent, reply
