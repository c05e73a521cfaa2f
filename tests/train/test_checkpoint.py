"""A run folder loads back into the same model; a run can start from another's weights."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from dermsight.config import load_config
from dermsight.errors import ConfigError
from dermsight.train.checkpoint import load_run
from dermsight.train.run import run_training


def _predict(run, image, meta):
    with torch.no_grad():
        return run.model(image, meta)["diagnosis"].softmax(1).numpy()


def test_load_run_rebuilds_the_trained_model(tiny_run, tmp_path):
    run = load_run(tiny_run)
    assert run.classes and run.preprocess.input_size == (64, 64)
    assert run.encoder is not None and run.temperature == 1.0
    assert run.config is not None and run.config.train.run_name == "tiny"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (80, 90, 3), dtype=np.uint8) for _ in range(3)]
    x = torch.from_numpy(run.preprocess.batch(images))
    meta = torch.zeros(3, run.encoder.dim_)
    again = load_run(tiny_run / "checkpoints" / "best.pt")
    np.testing.assert_array_equal(_predict(run, x, meta), _predict(again, x, meta))
    assert again.run_dir is None

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    load_run(copy).save_calibration({"temperature": 1.7})
    assert load_run(copy).temperature == 1.7
    with pytest.raises(ConfigError, match="bare checkpoint"):
        again.save_calibration({"temperature": 2.0})


def test_missing_checkpoint_is_named(tiny_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "checkpoints" / "best.pt").unlink()
    with pytest.raises(ConfigError, match="best.pt"):
        load_run(copy)
    with pytest.raises(ConfigError, match="no run folder"):
        load_run(tmp_path / "nothing")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pt"):
        load_run(tmp_path / "junk.pt")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_broken_calibration_is_named(tiny_run, tmp_path, text):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    (copy / "calibration.json").write_text(text)
    with pytest.raises(ConfigError, match=r"calibration\.json .*run dermsight evaluate again"):
        load_run(copy)


@pytest.mark.slow
def test_init_from_starts_where_the_run_ended(tiny_run, tiny_train):
    base = tiny_run.parent.parent
    common = [*tiny_train, f"data.root={base / 'synthetic'}", f"data.prepared={base / 'prepared'}",
              f"train.output_dir={base / 'experiments'}"]
    cfg = load_config(None, [*common, "train.run_name=continued", f"train.init_from={tiny_run}",
                             "train.phases=[{name: A, train: [heads], epochs: 1, lr: 1e-9}]"])
    continued = run_training(cfg, progress=False)
    note = (continued.run_dir / "weights.txt").read_text()
    assert f"weights of the earlier run {tiny_run}" in note
    assert "packaged ImageNet" not in note
    before = load_run(tiny_run).model.state_dict()
    after = load_run(continued.run_dir).model.state_dict()
    # a vanishing learning rate: the continued run holds the first run's weights
    for name, value in before.items():
        if value.dtype.is_floating_point:
            torch.testing.assert_close(after[name], value, atol=1e-5, rtol=0)

    bad = load_config(None, [*common, "train.run_name=bad", f"train.init_from={tiny_run}",
                             "data.metadata={numeric: [age], categorical: [sex], "
                             "min_frequency: 1}"])
    with pytest.raises(ConfigError, match="metadata"):
        run_training(bad, progress=False)
