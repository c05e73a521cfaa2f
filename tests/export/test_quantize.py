"""Which convolutions the int8 export keeps in float (``sensitive_convs``), on a hand-built
MobileNet-style ONNX graph: stem, depthwise, linear projection + residual, expansion, head."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from dermsight.export.quantize import sensitive_convs  # noqa: E402


def _conv(name, x, out, cin, cout, k, group=1):
    w = numpy_helper.from_array(np.zeros((cout, cin // group, k, k), np.float32), f"{name}.w")
    node = helper.make_node("Conv", [x, w.name], [out], name=name, group=group,
                            kernel_shape=[k, k], pads=[k // 2] * 4)
    return node, w


def _graph():
    nodes, inits = [], []

    def add(node_w):
        nodes.append(node_w[0])
        inits.append(node_w[1])

    add(_conv("stem", "image", "s", 3, 8, 3))
    nodes.append(helper.make_node("Clip", ["s"], ["s_act"], name="stem_act"))
    add(_conv("dw", "s_act", "d", 8, 8, 3, group=8))
    nodes.append(helper.make_node("Clip", ["d"], ["d_act"], name="dw_act"))
    add(_conv("project", "d_act", "p", 8, 8, 1))
    nodes.append(helper.make_node("Add", ["p", "s_act"], ["r"], name="residual"))
    add(_conv("expand", "r", "e", 8, 16, 1))
    nodes.append(helper.make_node("Clip", ["e"], ["e_act"], name="expand_act"))
    add(_conv("head", "e_act", "h", 16, 32, 1))
    nodes.append(helper.make_node("Clip", ["h"], ["feature_map"], name="head_act"))
    graph = helper.make_graph(
        nodes, "mini", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("feature_map", TensorProto.FLOAT, [1, 32, 8, 8])],
        initializer=inits)
    return helper.make_model(graph)


def test_each_kind_of_sensitive_conv_is_found():
    model = _graph()
    assert sensitive_convs(model, ("depthwise",)) == ["dw"]
    assert sensitive_convs(model, ("stem",)) == ["stem"]
    assert sensitive_convs(model, ("head",)) == ["head"]
    # only the 1x1 conv with no activation after it (the expansion and head are activated)
    assert sensitive_convs(model, ("project",)) == ["project"]
    assert sensitive_convs(model) == ["dw", "head", "project", "stem"]
    with pytest.raises(ValueError, match="unknown keep_fp32"):
        sensitive_convs(model, ("everything",))
