"""Keras 2.x HDF5 (full model: config + weights) -> an equivalent torch `nn.Module`.

The module runs NCHW float input and reproduces TensorFlow's numerics: 'same' padding is computed
from the static input size like TF (the odd extra pixel goes bottom/right), max pooling pads with
-inf, Flatten uses channels-last order. Graph (functional API) models with `Add` work: layers run in
config order, each reading its inbound layers' outputs by name. Weights are read with h5py and
re-laid out (Keras HWIO / depthwise HW·C·M -> torch OIHW).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engines.errors import EmostreamError

Shape = tuple[int, ...]  # (C, H, W) for images, (D,) for vectors; Keras batch dim dropped


@dataclass(frozen=True)
class Node:
    """One layer call in the graph: Keras class, its (sanitised) module key and the layers it reads."""

    name: str
    kind: str
    key: str
    inbound: tuple[str, ...]


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    """TF 'same' padding (before, after) along one axis: the extra pixel goes after."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int, k: int, s: int, padding: str) -> int:
    return math.ceil(size / s) if padding == "same" else (size - k) // s + 1


def _pads(hw: Shape, k: Shape, s: Shape, padding: str) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom) for a window op on a (H, W) input."""
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding != "same":
        raise EmostreamError(f"Keras padding {padding!r} is not supported (only 'same' and 'valid')")
    top, bottom = _same_pads(hw[0], k[0], s[0])
    left, right = _same_pads(hw[1], k[1], s[1])
    return (left, right, top, bottom)


def _split_pads(pads: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, ...]]:
    """(symmetric (top, left) padding for the op itself, explicit F.pad rest): explicit only if uneven.

    Symmetric padding inside Conv/MaxPool keeps the ONNX graph free of Pad subgraphs.
    """
    left, right, top, bottom = pads
    if left == right and top == bottom:
        return (top, left), ()
    return (0, 0), pads


def _activation(name: str) -> nn.Module:
    table = {"linear": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    if name == "softmax":
        return nn.Softmax(dim=1)  # channels axis for NCHW and for (N, D) alike
    if name not in table:
        raise EmostreamError(f"Keras activation {name!r} is not supported")
    return table[name]()


class _Padded(nn.Module):
    """Explicit (possibly asymmetric) padding, then an op, then an activation."""

    def __init__(self, op: nn.Module, pads: tuple[int, ...], value: float = 0.0, act: str = "linear"):
        super().__init__()
        self.op, self.pads, self.value, self.act = op, tuple(pads), value, _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=self.value)
        return self.act(self.op(x))


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D: depthwise (padded like TF) then 1x1 pointwise with the bias."""

    def __init__(self, depthwise: nn.Conv2d, pointwise: nn.Conv2d, pads: tuple[int, ...], act: str):
        super().__init__()
        self.depthwise, self.pointwise, self.pads = depthwise, pointwise, tuple(pads)
        self.act = _activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads)
        return self.act(self.pointwise(self.depthwise(x)))


