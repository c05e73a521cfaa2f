"""The photo-type router's network: a frozen ImageNet backbone and a linear photo-type head.

:class:`PhotoTypeNet` runs EfficientNet-Lite0 with its packaged ImageNet weights (see
:mod:`dermsight.models.backbones`) and returns ``type_logits`` ``[N, 3]`` over
:data:`dermsight.phototype.PHOTO_TYPES`, ``imagenet_logits`` ``[N, 1000]`` (the shipped ImageNet
classifier: what everyday object the photo most looks like, used in the refusal message) and the
pooled ``embedding`` ``[N, F]``. Only the head is learned (:mod:`dermsight.train.router`); the
backbone is never fine-tuned, so the ImageNet head keeps its meaning.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dermsight.models.backbones import create_backbone, pretrained_cfg
from dermsight.phototype import PHOTO_TYPES

ROUTER_BACKBONE = "tf_efficientnet_lite0"


class PhotoTypeNet(nn.Module):
    """Frozen ImageNet backbone + linear photo-type head (see the module docstring)."""

    def __init__(self, backbone: str = ROUTER_BACKBONE, *, pretrained: bool | str = True) -> None:
        super().__init__()
        self.backbone_name = backbone
        self.backbone = create_backbone(backbone, pretrained=pretrained, num_classes=1000)
        self.num_features = int(self.backbone.num_features)
        self.type_head = nn.Linear(self.num_features, len(PHOTO_TYPES))
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    @property
    def data_config(self) -> dict:
        return pretrained_cfg(self.backbone_name)

    def embed(self, image: Tensor) -> Tensor:
        return self.backbone.forward_head(self.backbone.forward_features(image),
                                          pre_logits=True)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        embedding = self.embed(image)
        return {"type_logits": self.type_head(embedding),
                "imagenet_logits": self.backbone.get_classifier()(embedding),
                "embedding": embedding}

    @torch.no_grad()
    def set_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        """Load a fitted linear head (``weight`` [3, F], ``bias`` [3])."""
        w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        b = torch.as_tensor(np.asarray(bias), dtype=torch.float32)
        if w.shape != self.type_head.weight.shape or b.shape != self.type_head.bias.shape:
            raise ValueError(f"head shapes {tuple(w.shape)}, {tuple(b.shape)} do not match "
                             f"{tuple(self.type_head.weight.shape)}")
        self.type_head.weight.copy_(w)
        self.type_head.bias.copy_(b)
