"""ONNX generators (the community exports of the TensorFlow AnimeGANv2/v3 releases, or any
image-to-image ONNX file) made to look like every other generator here.

The package's convention is one tensor, 1 x 3 x H x W float32 in [-1, 1], in and out, at any
H and W. An exported graph may instead want NHWC (TensorFlow exports), another value range,
or a height and width that are multiples of 8, 16 or 32. :meth:`OnnxGenerator.adapted`
wraps the graph once, in ONNX itself, so that every runtime (OpenVINO f32/bf16, the int8
pass, ONNX Runtime) runs the same adapted graph and nothing else adapts anything:

    x (1x3xHxW, [-1, 1]) -> edge-pad H, W up to the multiple -> scale to the model's range
      -> transpose to NHWC (if the model wants it) -> the model -> back to NCHW
      -> scale back to [-1, 1] -> crop to H x W

The layout is read from the graph's input shape (a dimension of 3 last: NHWC; second:
NCHW); the value range and the multiple come from the style (the AnimeGAN exports'
own inference scripts use [-1, 1] and multiples of 32 (v2) or 8 (v3)).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

LAYOUTS = ("NCHW", "NHWC")
_PREFIX = "animegan_adapt_"


class OnnxModelError(ValueError):
    """The file is not an ONNX image generator this package can run; the message says why."""


def _dims(value_info) -> list[int | str]:
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def detect_layout(dims: list[int | str]) -> str:
    """NCHW or NHWC from a 4-D image tensor's shape (3 colour channels second or last)."""
    if len(dims) != 4:
        raise OnnxModelError(f"expected a 4-D image input, the graph's input has shape {dims}")
    if dims[1] == 3 and dims[3] != 3:
        return "NCHW"
    if dims[3] == 3 and dims[1] != 3:
        return "NHWC"
    if dims[1] == 3 and dims[3] == 3:
        raise OnnxModelError(f"cannot tell NCHW from NHWC for an input of shape {dims}; name the layout")
    raise OnnxModelError(f"the graph's input {dims} has no dimension of 3 colour channels second or last")