class _Add(nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class _GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _FlattenNHWC(nn.Module):
    """Keras Flatten on channels-last data: flatten in H, W, C order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x.permute(0, 2, 3, 1) if x.dim() == 4 else x, 1)


class KerasGraph(nn.Module):
    """A Keras functional model as a torch module (NCHW in, the model's output out)."""

    def __init__(
        self,
        layers: dict[str, nn.Module],
        nodes: list[Node],
        inputs: str,
        outputs: str,
        shapes: dict[str, Shape],
    ):
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self.nodes, self.input_name, self.output_name = nodes, inputs, outputs
        self.shapes = shapes  # static per-layer output shapes (C,H,W)/(D,), batch dim dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, (self.output_name,))[0]

    def run(self, x: torch.Tensor, names: tuple[str, ...]) -> list[torch.Tensor]:
        """The outputs of the named layers (e.g. the model output and an inner feature map)."""
        values: dict[str, torch.Tensor] = {self.input_name: x}
        for node in self.nodes:
            values[node.name] = self.layers[node.key](*(values[n] for n in node.inbound))
        return [values[n] for n in names]


def _weights(group: h5py.Group) -> dict[str, np.ndarray]:
    """A layer's weights by short name ('kernel', 'bias', 'gamma', ...), in float32."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    return {n.rsplit("/", 1)[-1].split(":")[0]: np.asarray(group[n], np.float32) for n in names}


def _t(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.from_numpy(np.ascontiguousarray(a)), requires_grad=False)


def _conv2d(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    k, s = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
    if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
        raise EmostreamError(f"Keras Conv2D {cfg['name']}: dilation is not supported")
    inner, outer = _split_pads(_pads(shape[1:], k, s, cfg["padding"]))
    conv = nn.Conv2d(shape[0], cfg["filters"], k, s, inner, bias=cfg.get("use_bias", True))
    conv.weight = _t(w["kernel"].transpose(3, 2, 0, 1))
    if conv.bias is not None:
        conv.bias = _t(w["bias"])
    out = (cfg["filters"], *(_out_size(shape[i + 1], k[i], s[i], cfg["padding"]) for i in range(2)))
    return _Padded(conv, outer, act=cfg.get("activation", "linear")), out


def _separable(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    k, s, m, c = tuple(cfg["kernel_size"]), tuple(cfg["strides"]), cfg.get("depth_multiplier", 1), shape[0]
    inner, outer = _split_pads(_pads(shape[1:], k, s, cfg["padding"]))
    dw = nn.Conv2d(c, c * m, k, s, inner, groups=c, bias=False)
    # depthwise (H,W,C,M) -> (C·M,1,H,W): Keras output channel c·M + m, as torch groups order them
    dw.weight = _t(w["depthwise_kernel"].transpose(2, 3, 0, 1).reshape(c * m, 1, *k))
    pw = nn.Conv2d(c * m, cfg["filters"], 1, bias=cfg.get("use_bias", True))
    pw.weight = _t(w["pointwise_kernel"].transpose(3, 2, 0, 1))
    if pw.bias is not None:
        pw.bias = _t(w["bias"])
    out = (cfg["filters"], *(_out_size(shape[i + 1], k[i], s[i], cfg["padding"]) for i in range(2)))
    return _SeparableConv(dw, pw, outer, cfg.get("activation", "linear")), out


def _batchnorm(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    if cfg.get("axis", -1) not in (-1, len(shape)):
        raise EmostreamError(f"Keras BatchNormalization {cfg['name']}: only the channels axis is supported")
    c = shape[0]
    bn = (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(c, eps=cfg["epsilon"])
    bn.weight = _t(w.get("gamma", np.ones(c, np.float32)))
    bn.bias = _t(w.get("beta", np.zeros(c, np.float32)))
    bn.running_mean.copy_(torch.from_numpy(w["moving_mean"]))
    bn.running_var.copy_(torch.from_numpy(w["moving_variance"]))
    return bn.eval(), shape


def _maxpool(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    """TF max pooling; uneven 'same' padding becomes ceil_mode windows (no Pad op) when they coincide."""
    k, s = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
    out = (shape[0], *(_out_size(shape[i + 1], k[i], s[i], cfg["padding"]) for i in range(2)))
    left, right, top, bottom = _pads(shape[1:], k, s, cfg["padding"])
    before = (top, left)
    ceil_out = tuple(math.ceil((shape[i + 1] + 2 * before[i] - k[i]) / s[i]) + 1 for i in range(2))
    if ceil_out == out[1:]:  # windows start at i*s - before, overhang past the end is ignored like -inf
        return nn.MaxPool2d(k, s, before, ceil_mode=True), out
    return _Padded(nn.MaxPool2d(k, s), (left, right, top, bottom), value=float("-inf")), out


def _avgpool(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    k, s = tuple(cfg["pool_size"]), tuple(cfg["strides"] or cfg["pool_size"])
    if cfg["padding"] != "valid":
        raise EmostreamError(f"Keras AveragePooling2D {cfg['name']}: only 'valid' padding is supported")
    out = (shape[0], *(_out_size(shape[i + 1], k[i], s[i], "valid") for i in range(2)))
    return nn.AvgPool2d(k, s), out


def _dense(cfg: dict, w: dict, shape: Shape) -> tuple[nn.Module, Shape]:
    lin = nn.Linear(shape[0], cfg["units"], bias=cfg.get("use_bias", True))
    lin.weight = _t(w["kernel"].T)
    if lin.bias is not None:
        lin.bias = _t(w["bias"])
    return _Padded(lin, (), act=cfg.get("activation", "linear")), (cfg["units"],)


_BUILDERS = {
    "Conv2D": _conv2d,
    "SeparableConv2D": _separable,
    "BatchNormalization": _batchnorm,
    "MaxPooling2D": _maxpool,
    "AveragePooling2D": _avgpool,
    "Dense": _dense,
    "Activation": lambda cfg, w, s: (_activation(cfg["activation"]), s),
    "Dropout": lambda cfg, w, s: (nn.Identity(), s),
    "Add": lambda cfg, w, s: (_Add(), s),
    "GlobalAveragePooling2D": lambda cfg, w, s: (_GlobalAvgPool(), (s[0],)),
    "Flatten": lambda cfg, w, s: (_FlattenNHWC(), (math.prod(s),)),
}


def _inbound(layer: dict) -> tuple[str, ...]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise EmostreamError(f"Keras layer {layer['name']} is shared (called twice): not supported")
    return tuple(n[0] for n in nodes[0]) if nodes else ()


def _model_layers(config: dict) -> tuple[list[dict], str, str]:
    """Layers, input name and output name of a functional (`Model`) config."""
    if config["class_name"] != "Model":
        raise EmostreamError(f"Keras model class {config['class_name']!r} is not supported (functional only)")
    cfg = config["config"]
    if len(cfg["input_layers"]) != 1 or len(cfg["output_layers"]) != 1:
        raise EmostreamError("Keras models with several inputs or outputs are not supported")
    return cfg["layers"], cfg["input_layers"][0][0], cfg["output_layers"][0][0]


def _build_layer(layer: dict, weights: h5py.Group | None, in_shape: Shape) -> tuple[nn.Module, Shape]:
    """The torch module and output shape of one Keras layer, its weights loaded."""
    kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
    if kind not in _BUILDERS or cfg.get("data_format", "channels_last") != "channels_last":
        raise EmostreamError(f"Keras layer {name} ({kind}, {cfg.get('data_format', '')}) is not supported")
    w = _weights(weights[name]) if weights is not None and name in weights else {}
    try:
        return _BUILDERS[kind](cfg, w, in_shape)
    except KeyError as exc:
        raise EmostreamError(f"Keras layer {name} ({kind}): weight {exc} missing from the file") from None


def build_graph(config: dict, weights: h5py.Group | None) -> KerasGraph:
    """Build a `KerasGraph` from a parsed `model_config`, loading weights from `model_weights`."""
    layers, input_name, output_name = _model_layers(config)
    modules: dict[str, nn.Module] = {}
    nodes: list[Node] = []
    shapes: dict[str, Shape] = {}
    for layer in layers:
        name, cfg = layer["name"], layer["config"]
        if layer["class_name"] == "InputLayer":
            h, w, c = cfg["batch_input_shape"][1:]
            shapes[name] = (c, h, w)
            continue
        inbound = _inbound(layer)
        key = name.replace(".", "_")
        modules[key], shapes[name] = _build_layer(layer, weights, shapes[inbound[0]])
        nodes.append(Node(name, layer["class_name"], key, inbound))
    return KerasGraph(modules, nodes, input_name, output_name, shapes).eval()


def load_keras_model(path: str | Path) -> KerasGraph:
    """Read a Keras 2.x full-model HDF5 file and return the equivalent torch module (eval mode)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise EmostreamError(f"{path.name}: no model_config in the HDF5 file (weights-only file?)")
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            return build_graph(config, f.get("model_weights", f))
    except OSError as exc:
        raise EmostreamError(f"{path}: cannot read as a Keras HDF5 file ({exc})") from None
