"""DermModule's losses: class and sample weights, degraded photos, channels-last inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dermsight.config import LossConfig, PhaseConfig
from dermsight.models import create_model
from dermsight.train.module import DermModule, forward_tta, soft_cross_entropy, tta_views

C, META = 3, 0
PHASE = PhaseConfig(name="C", train=["heads", "backbone_top"], epochs=1, lr=1e-3)


def test_sample_weight_zero_leaves_a_sample_out():
    torch.manual_seed(0)
    logits, target = torch.randn(4, C), F.one_hot(torch.tensor([0, 1, 2, 1]), C).float()
    keep = torch.tensor([1.0, 0.0, 1.0, 1.0])
    expected = F.cross_entropy(logits[keep.bool()], target[keep.bool()].argmax(1))
    assert torch.isclose(soft_cross_entropy(logits, target, sample_weight=keep), expected)
    weights = torch.tensor([1.0, 2.0, 3.0])
    both = soft_cross_entropy(logits, target, class_weights=weights, sample_weight=keep)
    kept = keep.bool()
    ref = F.cross_entropy(logits[kept], target[kept].argmax(1), weight=weights)
    assert torch.isclose(both, ref)
    assert soft_cross_entropy(logits, target, sample_weight=torch.zeros(4)) == 0


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return create_model("dermnet", backbone="efficientnet_lite0", num_classes=C, meta_dim=META,
                        pretrained=False, fusion="none")


def _batch(degraded):
    torch.manual_seed(1)
    n = len(degraded)
    labels = torch.arange(n) % C
    return {"image": torch.randn(n, 3, 64, 64), "meta": torch.zeros(n, 0),
            "target": F.one_hot(labels, C).float(), "label": labels,
            "lighting": torch.tensor(degraded, dtype=torch.float32),
            "degraded": torch.tensor(degraded, dtype=torch.float32)}


@pytest.mark.parametrize("on_degraded", [True, False])
def test_degraded_photos_teach_lighting_only_when_asked(net, on_degraded):
    loss = LossConfig(label_smoothing=0.0, class_weights=False, diagnosis_on_degraded=on_degraded)
    module = DermModule(net, loss=loss, phase=PHASE).train()
    batch = _batch([0.0, 1.0, 0.0, 1.0])
    net.eval()  # fixed BN statistics: the same forward for the whole batch and its half
    out = module(batch)
    losses = module._losses(out, batch)
    per_sample = F.cross_entropy(out["diagnosis"].float(), batch["label"], reduction="none")
    clean = batch["degraded"] == 0
    expected = per_sample.mean() if on_degraded else per_sample[clean].mean()
    assert torch.isclose(losses["diagnosis"], expected, atol=1e-6)
    assert "lighting" in losses  # the lighting head still learns from every photo


def test_channels_last_gives_the_same_outputs(net):
    net.eval()
    batch = _batch([0.0, 0.0])
    plain = DermModule(net, loss=LossConfig(), phase=PHASE)(batch)["diagnosis"]
    fast = DermModule(net, loss=LossConfig(), phase=PHASE, channels_last=True)
    fast.model = net.to(memory_format=torch.channels_last)
    try:
        assert torch.allclose(fast(batch)["diagnosis"], plain, atol=1e-4)
    finally:
        net.to(memory_format=torch.contiguous_format)


def test_feature_cache_follows_the_training_precision(net):
    """Phase-A caching runs in the run's precision and memory format; features stay float32,
    the other batch entries pass through, and bf16 stays close to fp32."""
    from dermsight.train.feature_cache import extract_features

    torch.manual_seed(2)
    batches = [{"image": torch.randn(3, 3, 64, 64), "label": torch.tensor([0, 1, 2])}
               for _ in range(2)]
    fp32 = extract_features(net, batches)
    bf16 = extract_features(net, batches, precision="bf16-mixed", channels_last=True)
    assert fp32["features"].dtype == bf16["features"].dtype == torch.float32
    assert fp32["features"].shape == bf16["features"].shape == (6, net.num_features)
    assert torch.equal(bf16["label"], torch.tensor([0, 1, 2, 0, 1, 2]))
    assert not torch.equal(fp32["features"], bf16["features"])  # autocast really ran
    cos = F.cosine_similarity(fp32["features"], bf16["features"], dim=1)
    assert cos.min() > 0.98
    again = extract_features(net, batches, channels_last=True)  # layout alone changes nothing
    assert torch.allclose(again["features"], fp32["features"], atol=1e-4)


@pytest.mark.parametrize("total, warmup", [(10, 0.1), (20, 0.05), (4, 0.25), (1, 0.1), (7, 0.1)])
def test_one_cycle_runs_every_step_and_ends_near_zero(total, warmup):
    """torch's OneCycleLR alone divides by zero when warmup × steps is exactly 1 (0.1 × 10)."""
    from dermsight.train.module import one_cycle

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = one_cycle(opt, max_lr=1e-3, total_steps=total, warmup_fraction=warmup)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(total - 1):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert max(lrs) <= 1e-3 + 1e-12 and lrs[-1] < 1e-4


@pytest.mark.parametrize("mode,n", [("none", 1), (False, 1), ("hflip", 2), (True, 2),
                                    ("flips", 4), ("d4", 8)])
def test_tta_view_counts(mode, n):
    views = tta_views(torch.randn(2, 3, 8, 8), mode)
    assert len(views) == n and all(v.shape == (2, 3, 8, 8) for v in views)


class _PositionNet(torch.nn.Module):
    """Not invariant to any flip or turn: a conv followed by a position-dependent linear."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4 * 6 * 6, 3)

    def forward(self, x, meta):
        return {"diagnosis": self.fc(self.conv(x).flatten(1))}


def test_tta_averages_over_a_group_so_the_result_is_invariant_to_it():
    torch.manual_seed(0)
    net, x = _PositionNet().eval(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        plain = forward_tta(net, x, None, "none")["diagnosis"]
        flips = forward_tta(net, x, None, "flips")["diagnosis"]
        d4 = forward_tta(net, x, None, "d4")["diagnosis"]
        assert torch.equal(plain, net(x, None)["diagnosis"])
        assert not torch.allclose(plain, flips, atol=1e-3)
        for g in (lambda t: t.flip(2), lambda t: t.flip(3), lambda t: t.flip(2).flip(3)):
            assert torch.allclose(forward_tta(net, g(x), None, "flips")["diagnosis"], flips,
                                  atol=1e-5)
        turned = lambda t: torch.rot90(t, 1, (2, 3))  # noqa: E731
        assert not torch.allclose(forward_tta(net, turned(x), None, "flips")["diagnosis"],
                                  flips, atol=1e-3)
        for g in (turned, lambda t: t.transpose(2, 3), lambda t: t.flip(3)):
            assert torch.allclose(forward_tta(net, g(x), None, "d4")["diagnosis"], d4, atol=1e-5)
        # channels-last inputs give the same average
        cl = forward_tta(net, x.contiguous(memory_format=torch.channels_last), None, "d4")
        assert torch.allclose(cl["diagnosis"], d4, atol=1e-5)
    with pytest.raises(ValueError, match="square"):
        forward_tta(net, torch.randn(1, 3, 8, 10), None, "d4")


def test_each_tta_mode_is_a_prefix_of_the_next():
    """benchmarks/tta.py scores every mode from one pass over the d4 views on this property."""
    x = torch.randn(2, 3, 6, 6)
    d4 = tta_views(x, "d4")
    for mode in ("none", "hflip", "flips"):
        views = tta_views(x, mode)
        assert all(torch.equal(a, b) for a, b in zip(views, d4[:len(views)], strict=True))
