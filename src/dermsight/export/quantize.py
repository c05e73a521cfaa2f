"""int8 quantisation of the exported graph with ``onnxruntime.quantization``.

Static QDQ quantisation (the recommended format for CNNs on CPU): weights int8 per output
channel, activations uint8 with ranges calibrated on real training images
(:class:`ArrayReader`). Only the convolutions are quantised (``op_types_to_quantize``); the
small head (fusion, classifier, the Grad-CAM gradient) and the graph outputs stay float32, so
``embedding``, ``feature_map`` and ``class_gradients`` keep their meaning. Some convolutions
stay float too (:data:`KEEP_FP32`, :func:`sensitive_convs`): depthwise, stem, head and the
linear projections of the inverted-residual blocks. Dynamic quantisation
(``method="dynamic"``) is kept for comparison: ORT's ``ConvInteger`` path is slower than fp32 on
CPU and less accurate for depthwise convolutions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

METHODS = ("static", "dynamic")
CALIBRATIONS = ("minmax", "entropy", "percentile")


class ArrayReader:
    """``onnxruntime.quantization.CalibrationDataReader`` over in-memory model inputs.

    ``inputs`` maps input name → array with the batch on axis 0; whole batches of
    ``batch_size`` (a remainder is left out).
    """

    def __init__(self, inputs: dict[str, np.ndarray], batch_size: int = 16) -> None:
        self.inputs = inputs
        self.batch_size = batch_size
        self._it: Iterator[dict[str, np.ndarray]] | None = None

    def _batches(self) -> Iterator[dict[str, np.ndarray]]:
        n = len(next(iter(self.inputs.values())))
        # whole batches only: the histogram calibrators stack batches of one shape
        for s in range(0, n - self.batch_size + 1, self.batch_size):
            yield {k: np.ascontiguousarray(v[s:s + self.batch_size]) for k, v in
                   self.inputs.items()}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = self._batches()
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


KEEP_FP32 = ("depthwise", "stem", "head", "project")
# ops after which a conv's output is "activated"; a 1x1 conv followed by none of them is a
# linear projection (MobileNetV2-style bottleneck), whose output is added to the residual
ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Mul", "LeakyRelu",
               "Elu", "Tanh", "Softplus"}


def sensitive_convs(model, keep: Sequence[str] = KEEP_FP32) -> list[str]:
    """Names of the Conv nodes of ``model`` (an ``onnx.ModelProto``) to keep in float:
    ``"depthwise"`` (``group`` > 1: one filter per channel quantises badly), ``"stem"`` (convs
    fed by the image, directly or through one conv: colour calibration and the stem),
    ``"head"`` (the last conv, whose output is the Grad-CAM feature map) and ``"project"``
    (pointwise convs with no activation after them: the linear bottlenecks feeding the
    residual sums, where int8 rounding accumulates block after block)."""
    unknown = set(keep) - set(KEEP_FP32)
    if unknown:
        raise ValueError(f"unknown keep_fp32 entries {sorted(unknown)}; known: {KEEP_FP32}")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    inputs = {i.name for i in model.graph.input}
    names: list[str] = []
    if "depthwise" in keep:
        names += [n.name for n in convs if _group(n) > 1]
    if "stem" in keep:
        first = [n for n in convs if set(n.input) & inputs]
        fed = {o for n in first for o in n.output}
        # TF-"same" padding (tf_ backbones) puts a Pad between a tensor and its conv: look
        # through it, so the stem is still found behind the colour layer
        for n in model.graph.node:
            if n.op_type == "Pad" and set(n.input) & (fed | inputs):
                fed |= set(n.output)
        first += [n for n in convs if set(n.input) & fed and n not in first
                  and any(p.op_type == "Pad" and set(p.output) & set(n.input)
                          and set(p.input) & inputs for p in model.graph.node)]
        names += [n.name for n in first] + [n.name for n in convs if set(n.input) & fed]
    if "head" in keep and convs:
        names.append(convs[-1].name)
    if "project" in keep:
        consumers: dict[str, set[str]] = {}
        for n in model.graph.node:
            for i in n.input:
                consumers.setdefault(i, set()).add(n.op_type)
        weight_dims = {i.name: list(i.dims) for i in model.graph.initializer}
        for n in convs:
            following = set().union(*(consumers.get(o, set()) for o in n.output))
            kernel = next((list(a.ints) for a in n.attribute if a.name == "kernel_shape"),
                          weight_dims.get(n.input[1], [])[2:])
            if _group(n) == 1 and kernel == [1, 1] and following \
                    and not following & ACTIVATIONS:
                names.append(n.name)
    return sorted(set(names))


def _group(node) -> int:
    """A Conv node's ``group`` attribute (1 when absent)."""
    return next((a.i for a in node.attribute if a.name == "group"), 1)


def quantize_int8(fp32: str | Path, out: str | Path, calibration: dict[str, np.ndarray] | None,
                  *, method: str = "static", calibrate: str = "minmax",
                  per_channel: bool = True, op_types: Sequence[str] = ("Conv",),
                  keep_fp32: Sequence[str] = KEEP_FP32, exclude: Sequence[str] = ()) -> dict:
    """Quantise ``fp32`` into ``out``; returns the settings used (for model.json).

    ``calibration`` (model inputs, batch on axis 0) is required for ``method="static"``;
    ``keep_fp32`` (:func:`sensitive_convs`) and ``exclude`` (node names) stay in float.
    """
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise ValueError(f"int8 method must be one of {METHODS}, got {method!r}")
    if calibrate not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {calibrate!r}")
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        # shape inference + ORT graph optimisation (folds BatchNorm etc.) before quantising
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        exclude = sorted(set(exclude) | set(sensitive_convs(onnx.load(str(pre)), keep_fp32)))
        settings = {"method": method, "format": "QDQ" if method == "static" else "dynamic",
                    "per_channel": per_channel, "op_types": list(op_types),
                    "keep_fp32": list(keep_fp32), "excluded_nodes": len(exclude)}
        if method == "dynamic":
            quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8,
                             per_channel=per_channel, op_types_to_quantize=list(op_types),
                             nodes_to_exclude=list(exclude))
            return settings
        if not calibration:
            raise ValueError("static int8 quantisation needs calibration inputs")
        n = len(next(iter(calibration.values())))
        quantize_static(
            str(pre), str(out), ArrayReader(calibration), quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=per_channel, op_types_to_quantize=list(op_types),
            nodes_to_exclude=list(exclude),
            calibrate_method={"minmax": CalibrationMethod.MinMax,
                              "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[calibrate],
            extra_options={"CalibMovingAverage": calibrate == "minmax"},
        )
    settings.update(calibration=calibrate, n_calibration_images=int(n))
    return settings
