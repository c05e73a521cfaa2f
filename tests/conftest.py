"""Shared test helpers: where the real data lives, and skipping cleanly when it is absent."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test when it is absent."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"../shared/data/{name} is not available on this machine")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass


@pytest.fixture
def http_root(tmp_path):
    """Serve ``tmp_path`` at http://127.0.0.1:PORT; yields (folder, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
