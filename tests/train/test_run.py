"""A tiny end-to-end training run on synthetic data, its outputs, and its failure modes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dermsight.config import load_config
from dermsight.errors import ConfigError, DataError
from dermsight.train.run import run_training

TINY = [
    "data.source=synthetic",
    "data.source_options={n_patients: 20, size: 64, seed: 0}",
    "data.input_size=[64, 64]",
    "data.batch_size=8",
    "data.num_workers=0",
    "data.metadata={numeric: [age], categorical: [sex, body_site], min_frequency: 1}",
    "model.pretrained=false",
    "train.progress_bar=false",
    "train.phases=[{name: A, train: [heads], epochs: 2, lr: 0.01},"
    " {name: B, train: [heads, color], epochs: 1, lr: 0.001},"
    " {name: C, train: [heads, color, backbone_top], epochs: 1, lr: 0.001}]",
]


def _cfg(tmp_path, *extra):
    return load_config(None, [*TINY, f"data.root={tmp_path / 'synthetic'}",
                              f"data.prepared={tmp_path / 'prepared'}",
                              f"train.output_dir={tmp_path / 'experiments'}", *extra])


@pytest.mark.slow
def test_tiny_run_writes_everything_and_is_seeded(tmp_path):
    first = run_training(_cfg(tmp_path, "train.run_name=a"), progress=False)
    run = first.run_dir
    for name in ("config.yaml", "metrics.csv", "report.json", "weights.txt",
                 "checkpoints/best.pt", "figures/learning_curves.png",
                 "figures/confusion_matrix.png"):
        assert (run / name).exists(), name
    history = pd.read_csv(run / "metrics.csv")
    assert history["phase"].tolist() == ["A", "A", "B", "C"]
    report = json.loads((run / "report.json").read_text())
    assert set(report["metrics"]) >= {"accuracy", "balanced_accuracy", "auroc_macro", "f1_macro"}
    assert [p["name"] for p in report["phases"]] == ["A", "B", "C"]
    assert report["phases"][0]["cached_features"] is True
    lighting = report["lighting_degraded_val"]
    assert lighting["n"] == 0 or lighting["n_degraded"] in (0, lighting["n"]) \
        or 0 <= lighting["auroc"] <= 1
    again = run_training(_cfg(tmp_path, "train.run_name=b"), progress=False)
    assert again.report["metrics"] == first.report["metrics"]


def test_unknown_backbone_fails_before_training(tmp_path):
    with pytest.raises(ConfigError, match="backbone"):
        run_training(_cfg(tmp_path, "model.backbone=efficientnet_lite9"), progress=False)


def test_missing_metadata_column_is_named(tmp_path):
    cfg = _cfg(tmp_path, "data.metadata={numeric: [blood_pressure]}")
    with pytest.raises(DataError, match="blood_pressure"):
        run_training(cfg, progress=False)


@pytest.mark.slow
def test_run_reports_the_ema_check(tmp_path):
    cfg = _cfg(tmp_path, "train.run_name=ema",
               "train.phases=[{name: A, train: [heads], epochs: 1, lr: 0.01},"
               " {name: C, train: [heads, backbone_top], epochs: 1, lr: 0.001,"
               " ema_decay: 0.9}]")
    result = run_training(cfg, progress=False)
    phases = json.loads((result.run_dir / "report.json").read_text())["phases"]
    assert "ema" not in phases[0]
    ema = phases[1]["ema"]
    assert ema["decay"] == 0.9
    assert set(ema["last_epoch_ema"]) >= {"accuracy", "balanced_accuracy", "auroc_macro"}
    assert set(ema["last_epoch_raw"]) == set(ema["last_epoch_ema"])


@pytest.mark.slow
def test_every_phase_trains_in_train_mode(tmp_path, monkeypatch):
    """Phase A's feature caching and the scoring between phases leave the model in eval mode;
    each phase must still train with dropout and the whole-record metadata dropout on (frozen
    BatchNorm layers stay in eval mode)."""
    import torch

    from dermsight.train.module import DermModule

    seen: list[tuple[str, bool, bool]] = []
    original = DermModule.training_step

    def recording(self, batch, batch_idx):
        dropouts = [m.training for m in self.model.modules() if isinstance(m, torch.nn.Dropout)]
        frozen_bn = [m.training for m in self.model.modules()
                     if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                     and all(not p.requires_grad for p in m.parameters(recurse=False))]
        seen.append((self.phase.name, all(dropouts) and bool(dropouts), any(frozen_bn)))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DermModule, "training_step", recording)
    run_training(_cfg(tmp_path, "train.run_name=modes"), progress=False)
    assert {phase for phase, _, _ in seen} == {"A", "B", "C"}
    assert all(train for _, train, _ in seen), seen
    assert not any(bn for _, _, bn in seen), seen
