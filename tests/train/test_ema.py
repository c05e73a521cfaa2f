"""Phases with an exponential moving average of the weights (Lightning's EMAWeightAveraging)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dermsight.config import LossConfig, PhaseConfig, load_config
from dermsight.models import create_model
from dermsight.train.module import DermModule
from dermsight.train.run import _ema_check, _History, _quiet_lightning, _trainer

C = 3


def _loader(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % C
    images = torch.randn(n, 3, 64, 64, generator=g) + labels[:, None, None, None].float()
    rows = [{"image": images[i], "meta": torch.zeros(0), "label": labels[i],
             "target": F.one_hot(labels[i], C).float(),
             "lighting": torch.tensor(float("nan"))} for i in range(n)]
    return DataLoader(rows, batch_size=4)


@pytest.mark.slow
def test_ema_phase_validates_checkpoints_and_ends_on_the_averaged_weights(tmp_path):
    _quiet_lightning()  # frozen BatchNorm layers stay in eval mode on purpose
    torch.manual_seed(0)
    model = create_model("dermnet", backbone="efficientnet_lite0", num_classes=C, meta_dim=0,
                         pretrained=False, fusion="none")
    phase = PhaseConfig(name="C", train=["heads", "backbone_top"], epochs=1, lr=1e-2,
                        ema_decay=0.5, early_stop_patience=None)
    model.set_trainable(set(phase.train), top_fraction=phase.top_fraction)
    cfg = load_config(None, ["train.progress_bar=false", "train.monitor=val_loss"])
    module = DermModule(model, loss=LossConfig(class_weights=False), phase=phase)
    trainer = _trainer(cfg, phase, tmp_path, _History("C", 0, []))
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader(8, seed=1))

    ema = next(c for c in trainer.callbacks if hasattr(c, "raw_state"))
    averaged = {k: v.clone() for k, v in module.state_dict().items()}
    trained = [k for k, p in module.named_parameters() if p.requires_grad]
    frozen = [k for k, p in module.named_parameters() if not p.requires_grad]
    # the model ends on the average, which differs from the last raw weights where it trains
    assert all(not torch.equal(averaged[k], ema.raw_state[k]) for k in trained)
    assert all(torch.equal(averaged[k], ema.raw_state[k]) for k in frozen)
    # the one checkpoint (one epoch) holds the averaged weights, not the raw ones
    saved = torch.load(trainer.checkpoint_callback.best_model_path, map_location="cpu",
                       weights_only=False)["state_dict"]
    assert set(saved) == set(averaged)
    assert all(torch.allclose(saved[k].float(), averaged[k].float()) for k in trained)

    # the side-by-side check scores both and leaves the averaged weights in place
    check = _ema_check(module, trainer, _loader(8, seed=1), "32-true")
    assert set(check) == {"last_epoch_ema", "last_epoch_raw", "seconds"}
    assert all(torch.equal(v, averaged[k]) for k, v in module.state_dict().items())


def test_ema_decay_must_lie_between_0_and_1():
    from dermsight.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay"):
        load_config(None, ["train.phases=[{name: C, train: [heads], epochs: 1, lr: 0.01,"
                           " ema_decay: 1.5}]"])
