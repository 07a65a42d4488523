"""The injected-statistics network (:class:`animegan.models.injected.InjectedNet`) on the
backend a photo runs on: PyTorch eager (float32 or bf16) or OpenVINO (float, bf16, or
int8 with the very quantization ranges of the style's int8 backend).

- ``engine.tile(x, stats, masks, grids, stop=None)`` -> ``(image or None, measured)``:
  a tile with the whole picture's statistics; with ``stop=k`` the pass ends at
  normalisation layer k and returns only what that layer measured (mean, variance), so a
  statistics pass costs only the layers before it.
- ``engine.release()``: let go of what the passes so far keep (OpenVINO's compiled passes
  keep their working memory).
- ``engine.frame(x, stats, alpha, grids)`` -> ``(image, measured)``: a whole picture
  normalised with ``alpha * stats + (1 - alpha) * its own`` (``alpha = 0``: the plain
  generator), reporting its own statistics (steadier video carries them to the next frame).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from ..models.injected import InjectedNet, StopPass, UnsupportedGenerator
from ..runtime import Runtime

__all__ = ["OpenVINOEngine", "TorchEngine", "UnsupportedGenerator", "engine_for"]

Grids = tuple[np.ndarray, ...]
Masks = tuple[np.ndarray, ...]


class TorchEngine:
    """The passes in PyTorch eager: float32 (channels_last, or NCHW for torch-exact) or bf16."""

    family = "torch"

    def __init__(self, generator: nn.Module, name: str = "torch-fp32") -> None:
        self.name = name
        self._nets = {mode: InjectedNet(generator, mode).eval() for mode in ("tiles", "frames")}
        net = self._nets["tiles"]
        net.measure_all = False  # a tile pass returns one layer's statistics, or none
        self.layers, self.levels, self.multiple = net.layers, net.levels, net.multiple
        self._bf16 = name == "torch-bf16"
        self._layout = torch.contiguous_format if name == "torch-exact" else torch.channels_last
        self._lock = threading.Lock()  # the layers of a net share one pass state

    def _run(self, mode: str, x: np.ndarray, args: tuple, stop: int | None = None):
        net = self._nets[mode]
        tensors = [torch.from_numpy(np.asarray(a)) for a in args]
        with self._lock, torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=self._bf16):
            t = torch.from_numpy(x).contiguous(memory_format=self._layout)
            if stop is None:
                y, measured = net(t, *tensors)
                return y.float().contiguous().numpy(), measured.float().numpy()
            net.stop = stop
            try:
                net(t, *tensors)
            except StopPass:
                pass
            finally:
                net.stop = None
            return None, net.state.measured[stop].float().numpy()

    def release(self) -> None:
        """Nothing to let go: PyTorch's memory goes back with the allocator's policy."""

    def tile(self, x: np.ndarray, stats: np.ndarray, masks: Masks, grids: Grids, stop: int | None = None):
        y, measured = self._run("tiles", x, (stats, *masks, *grids), stop)
        return y, (measured if stop is not None else None)

    def frame(self, x: np.ndarray, stats: np.ndarray, alpha: float, grids: Grids):
        return self._run("frames", x, (stats, np.float32(alpha), *grids))


class OpenVINOEngine:
    """The passes as OpenVINO models. The network is converted once per mode; each
    truncated statistics pass is cut out of it (OpenVINO keeps only the nodes an output
    needs), and so is the image-only pass a tile's result comes from.

    With ``ranges`` (the int8 backend's), every pass runs int8, statistics included, so
    tiles are normalised with the statistics of int8 activations, as the untiled int8
    picture is. One tile pass is compiled at a time (a statistics pass, or the image) and
    dropped for the next: a compiled model keeps its working memory, and 24 of them would
    hold gigabytes.
    """

    family = "openvino"

    def __init__(self, generator: nn.Module, rt: Runtime, hint: str, ranges: dict | None = None,
                 plain_order: list[str] | None = None) -> None:
        self.name = "openvino-int8" if ranges else f"openvino-{hint}"
        self._nets = {mode: InjectedNet(generator, mode).eval() for mode in ("tiles", "frames")}
        net = self._nets["tiles"]
        self.layers, self.levels, self.multiple = net.layers, net.levels, net.multiple
        self._ranges, self._plain_order = ranges, plain_order or []
        self._config = rt.openvino_config(hint)
        self._core = rt.openvino()
        self._graphs: dict[str, object] = {}
        self._compiled: dict[tuple, tuple] = {}
        self._lock = threading.Lock()

    def _graph(self, mode: str, int8: bool):
        """The converted network of ``mode`` (float, or with the int8 ranges)."""
        key = f"{mode}-int8" if int8 else mode
        if key not in self._graphs:
            if int8:
                from ..backends.openvino import build_graph

                base = self._graph(mode, False)
                self._graphs[key] = build_graph(base, _map_ranges(base, self._ranges, self._plain_order))
            else:
                self._graphs[key] = _convert(self._nets[mode])
        return self._graphs[key]

    def _compiled_for(self, mode: str, output: int | None):
        """Compiled model and input order: ``output=None`` the image only, else layer ``output``'s statistics."""
        key = (mode, output)
        if key not in self._compiled:
            # one tile pass compiled at a time (a statistics pass, or the image): each keeps its
            # working memory, and the tiles of a big picture are as big as the memory allows
            for old in [k for k in self._compiled if k[0] == "tiles"]:
                del self._compiled[old]
            import openvino as ov

            int8 = bool(self._ranges)
            graph = self._graph(mode, int8)
            params = list(graph.get_parameters())
            if output is None:
                result = graph.outputs[0] if mode == "tiles" else None
            else:
                result = _layer_outputs(graph)[output]
            model = graph if result is None else ov.Model([result], params)
            names = {p.output(0).get_any_name(): i for i, p in enumerate(params)}
            self._compiled[key] = (self._core.compile_model(model, "CPU", self._config), names)
        return self._compiled[key]

    def release(self) -> None:
        """Let go of every compiled pass and its working memory (the passes of a big
        picture's statistics, before its tiles: 0.9 GB at 12 MP on int8, measured)."""
        with self._lock:
            self._compiled.clear()

    def _infer(self, mode: str, output: int | None, inputs: list) -> list[np.ndarray]:
        with self._lock:
            compiled, names = self._compiled_for(mode, output)
            request = compiled.create_infer_request()  # dropped after the pass: its buffers go with it
            # a cut-out model keeps only the inputs it needs
            request.infer({port: np.asarray(inputs[names[port.get_any_name()]], order="C")
                           for port in compiled.inputs})
            return [request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs))]

    def tile(self, x: np.ndarray, stats: np.ndarray, masks: Masks, grids: Grids, stop: int | None = None):
        inputs = [x, stats, *masks, *grids]
        if stop is None:
            return self._infer("tiles", None, inputs)[0], None
        return None, self._infer("tiles", stop, inputs)[0].reshape(2)

    def frame(self, x: np.ndarray, stats: np.ndarray, alpha: float, grids: Grids):
        y, measured = self._infer("frames", None, [x, stats, np.float32(alpha), *grids])
        return y, measured


