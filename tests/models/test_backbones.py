"""Backbone registry: local ImageNet weights (no network), names, shapes, checkpoints."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from dermsight.errors import ConfigError
from dermsight.models.backbones import (
    create_backbone,
    list_backbones,
    map_efficientnet_pytorch_state_dict,
    pretrained_cfg,
)

LOCAL = list_backbones(local_weights=True)


def _preprocess(image: torch.Tensor, cfg: dict) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, S, S]``: resize shorter side, centre crop, normalise."""
    size = cfg["input_size"][-1]
    x = image.permute(2, 0, 1).float()[None] / 255
    h, w = x.shape[-2:]
    scale = size / cfg["crop_pct"] / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bicubic",
                      antialias=True, align_corners=False).clamp(0, 1)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    mean, std = torch.tensor(cfg["mean"]), torch.tensor(cfg["std"])
    return (x - mean[:, None, None]) / std[:, None, None]


@pytest.mark.slow
def test_pretrained_lite0_classifies_the_cat():
    skimage_data = pytest.importorskip("skimage.data")
    model = create_backbone("efficientnet_lite0", pretrained=True, num_classes=1000).eval()
    cfg = pretrained_cfg("efficientnet_lite0")
    assert cfg["mean"] == (0.5, 0.5, 0.5) and cfg["std"] == (0.5, 0.5, 0.5)
    x = _preprocess(torch.from_numpy(skimage_data.chelsea()), cfg)
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    assert 281 <= int(probs.argmax()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert probs[281:286].sum() > 0.8


@pytest.mark.parametrize("name", LOCAL)
def test_local_weights_load_and_pool(name):
    model = create_backbone(name, pretrained=True).eval()
    assert model.num_features == 1280
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, model.num_features)
    assert torch.isfinite(out).all()


def test_mapping_names_the_first_mismatching_key():
    source = create_backbone("efficientnet_lite0", pretrained=False).state_dict()
    target = create_backbone("efficientnet_lite2", pretrained=False).state_dict()
    source = {f"src.{k}": v for k, v in source.items()}  # tell source keys from target keys
    # lite2 is deeper: the first difference is a 5×5 kernel where lite2 has a 3×3 block
    with pytest.raises(ConfigError, match=r"'src\.blocks\.2\.0\.conv_dw\.weight' .*'blocks\.1\.2"):
        map_efficientnet_pytorch_state_dict(source, target)
    truncated = dict(list(source.items())[:-6])  # shapes agree, the head is missing
    with pytest.raises(ConfigError, match=r"first unmatched: 'conv_head\.weight'"):
        map_efficientnet_pytorch_state_dict(truncated, create_backbone(
            "efficientnet_lite0", pretrained=False).state_dict())


def test_mapping_ignores_one_sided_batch_counters():
    model = create_backbone("efficientnet_lite0", pretrained=False)
    source = {k: v.clone() + 1 for k, v in model.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    mapped = map_efficientnet_pytorch_state_dict(source, model.state_dict())
    model.load_state_dict(mapped)  # strict: nothing missing
    assert torch.equal(model.conv_stem.weight, source["conv_stem.weight"])


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ConfigError, match="did you mean.*efficientnet_lite0"):
        create_backbone("efficientnet_lit0", pretrained=False)
    with pytest.raises(ConfigError, match="unknown backbone"):
        pretrained_cfg("no_such_net")


def test_pretrained_true_without_local_weights_explains():
    with pytest.raises(ConfigError, match="checkpoint path.*'hub'"):
        create_backbone("resnet18", pretrained=True)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_checkpoint_path_roundtrip(tmp_path, suffix):
    source = create_backbone("efficientnet_lite0", pretrained=False)
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": source.state_dict()}, path)
    loaded = create_backbone("efficientnet_lite0", pretrained=str(path))
    assert torch.equal(loaded.conv_head.weight, source.conv_head.weight)


def test_missing_checkpoint_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("efficientnet_lite0", pretrained=str(tmp_path / "nope.pth"))


def test_pretrained_cfg_keys_and_hub_cfg():
    cfg = pretrained_cfg("efficientnet_lite1")
    assert set(cfg) == {"input_size", "mean", "std", "crop_pct", "interpolation"}
    assert cfg["input_size"] == (3, 240, 240)
    # timm's own hub weights for efficientnet_lite0 use ImageNet statistics
    assert pretrained_cfg("efficientnet_lite0", "hub")["mean"] == (0.485, 0.456, 0.406)


def test_list_backbones():
    assert "efficientnet_lite0" in list_backbones()
    assert list_backbones("efficientnet_lite*", local_weights=True) == [
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def test_a_backbone_family_with_its_own_local_weights_is_one_registered_entry(tmp_path):
    from dermsight.models import backbones as B

    torch.manual_seed(0)
    reference = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    # the family's own key names: every key under "net."
    weights = tmp_path / "resnet10t-local.pth"
    torch.save({f"net.{k}": v for k, v in reference.state_dict().items()}, weights)
    entry = B.LocalWeights(
        file=str(weights), cfg_from="resnet10t",
        map_state_dict=lambda s, t: {k[len("net."):]: v for k, v in s.items()},
        recognise=lambda s: bool(s) and all(k.startswith("net.") for k in s))
    B.register_local_weights("resnet10t", entry)
    try:
        assert "resnet10t" in B.list_backbones(local_weights=True)
        model = B.create_backbone("resnet10t", pretrained=True)
        for k, v in reference.state_dict().items():
            assert torch.equal(model.state_dict()[k], v), k
        assert B.pretrained_cfg("resnet10t")["input_size"][0] == 3
        # a checkpoint in the family's key names loads by path too
        again = B.create_backbone("resnet10t", pretrained=str(weights))
        assert torch.equal(again.state_dict()["conv1.0.weight"],
                           reference.state_dict()["conv1.0.weight"])
    finally:
        B._LOCAL.pop("resnet10t", None)
    with pytest.raises(ConfigError, match="unknown timm model"):
        B.register_local_weights("no_such_net", entry)
