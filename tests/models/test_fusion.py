"""Metadata fusion: shapes, meta=None, partly missing metadata, registry errors."""

from __future__ import annotations

import pytest
import torch

from dermsight.errors import ConfigError
from dermsight.models.fusion import MetaEncoder, create_fusion, list_fusions

IMG, META, HIDDEN, B = 32, 6, 16, 4


@pytest.mark.parametrize(("kind", "out_dim"), [("concat", IMG + HIDDEN), ("gated", IMG)])
def test_shapes_with_none_and_partly_missing_meta(kind, out_dim):
    fusion = create_fusion(kind, IMG, META, hidden=HIDDEN).eval()
    img = torch.randn(B, IMG)
    meta = torch.randn(B, META)
    partly = meta.clone()
    partly[:2, :3] = 0.0  # values of missing fields...
    partly[:2, 3:] = 1.0  # ...and their missing indicators
    for m in (meta, partly, None):
        out = fusion(img, m)
        assert out.shape == (B, out_dim) and torch.isfinite(out).all()
    assert fusion.out_dim == out_dim
    if kind == "gated":
        assert ((out > 0) & (out < 1)).all()


def test_meta_none_uses_learned_embedding():
    enc = MetaEncoder(META, HIDDEN)
    assert torch.equal(enc(None, 3), torch.zeros(3, HIDDEN))
    with torch.no_grad():
        enc.missing.fill_(0.5)
    assert torch.equal(enc(None, 2), torch.full((2, HIDDEN), 0.5))


def test_meta_dropout_trains_the_missing_embedding():
    fusion = create_fusion("concat", IMG, META, hidden=HIDDEN, meta_dropout=1.0).train()
    fusion(torch.randn(B, IMG), torch.randn(B, META)).sum().backward()
    assert fusion.encoder.missing.grad is not None
    assert fusion.encoder.missing.grad.abs().sum() > 0


def test_batch_norm_option_and_gradients():
    fusion = create_fusion("gated", IMG, META, hidden=HIDDEN, norm="batch").train()
    img = torch.randn(B, IMG, requires_grad=True)
    fusion(img, torch.randn(B, META)).sum().backward()
    assert img.grad.abs().sum() > 0


def test_none_fusion_passes_image_features_through():
    fusion = create_fusion("none", IMG, 0)
    img = torch.randn(B, IMG)
    assert fusion(img) is img
    with pytest.raises(ValueError, match="meta=None"):
        fusion(img, torch.randn(B, META))


def test_errors():
    assert list_fusions() == ["concat", "gated", "none"]
    with pytest.raises(ConfigError, match="unknown fusion 'film'"):
        create_fusion("film", IMG, META)
    with pytest.raises(ConfigError, match="meta_dim > 0"):
        create_fusion("concat", IMG, 0)
    with pytest.raises(ValueError, match=r"meta must be \[B, 6\], got \[4, 5\]"):
        create_fusion("concat", IMG, META)(torch.randn(B, IMG), torch.randn(B, 5))
