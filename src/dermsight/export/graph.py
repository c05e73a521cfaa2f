"""The ONNX graph of a trained DermNet: inputs, outputs, and the in-graph Grad-CAM gradient.

:class:`ExportModule` re-states ``DermNet.forward`` for export with explicit inputs and outputs:

inputs
    ``image`` float32 ``[N, 3, H, W]`` (normalised by the model's ``Preprocess``);
    ``meta`` float32 ``[N, meta_dim]`` (``MetadataEncoder`` output) and ``has_meta`` float32
    ``[N]`` (1 = use ``meta``, 0 = this image has no metadata: the learned "no metadata"
    embedding, exactly what ``model(image, None)`` uses) — both only when ``meta_dim > 0``.
outputs
    ``diagnosis_logits`` ``[N, C]``; ``lighting_logit`` ``[N]`` (1 = poor photo; when the model
    has a lighting head); ``embedding`` ``[N, F]`` (pooled backbone features); and, for
    Grad-CAM without torch, ``feature_map`` ``[N, F, h, w]`` (the backbone's last activation,
    whose spatial mean is ``embedding``) and ``class_gradients`` ``[N, C, F]``: the exact
    derivative of every class logit with respect to ``embedding``, computed analytically in the
    graph for the small head (linear classifier after no / concat / gated fusion).

Since ``embedding = mean_{ij} feature_map[:, :, i, j]``, ``d logit_c / d A_k(i, j) =
class_gradients[c, k] / (h·w)``; Grad-CAM's channel weights (the spatial mean of that gradient)
are therefore ``class_gradients[c] / (h·w)`` and the map is ``ReLU(Σ_k w_k A_k)``, as
``pytorch_grad_cam.GradCAM`` computes on the layer that produces ``feature_map``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from dermsight.errors import ConfigError

INPUTS = ("image", "meta", "has_meta")
OUTPUTS = ("diagnosis_logits", "lighting_logit", "embedding", "feature_map", "class_gradients")
DEFAULT_OPSET = 17


class ExportModule(nn.Module):
    """``DermNet`` with the export's inputs and outputs (see the module docstring)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from dermsight.models.fusion import ConcatFusion, GatedFusion, NoFusion

        self.model = model.eval()
        self.meta_dim = int(getattr(model, "meta_dim", 0))
        fusion = model.fusion
        if isinstance(fusion, GatedFusion):
            self.kind = "gated"
        elif isinstance(fusion, ConcatFusion):
            self.kind = "concat"
        elif isinstance(fusion, NoFusion):
            self.kind = "none"
        else:
            raise ConfigError(f"cannot export fusion {type(fusion).__name__}: known are "
                              "NoFusion, ConcatFusion and GatedFusion")
        self.has_lighting = getattr(model, "lighting", None) is not None
        self.num_features = int(model.num_features)

    @property
    def input_names(self) -> list[str]:
        return ["image", "meta", "has_meta"] if self.meta_dim > 0 else ["image"]

    @property
    def output_names(self) -> list[str]:
        return [n for n in OUTPUTS if n != "lighting_logit" or self.has_lighting]

    def _meta_embedding(self, meta: Tensor, has_meta: Tensor) -> Tensor:
        encoder = self.model.fusion.encoder
        encoded = encoder.mlp(meta)
        missing = encoder.missing.unsqueeze(0).expand_as(encoded)
        return torch.where(has_meta.unsqueeze(1) > 0.5, encoded, missing)

    def forward(self, image: Tensor, meta: Tensor | None = None,
                has_meta: Tensor | None = None) -> tuple[Tensor, ...]:
        model = self.model
        x = model.color(image) if model.color is not None else image
        fmap = model.backbone.forward_features(x)
        pooled = model.backbone.forward_head(fmap, pre_logits=True)
        weight = model.classifier.weight  # [C, fusion.out_dim]
        if self.kind == "none":
            fused, dfused = pooled, torch.ones_like(pooled)
        else:
            m = self._meta_embedding(meta, has_meta)
            fusion = model.fusion
            if self.kind == "concat":
                fused, dfused = torch.cat([pooled, m], dim=1), torch.ones_like(pooled)
            else:  # gated: sigmoid(tanh(x * f(m)) + g(m))
                scale = fusion.scale(m)
                u = torch.tanh(pooled * scale)
                fused = torch.sigmoid(u + fusion.shift(m))
                dfused = fused * (1 - fused) * (1 - u * u) * scale
        logits = model.classifier(fused)  # head dropout is the identity in eval mode
        grads = weight[:, : self.num_features].unsqueeze(0) * dfused.unsqueeze(1)
        out = [logits]
        if self.has_lighting:
            out.append(model.lighting(pooled).squeeze(1))
        return (*out, pooled, fmap, grads)


def example_inputs(module: ExportModule, input_size: tuple[int, int], batch: int = 2
                   ) -> tuple[Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, *input_size, generator=gen)
    if module.meta_dim == 0:
        return (image,)
    meta = torch.randn(batch, module.meta_dim, generator=gen)
    has_meta = torch.tensor([1.0, 0.0] * (batch // 2) + [1.0] * (batch % 2))
    return image, meta, has_meta


def check_pooling(module: ExportModule, inputs: tuple[Tensor, ...], tol: float = 1e-4) -> bool:
    """True when ``embedding`` is the spatial mean of ``feature_map`` (what Grad-CAM needs)."""
    with torch.no_grad():
        out = module(*inputs)
    pooled, fmap = out[-3], out[-2]
    return fmap.ndim == 4 and bool(torch.allclose(fmap.mean((2, 3)), pooled, atol=tol))


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int], *,
                opset: int = DEFAULT_OPSET) -> ExportModule:
    """Write ``model`` (a DermNet in eval mode) as ONNX to ``path`` with a dynamic batch axis."""
    import warnings

    module = ExportModule(model).eval()
    inputs = example_inputs(module, input_size)
    dynamic = {name: {0: "batch"} for name in module.input_names + module.output_names}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, inputs, str(path), input_names=module.input_names,
                          output_names=module.output_names, dynamic_axes=dynamic,
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    import onnx

    onnx.checker.check_model(str(path))
    return module
