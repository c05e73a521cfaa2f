"""A learnable colour-calibration layer: per-pixel affine map of the (normalised) RGB input.

Dermatology photos come from many cameras and lights; a 3×3 colour matrix plus bias learned in
front of the backbone absorbs a global colour cast. It starts as the identity, and ``penalty()``
keeps it close to the identity (add ``λ · penalty()`` to the loss).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ColorCalibration"]


class ColorCalibration(nn.Module):
    """``y[b, :, h, w] = weight @ x[b, :, h, w] + bias``; ``x``, ``y``: ``[B, 3, H, W]``.

    ``weight`` ``[3, 3]`` starts at the identity and ``bias`` ``[3]`` at zero, so a new layer
    returns its input unchanged.
    """

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        # a 1×1 convolution: the same per-pixel matrix product, and export-friendly
        return F.conv2d(x, self.weight[:, :, None, None], self.bias)

    def penalty(self) -> Tensor:
        """Squared L2 distance to the identity, ``‖weight − I‖²_F + ‖bias‖²``: a scalar."""
        eye = torch.eye(self.weight.shape[0], device=self.weight.device, dtype=self.weight.dtype)
        return (self.weight - eye).pow(2).sum() + self.bias.pow(2).sum()

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}"
