"""Load a trained run back: the model and everything needed to feed it.

Every stage after training (evaluate, export) starts from :func:`load_run`, so a run folder is
read in one place. A run folder holds ``checkpoints/best.pt`` (weights, classes, preprocessing,
metadata encoder; written by :mod:`dermsight.train.run`), its resolved ``config.yaml``, and,
once ``dermsight evaluate`` has calibrated it, ``calibration.json`` (temperature and conformal
threshold), which every later stage uses.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dermsight.config import Config, load_config
from dermsight.data.metadata import MetadataEncoder
from dermsight.data.preprocess import Preprocess
from dermsight.errors import ConfigError
from dermsight.io import atomic_write_text

CHECKPOINT = Path("checkpoints") / "best.pt"
CALIBRATION = "calibration.json"


@dataclass
class LoadedRun:
    """A trained model in eval mode with its preprocessing and metadata encoder."""

    run_dir: Path | None
    model: torch.nn.Module
    classes: list[str]
    preprocess: Preprocess
    encoder: MetadataEncoder | None
    model_spec: dict[str, Any]
    config: Config | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        """The fitted temperature (1.0 until ``dermsight evaluate`` has calibrated the run)."""
        return float(self.calibration.get("temperature", 1.0))

    def save_calibration(self, calibration: dict[str, Any]) -> Path:
        """Store ``calibration`` (temperature, conformal threshold…) in the run, atomically."""
        if self.run_dir is None:
            raise ConfigError("this model was loaded from a bare checkpoint, not a run folder: "
                              "there is nowhere to store its calibration")
        self.calibration = dict(calibration)
        path = self.run_dir / CALIBRATION
        atomic_write_text(path, json.dumps(self.calibration, indent=2))
        return path


def checkpoint_path(run: str | Path) -> Path:
    """``run`` is a run folder or a ``.pt`` file; returns the checkpoint, or raises naming it."""
    path = Path(run)
    if path.is_dir():
        ckpt = path / CHECKPOINT
        if not ckpt.is_file():
            raise ConfigError(
                f"{path} has no checkpoint at {ckpt}: train it first "
                f"(see {path / 'weights.txt'})" if (path / "weights.txt").is_file() else
                f"{path} is not a trained run: {ckpt} is missing")
        return ckpt
    if path.is_file():
        return path
    raise ConfigError(f"no run folder or checkpoint at {path}")


def load_run(run: str | Path, *, map_location: str = "cpu") -> LoadedRun:
    """Rebuild the model of a run folder (or a bare ``best.pt``) in eval mode."""
    from dermsight.models import create_model

    ckpt = checkpoint_path(run)
    try:
        payload = torch.load(ckpt, map_location=map_location, weights_only=False)
        spec = dict(payload["model"])
        classes = list(payload["classes"])
        state = payload["state_dict"]
    except (KeyError, TypeError, RuntimeError, EOFError, OSError,
            pickle.UnpicklingError) as exc:
        raise ConfigError(f"{ckpt} is not a dermsight checkpoint: {exc}") from exc
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    # The checkpoint holds every weight: do not load the ImageNet ones first.
    model = create_model(spec["name"], pretrained=False, **kwargs)
    model.load_state_dict(state)
    model.eval()
    encoder = payload.get("encoder")
    run_dir = Path(run) if Path(run).is_dir() else None
    config = calibration = None
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        config = load_config(run_dir / "config.yaml")
    if run_dir is not None and (run_dir / CALIBRATION).is_file():
        try:
            calibration = json.loads((run_dir / CALIBRATION).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{run_dir / CALIBRATION} cannot be read ({exc}): delete it and "
                              f"run dermsight evaluate again to recalibrate") from exc
        if not isinstance(calibration, dict):
            raise ConfigError(f"{run_dir / CALIBRATION} is not a JSON object: delete it and "
                              f"run dermsight evaluate again to recalibrate")
    return LoadedRun(run_dir=run_dir, model=model, classes=classes,
                     preprocess=Preprocess.from_dict(payload["preprocess"]),
                     encoder=MetadataEncoder.from_dict(encoder) if encoder else None,
                     model_spec=spec, config=config, calibration=calibration or {})
