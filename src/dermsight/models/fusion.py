"""The metadata branch and how it is fused with pooled image features.

Metadata arrive as a float vector ``[B, meta_dim]`` built by the tabular encoder, which already
encodes missing values explicitly (value 0 plus a missing indicator), so partly missing
metadata need nothing special here. When a whole batch has no metadata (``meta=None``), the
encoded metadata are replaced by a learned "no metadata" embedding (initialised to zeros). It
learns only if training sometimes hides the metadata: ``meta_dropout`` replaces each sample's
encoded metadata by that embedding with this probability during training.

Fusions (``create_fusion(kind, img_dim, meta_dim)``), each with ``out_dim``:

* ``"none"``: image features only (``out_dim = img_dim``);
* ``"concat"``: ``[image features, encoded metadata]`` (``out_dim = img_dim + hidden``);
* ``"gated"``: MetaBlock (Pacheco & Krohling 2021): ``σ(tanh(x ⊙ f(m)) + g(m))`` where ``f``
  and ``g`` are linear maps of the encoded metadata (each followed by LayerNorm where the paper
  uses BatchNorm, so batch size 1 and frozen phases behave): ``f`` scales each image feature and
  the ``tanh`` bounds it, ``g`` shifts it before the sigmoid gate (``out_dim = img_dim``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dermsight.errors import ConfigError

__all__ = [
    "ConcatFusion", "GatedFusion", "MetaEncoder", "NoFusion", "create_fusion", "list_fusions",
]


class MetaEncoder(nn.Module):
    """MLP ``[B, in_dim] -> [B, hidden]``: (Linear → norm → ReLU → Dropout) × 2.

    ``norm``: ``"layer"`` (default; works with any batch size) or ``"batch"``.
    ``forward(None, batch_size)`` returns the learned "no metadata" embedding for every sample.
    """

    def __init__(
        self, in_dim: int, hidden: int = 64, dropout: float = 0.1, *, norm: str = "layer",
        meta_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if in_dim <= 0:
            raise ConfigError(f"metadata encoder needs in_dim > 0, got {in_dim}")
        if norm not in ("layer", "batch"):
            raise ConfigError(f"metadata encoder norm must be 'layer' or 'batch', got {norm!r}")
        norm_layer = nn.LayerNorm if norm == "layer" else nn.BatchNorm1d
        layers: list[nn.Module] = []
        for d_in in (in_dim, hidden):
            layers += [nn.Linear(d_in, hidden), norm_layer(hidden), nn.ReLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers)
        self.missing = nn.Parameter(torch.zeros(hidden))
        self.in_dim, self.out_dim, self.meta_dropout = in_dim, hidden, meta_dropout

    def forward(self, meta: Tensor | None, batch_size: int | None = None) -> Tensor:
        if meta is None:
            if batch_size is None:
                raise ValueError("MetaEncoder(None) needs batch_size")
            return self.missing.expand(batch_size, -1)
        if meta.ndim != 2 or meta.shape[1] != self.in_dim:
            raise ValueError(f"meta must be [B, {self.in_dim}], got {list(meta.shape)}")
        encoded = self.mlp(meta)
        if self.training and self.meta_dropout > 0:
            hide = torch.rand(meta.shape[0], 1, device=meta.device) < self.meta_dropout
            encoded = torch.where(hide, self.missing.expand_as(encoded), encoded)
        return encoded


class NoFusion(nn.Module):
    """Image features only: ``[B, img_dim] -> [B, img_dim]``; metadata must be ``None``."""

    def __init__(self, img_dim: int, meta_dim: int = 0, **_: object) -> None:
        super().__init__()
        self.out_dim = img_dim

    def forward(self, img: Tensor, meta: Tensor | None = None) -> Tensor:
        if meta is not None:
            raise ValueError("this model has no metadata branch (meta_dim=0); pass meta=None")
        return img


class ConcatFusion(nn.Module):
    """``[B, img_dim]``, ``[B, meta_dim] | None`` -> ``[B, img_dim + hidden]``."""

    def __init__(
        self, img_dim: int, meta_dim: int, hidden: int = 64, dropout: float = 0.1, **kwargs
    ) -> None:
        super().__init__()
        self.encoder = MetaEncoder(meta_dim, hidden, dropout, **kwargs)
        self.out_dim = img_dim + hidden

    def forward(self, img: Tensor, meta: Tensor | None = None) -> Tensor:
        return torch.cat([img, self.encoder(meta, img.shape[0])], dim=1)


class GatedFusion(nn.Module):
    """MetaBlock: ``[B, img_dim]``, ``[B, meta_dim] | None`` -> ``[B, img_dim]`` in (0, 1)."""

    def __init__(
        self, img_dim: int, meta_dim: int, hidden: int = 64, dropout: float = 0.1, **kwargs
    ) -> None:
        super().__init__()
        self.encoder = MetaEncoder(meta_dim, hidden, dropout, **kwargs)
        self.scale = nn.Sequential(nn.Linear(hidden, img_dim), nn.LayerNorm(img_dim))  # f
        self.shift = nn.Sequential(nn.Linear(hidden, img_dim), nn.LayerNorm(img_dim))  # g
        self.out_dim = img_dim

    def forward(self, img: Tensor, meta: Tensor | None = None) -> Tensor:
        m = self.encoder(meta, img.shape[0])
        return torch.sigmoid(torch.tanh(img * self.scale(m)) + self.shift(m))


_FUSIONS: dict[str, type[nn.Module]] = {
    "none": NoFusion, "concat": ConcatFusion, "gated": GatedFusion,
}


def list_fusions() -> list[str]:
    return sorted(_FUSIONS)


def create_fusion(kind: str, img_dim: int, meta_dim: int, **kwargs) -> nn.Module:
    """Build a fusion by name; ``kwargs``: ``hidden``, ``dropout``, ``norm``, ``meta_dropout``."""
    try:
        cls = _FUSIONS[kind]
    except KeyError:
        raise ConfigError(f"unknown fusion '{kind}'; known: {list_fusions()}") from None
    if kind != "none" and meta_dim <= 0:
        raise ConfigError(f"fusion '{kind}' needs metadata (meta_dim > 0); use fusion='none'")
    return cls(img_dim, meta_dim, **kwargs)
