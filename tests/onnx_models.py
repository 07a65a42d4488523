"""Small ONNX generators for the tests, written with onnx.helper, in the two layouts the
Hub's exports come in.

- :func:`channel_rotation`: NHWC, values in [-1, 1] or [0, 1]: out R = in G, out G = in B,
  out B = in R, exactly (a 1x1 mixing matrix). A wrong layout, channel order, value range,
  padding or crop shows as wrong colours or shifted pixels.
- :func:`small_convnet`: NCHW, a few 3x3 convolutions with a 2x2 average pool and a 2x
  upsample in between and a skip connection, so H and W must be even (the size rule):
  an odd size fails inside the graph unless it is padded first. Enough convolutions for
  the int8 pass to have something to quantize.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROTATION = [1, 2, 0]  # out channel c = in channel ROTATION[c]
OPSET = 17


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def channel_rotation(path: Path, value_range: tuple[float, float] = (-1.0, 1.0), name: str = "input_image"
                     ) -> Path:
    """NHWC in the given range -> NHWC, the channels rotated (TensorFlow-export style: a
    1 x H x W x 3 input with a free height and width)."""
    mix = np.zeros((3, 3), np.float32)
    for out_c, in_c in enumerate(ROTATION):
        mix[in_c, out_c] = 1.0  # x (.., 3) @ mix -> (.., 3)
    graph = helper.make_graph(
        [helper.make_node("MatMul", [name, "mix"], ["rotated"]),
         helper.make_node("Identity", ["rotated"], ["generator_output"])],
        "rotation",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "h", "w", 3])],
        [helper.make_tensor_value_info("generator_output", TensorProto.FLOAT, [1, "h", "w", 3])],
        [numpy_helper.from_array(mix, "mix")],
    )
    return _save(graph, path)


def small_convnet(path: Path, seed: int = 0, width: int = 16) -> Path:
    """NCHW [-1, 1] -> NCHW [-1, 1]: conv, pool 2x2, conv, upsample 2x, add the skip,
    conv, conv, tanh. Even heights and widths only."""
    rng = np.random.default_rng(seed)

    def conv(name: str, cin: int, cout: int) -> list:
        w = rng.normal(0, (2.0 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        return [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]

    inits = conv("c1", 3, width) + conv("c2", width, width) + conv("c3", width, width) + conv("c4", width, 3)
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up_scales"))
    inits.append(numpy_helper.from_array(np.array([0.5], np.float32), "half"))
    pads = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["image", "c1_w", "c1_b"], ["a1"], **pads),
        helper.make_node("Relu", ["a1"], ["r1"]),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2_w", "c2_b"], ["a2"], **pads),
        helper.make_node("Relu", ["a2"], ["r2"]),
        helper.make_node("Resize", ["r2", "", "up_scales"], ["u2"], mode="nearest"),
        helper.make_node("Add", ["u2", "r1"], ["s2"]),  # shapes match only for even sizes
        helper.make_node("Conv", ["s2", "c3_w", "c3_b"], ["a3"], **pads),
        helper.make_node("Relu", ["a3"], ["r3"]),
        helper.make_node("Conv", ["r3", "c4_w", "c4_b"], ["a4"], **pads),
        helper.make_node("Mul", ["a4", "half"], ["h4"]),
        helper.make_node("Add", ["h4", "image"], ["mixed"]),  # keep the photo recognisable
        helper.make_node("Tanh", ["mixed"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes, "small_convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])],
        inits,
    )
    return _save(graph, path)
