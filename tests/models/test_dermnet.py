"""DermNet: outputs, metadata, training phases (frozen params and BN stats), registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dermsight.errors import ConfigError
from dermsight.models import create_model, list_models
from dermsight.models.dermnet import PARAMETER_GROUPS, DermNet

B, META, C, S = 4, 6, 5, 64


def _net(**kwargs) -> DermNet:
    kwargs = {"backbone": "efficientnet_lite0", "num_classes": C, "pretrained": False, **kwargs}
    return create_model("dermnet", **kwargs)


@pytest.fixture(scope="module")
def net() -> DermNet:
    return _net(meta_dim=META)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers (incl. BN running stats), copied."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def _train_steps(model: DermNet, steps: int = 3) -> None:
    torch.manual_seed(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    model.train()
    for _ in range(steps):
        image, meta = torch.randn(B, 3, S, S), torch.randn(B, META)
        out = model(image, meta)
        loss = F.cross_entropy(out["diagnosis"], torch.randint(0, C, (B,)))
        loss = loss + F.binary_cross_entropy_with_logits(out["lighting"], torch.rand(B).round())
        if model.color is not None:
            loss = loss + model.color.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("fusion", ["concat", "gated"])
def test_outputs_with_full_partial_and_no_metadata(fusion):
    model = _net(meta_dim=META, fusion=fusion).eval()
    image, meta = torch.randn(B, 3, S, S), torch.randn(B, META)
    partly = meta.clone()
    partly[:, :3], partly[:, 3:] = 0.0, 1.0  # missing values + their indicators
    for m in (meta, partly, None):
        out = model(image, m)
        assert set(out) == {"diagnosis", "lighting"}
        assert out["diagnosis"].shape == (B, C) and out["lighting"].shape == (B,)
    features = model.forward_features(image)
    assert features.shape == (B, model.num_features)
    fused = model.forward_head(features, meta, pre_logits=True)
    assert fused.shape == (B, model.fusion.out_dim)


def test_image_only_model_and_options():
    model = _net(color_calibration=False, lighting_head=False, input_size=96).eval()
    assert model.color is None
    out = model(torch.randn(2, 3, S, S))
    assert set(out) == {"diagnosis"}
    assert model.data_config["input_size"] == (3, 96, 96)
    assert model.data_config["mean"] == (0.5, 0.5, 0.5)


def test_soft_labels(net):
    logits = net.eval()(torch.randn(B, 3, S, S), torch.randn(B, META))["diagnosis"]
    soft = torch.softmax(torch.randn(B, C), dim=1)  # e.g. label smoothing or annotator votes
    loss = F.cross_entropy(logits, soft)
    manual = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert torch.isclose(loss, manual)


def test_reset_classifier():
    model = _net(meta_dim=META, fusion="gated")
    model.reset_classifier(3)
    assert model.eval()(torch.randn(1, 3, S, S))["diagnosis"].shape == (1, 3)


def test_parameter_groups_partition_the_model(net):
    groups = net.parameter_groups()
    assert tuple(groups) == PARAMETER_GROUPS
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) == len(list(net.parameters()))
    assert len(groups["color"]) == 2


def test_heads_phase_freezes_backbone_colour_and_bn_stats():
    torch.manual_seed(0)
    model = _net(meta_dim=META)
    model.set_trainable({"heads"})
    backbone, color, heads = (_snapshot(m) for m in (model.backbone, model.color, model.fusion))
    classifier = _snapshot(model.classifier)
    _train_steps(model)
    assert not _changed(backbone, model.backbone.state_dict())  # incl. running_mean/var
    assert not _changed(color, model.color.state_dict())
    assert _changed(heads, model.fusion.state_dict())
    assert _changed(classifier, model.classifier.state_dict()) == {"weight", "bias"}
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)


def test_colour_phase_moves_colour_not_backbone():
    model = _net(meta_dim=META)
    model.set_trainable({"heads", "color"})
    backbone, color = _snapshot(model.backbone), _snapshot(model.color)
    _train_steps(model)
    assert not _changed(backbone, model.backbone.state_dict())
    assert _changed(color, model.color.state_dict()) == {"weight", "bias"}


def test_top_fraction_unfreezes_only_the_top_blocks():
    model = _net(meta_dim=META)
    n_blocks = sum(len(stage) for stage in model.backbone.blocks)  # 16 for lite0
    model.set_trainable({"heads", "backbone_top"}, top_fraction=0.25)
    backbone = _snapshot(model.backbone)
    _train_steps(model)
    changed = _changed(backbone, model.backbone.state_dict())
    flat = [f"blocks.{i}.{j}." for i, stage in enumerate(model.backbone.blocks)
            for j in range(len(stage))]
    top = flat[-math.ceil(0.25 * n_blocks):]
    assert changed  # the top moved...
    for key in changed:  # ...and only the top blocks and the final conv/bn head
        assert key.startswith(tuple(top)) or key.startswith(("conv_head.", "bn2.")), key
    assert any(k.startswith("conv_head.") for k in changed)
    assert any(k.startswith(top[0]) and "running_mean" in k for k in changed)  # trainable BN
    frozen_bn = model.backbone.blocks[0][0].bn1
    assert not frozen_bn.training and model.backbone.bn2.training


def test_set_trainable_rejects_unknown_groups(net):
    with pytest.raises(ConfigError, match="unknown parameter groups \\['head'\\]"):
        net.set_trainable({"head"})
    with pytest.raises(ConfigError, match="top_fraction"):
        net.parameter_groups(top_fraction=1.5)


@pytest.mark.parametrize("name", list_models())
def test_registry_builds_every_model(name):
    model = create_model(name, backbone="efficientnet_lite0", num_classes=2, pretrained=False)
    assert model.eval()(torch.randn(1, 3, S, S))["diagnosis"].shape == (1, 2)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="unknown model 'dermnett'"):
        create_model("dermnett")


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, dermsight.models; print('torch' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