def _convert(net: InjectedNet):
    import openvino as ov

    from ..backends.openvino import convert
    from .layout import sampling_grids

    h = w = 64
    i64, f32 = ov.Type.i64, ov.Type.f32
    grids = tuple(torch.from_numpy(g) for g in sampling_grids((h, w)))
    if net.mode == "tiles":
        extra = tuple(torch.ones(1, 1, h >> level, w >> level) for level in range(3))
        extra_shapes = [([1, 1, -1, -1], f32)] * 3
    else:
        extra, extra_shapes = (torch.tensor(0.5),), [([], f32)]
    example = (torch.zeros(1, 3, h, w), torch.ones(net.layers, 2), *extra, *grids)
    shapes = [([1, 3, -1, -1], f32), ([net.layers, 2], f32), *extra_shapes]
    shapes += [([-1], i64), ([-1], i64), ([-1], f32)] * 4
    if net.kind != "animeganv2":  # no upsampling positions
        example, shapes = example[:len(example) - len(grids)], shapes[:len(shapes) - 12]
    return convert(net, example, [(ov.PartialShape(s), t) for s, t in shapes])


def _layer_outputs(graph) -> list:
    """Each layer's [mean, var] output: the inputs of the Concat before the second Result."""
    node = graph.outputs[1].get_node()
    while node.get_type_name() == "Result":
        node = node.input(0).get_source_output().get_node()
    return [node.input(i).get_source_output() for i in range(node.get_input_size())]


def _map_ranges(graph, ranges: dict, plain_order: list[str]) -> dict:
    """The int8 backend's ranges (keyed by the plain graph's convolution names, in
    ``plain_order``) keyed by this graph's convolutions, matched in data order."""
    from ..backends.openvino import build_graph, quant_points

    mine = list(quant_points(build_graph(graph)))
    if len(mine) != len(plain_order):
        raise ValueError(f"{len(mine)} convolutions here, {len(plain_order)} in the int8 model")
    return {name: ranges[plain] for name, plain in zip(mine, plain_order, strict=True) if plain in ranges}


def engine_for(generator, backend, rt: Runtime) -> TorchEngine | OpenVINOEngine:
    """The engine that runs ``generator`` as ``backend`` does (for ``auto``: the backend
    serving now): OpenVINO int8 with its ranges, OpenVINO float of its precision, or
    PyTorch (an ONNX Runtime backend's float32 is matched by PyTorch float32). Raises
    :class:`UnsupportedGenerator` for a generator without GroupNorm(1) layers (an ONNX style)."""
    backend = getattr(backend, "current", backend)
    if not isinstance(generator, nn.Module):
        raise UnsupportedGenerator("an ONNX style's normalisation cannot be given the whole picture's statistics")
    if backend.family == "openvino":
        ranges = getattr(backend, "ranges", None)
        plain = None
        if ranges:
            from ..backends import openvino as ovb

            plain = list(ovb.quant_points(ovb.build_graph(ovb.to_openvino(generator, rt))))
        return OpenVINOEngine(generator, rt, backend.hint, ranges, plain)
    return TorchEngine(generator, backend.name if backend.name in ("torch-bf16", "torch-exact") else "torch-fp32")
