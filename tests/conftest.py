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


TINY_TRAIN = [
    "data.source=synthetic",
    "data.source_options={n_patients: 24, size: 64, seed: 0}",
    "data.input_size=[64, 64]",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.metadata={numeric: [age], categorical: [sex, body_site], min_frequency: 1}",
    "model.pretrained=false",
    "model.fusion=gated",
    "train.progress_bar=false",
    "train.phases=[{name: A, train: [heads], epochs: 2, lr: 0.01},"
    " {name: C, train: [heads, color, backbone_top], epochs: 1, lr: 0.001}]",
]


@pytest.fixture(scope="session")
def tiny_train() -> list[str]:
    """The ``key=value`` overrides ``tiny_run`` was trained with (data roots excepted)."""
    return list(TINY_TRAIN)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A trained run folder (synthetic data, 64 px, untrained backbone), shared by the session.

    Tests must not modify it; copy it (``shutil.copytree``) to write into it. The synthetic
    dataset root is ``run.parent.parent / "synthetic"``.
    """
    from dermsight.config import load_config
    from dermsight.train.run import run_training

    base = tmp_path_factory.mktemp("tiny_run")
    cfg = load_config(None, [*TINY_TRAIN, f"data.root={base / 'synthetic'}",
                             f"data.prepared={base / 'prepared'}",
                             f"train.output_dir={base / 'experiments'}", "train.run_name=tiny"])
    return run_training(cfg, progress=False).run_dir


@pytest.fixture(scope="session")
def tiny_model(tiny_run, tmp_path_factory) -> Path:
    """``tiny_run`` exported (``dermsight.export.export_model``): a model folder with
    ``model.onnx`` (fp32), ``model.int8.onnx``, ``model.json`` and ``MODEL_CARD.md``.

    Tests must not modify it; copy it (``shutil.copytree``) to write into it.
    """
    from dermsight.export import export_model

    out = tmp_path_factory.mktemp("tiny_model") / "model"
    export_model(tiny_run, out, int8=True, progress=False)
    return out