@dataclass(frozen=True)
class OnnxGenerator:
    """An ONNX image generator file and how to feed it (see the module's docstring)."""

    path: Path
    layout: str  # of the graph's input (and output)
    value_range: tuple[float, float] = (-1.0, 1.0)
    multiple: int = 1  # height and width must be multiples of this
    input_name: str = ""

    @classmethod
    def load(cls, path: str | Path, *, value_range: tuple[float, float] = (-1.0, 1.0), multiple: int = 1,
             layout: str | None = None) -> OnnxGenerator:
        """Read the graph's input and check it is an image generator; ``layout`` overrides detection."""
        import onnx

        path = Path(path)
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # DecodeError and friends: not an ONNX file
            raise OnnxModelError(f"{path} is not a readable ONNX file ({type(exc).__name__}).") from None
        try:  # an op no runtime knows, a broken graph: said here, not as a runtime's traceback later
            onnx.checker.check_model(str(path))  # by path: external data is found beside it
        except Exception as exc:
            raise OnnxModelError(f"{path} is not a valid ONNX model ({_first_line(exc)}).") from None
        graph_inputs = _real_inputs(model)
        if len(graph_inputs) != 1 or len(model.graph.output) != 1:
            raise OnnxModelError(f"{path}: expected one image in and one image out, the graph has "
                                 f"{len(graph_inputs)} inputs and {len(model.graph.output)} outputs")
        try:
            found = layout or detect_layout(_dims(graph_inputs[0]))
        except OnnxModelError as exc:
            raise OnnxModelError(f"{path}: {exc}") from None
        if found not in LAYOUTS:
            raise OnnxModelError(f"layout must be one of {LAYOUTS}, not {found!r}")
        lo, hi = (float(v) for v in value_range)
        if not hi > lo:
            raise OnnxModelError(f"value range {value_range} must go from low to high")
        return cls(path, found, (lo, hi), max(1, int(multiple)), graph_inputs[0].name)

    @cached_property
    def _bytes(self) -> bytes:
        return self.adapted().SerializeToString()

    def adapted_bytes(self) -> bytes:
        """The adapted graph, serialized (what OpenVINO and ONNX Runtime read)."""
        return self._bytes

    def fingerprint(self) -> str:
        """sha256 of the file and of how it is fed (the int8 artefacts are keyed by it)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        digest.update(f"{self.layout}{self.value_range}{self.multiple}{_PREFIX}v1".encode())
        return digest.hexdigest()

    def adapted(self):
        """The graph wrapped to take and give 1 x 3 x H x W in [-1, 1] at any H, W (an onnx.ModelProto)."""
        import onnx
        from onnx import TensorProto, helper

        model = onnx.load(str(self.path))
        graph = model.graph
        opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < 11:  # Pad with tensor inputs, Slice with inputs need opset 11
            raise OnnxModelError(f"{self.path}: ONNX opset {opset} is too old (11 or newer is needed)")
        inner_in, inner_out = self.input_name, graph.output[0].name
        out_layout = self.layout
        try:
            out_layout = detect_layout(_dims(graph.output[0]))
        except OnnxModelError:
            pass  # an output without a static channel count: assume it matches the input
        p = _PREFIX
        lo, hi = self.value_range
        scale, shift = (hi - lo) / 2.0, (hi + lo) / 2.0
        pre, post, consts = [], [], []

        def const(name: str, values, dtype=np.int64) -> str:
            consts.append(onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), p + name))
            return p + name

        x = p + "image"
        cur = x
        if self.multiple > 1:
            pre += [
                helper.make_node("Shape", [x], [p + "shape"]),
                helper.make_node("Slice", [p + "shape", const("i2", [2]), const("i4", [4])], [p + "hw"]),
                helper.make_node("Mod", [p + "hw", const("m", [self.multiple])], [p + "rem"]),
                helper.make_node("Sub", [p + "m", p + "rem"], [p + "short"]),
                helper.make_node("Mod", [p + "short", p + "m"], [p + "pad_hw"]),
                helper.make_node("Concat", [const("zeros6", [0] * 6), p + "pad_hw"], [p + "pads"], axis=0),
                helper.make_node("Pad", [cur, p + "pads"], [p + "padded"], mode="edge"),
            ]
            cur = p + "padded"
        if (scale, shift) != (1.0, 0.0):
            pre += [helper.make_node("Mul", [cur, const("scale", scale, np.float32)], [p + "scaled"]),
                    helper.make_node("Add", [p + "scaled", const("shift", shift, np.float32)], [p + "ranged"])]
            cur = p + "ranged"
        if self.layout == "NHWC":
            pre.append(helper.make_node("Transpose", [cur], [p + "nhwc"], perm=[0, 2, 3, 1]))
            cur = p + "nhwc"
        pre.append(helper.make_node("Identity", [cur], [inner_in]))

        cur = inner_out
        if out_layout == "NHWC":
            post.append(helper.make_node("Transpose", [cur], [p + "nchw"], perm=[0, 3, 1, 2]))
            cur = p + "nchw"
        if (scale, shift) != (1.0, 0.0):
            post += [helper.make_node("Sub", [cur, p + "shift"], [p + "centred"]),
                     helper.make_node("Div", [p + "centred", p + "scale"], [p + "unit"])]
            cur = p + "unit"
        if self.multiple > 1:
            post.append(helper.make_node("Slice", [cur, const("zeros2", [0, 0]), p + "hw", const("axes", [2, 3])],
                                         [p + "cropped"]))
            cur = p + "cropped"
        y = p + "result"
        post.append(helper.make_node("Identity", [cur], [y]))

        nodes = pre + list(graph.node) + post
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(consts)
        keep = [i for i in graph.input if i.name != inner_in]  # initializers listed as inputs (old exports)
        del graph.input[:]
        graph.input.extend([helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 3, "height", "width"]), *keep])
        del graph.output[:]
        graph.output.extend([helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 3, "height", "width"])])
        # the inner input/output shapes were fixed by the exporter for its own layout; drop stale infos
        kept_info = [v for v in graph.value_info if v.name not in (inner_in, inner_out)]
        del graph.value_info[:]
        graph.value_info.extend(kept_info)
        return model


def _real_inputs(model) -> list:
    """Graph inputs that are not initializers (old exporters list weights as inputs too)."""
    weights = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in weights]


__all__ = ["LAYOUTS", "OnnxGenerator", "OnnxModelError", "detect_layout"]
