"""Colour calibration: identity at init, gradients flow, penalty measures the drift."""

from __future__ import annotations

import torch

from dermsight.models.color import ColorCalibration


def test_identity_at_init():
    layer = ColorCalibration()
    x = torch.randn(2, 3, 8, 8)
    assert torch.allclose(layer(x), x, atol=1e-6)
    assert layer.penalty().item() == 0.0


def test_matches_per_pixel_matrix_and_gradients_flow():
    layer = ColorCalibration()
    with torch.no_grad():
        layer.weight.add_(0.1 * torch.randn(3, 3))
        layer.bias.add_(0.1)
    x = torch.randn(2, 3, 5, 4)
    expected = torch.einsum("ij,bjhw->bihw", layer.weight, x) + layer.bias[:, None, None]
    assert torch.allclose(layer(x), expected, atol=1e-5)
    layer(x).square().mean().backward()
    assert layer.weight.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0


def test_penalty_positive_after_change_and_differentiable():
    layer = ColorCalibration()
    with torch.no_grad():
        layer.weight[0, 1] = 0.5
        layer.bias[2] = -0.5
    penalty = layer.penalty()
    assert torch.isclose(penalty, torch.tensor(0.5))
    penalty.backward()
    assert layer.weight.grad[0, 1] > 0
