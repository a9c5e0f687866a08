"""ONNX-only heads (downloaded .onnx files, no torch source) grafted into the fused graph.

The torch part of the fused net exports, for such a head, its preprocessed input (`<head>.input`)
instead of its outputs; `compose` loads the head's ONNX file, converts it to the fused graph's opset,
prefixes its names (`<head>/...`), connects `<head>.input` to its input, and adds the few nodes that
turn its class logits into the head's outputs (a softmax over the chosen columns, single columns of
the full softmax) and its penultimate features into the shared embedding. The result is still ONE
graph: onnxruntime and TensorRT see one model whatever the heads are. Needs only the `onnx` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import EmostreamError

FEATURES_SUFFIX = ".features"
INPUT_SUFFIX = ".input"
_MATMUL_OPS = {"Gemm": 1, "MatMul": 1, "QLinearMatMul": 3}
"""The ops a classifier's last layer may be, with the input index of its stored weights."""
_PASS_OPS = ("Add", "Identity", "Softmax", "DequantizeLinear", "QLinearAdd")
"""Ops walked through from the output back to that layer (int8 models add the quantized ones)."""


@dataclass(frozen=True)
class OnnxModelInfo:
    """The interface of a classifier ONNX file: its input, class logits (before any softmax) and
    penultimate features (the input of the last Gemm/MatMul)."""

    path: Path
    input_name: str
    input_chw: tuple[int, ...]
    logits_name: str
    num_classes: int
    features_name: str
    feature_dim: int


@dataclass(frozen=True)
class ExternalHead:
    """How one ONNX-only head's logits become named outputs of the fused graph.

    main: (output name, logit columns): softmax over those columns, in that order;
    extras: (output name, column): one column of the softmax over all classes, shape (N,).
    """

    name: str
    model: OnnxModelInfo
    main_columns: tuple[int, ...]
    extras: tuple[tuple[str, int], ...] = ()


def _load(path: Path):
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf decode errors have no common public base
        raise EmostreamError(f"{path}: cannot read as an ONNX model ({type(exc).__name__})") from None


def _real_inputs(graph) -> list:
    """Graph inputs that are not initializers (old IR versions list the weights as inputs too)."""
    weights = {t.name for t in graph.initializer}
    return [i for i in graph.input if i.name not in weights]


def _dims(value_info) -> tuple:
    return tuple(
        d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim
    )


def _final_matmul(graph, output: str) -> tuple[str, str, int, int]:
    """(logits, features, feature dim, classes) of the Gemm/MatMul that makes `output`.

    The walk back from `output` passes Add/Identity/Softmax nodes; past a Softmax (a model that
    outputs probabilities) the logits are that Softmax's input.
    """
    producers = {out: n for n in graph.node for out in n.output}
    weights = {t.name: t for t in graph.initializer}
    logits, node = output, producers.get(output)
    while node is not None and node.op_type in _PASS_OPS:
        if node.op_type == "Softmax":
            logits = node.input[0]
        node = next((producers[i] for i in node.input if i in producers), None)
    w_at = _MATMUL_OPS.get(node.op_type, -1) if node is not None else -1
    if w_at < 0 or node.input[w_at] not in weights:
        raise EmostreamError(f"output {output}: no final Gemm/MatMul with stored weights found before it")
    shape = tuple(weights[node.input[w_at]].dims)
    trans_b = any(a.name == "transB" and a.i for a in node.attribute)
    feature_dim, classes = (shape[1], shape[0]) if trans_b else shape
    features = node.input[0]
    while features in producers and producers[features].op_type == "QuantizeLinear":
        features = producers[features].input[0]  # int8 models: the float features before quantizing
    return logits, features, int(feature_dim), int(classes)


def inspect_onnx(path: str | Path, input_chw: Sequence[int]) -> OnnxModelInfo:
    """Check that `path` is a one-input float classifier taking (N, *input_chw) and find its features."""
    path = Path(path)
    graph = _load(path).graph
    inputs = _real_inputs(graph)
    if len(inputs) != 1 or len(graph.output) != 1:
        raise EmostreamError(
            f"{path.name}: expected one input and one output, got {len(inputs)} and {len(graph.output)}"
        )
    dims = _dims(inputs[0])
    if inputs[0].type.tensor_type.elem_type != 1 or dims[1:] != tuple(input_chw):
        raise EmostreamError(
            f"{path.name}: input {inputs[0].name} is {dims}, expected float (N, {tuple(input_chw)})"
        )
    logits, features, feature_dim, classes = _final_matmul(graph, graph.output[0].name)
    return OnnxModelInfo(path, inputs[0].name, tuple(input_chw), logits, classes, features, feature_dim)


def _as_opset(model, opset: int, ir_version: int):
    """`model` converted to the default-domain `opset` (onnx's version converter) with `ir_version`."""
    import onnx
    from onnx import version_converter

    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current != opset:
        try:
            model = version_converter.convert_version(model, opset)
        except Exception as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise EmostreamError(
                f"cannot convert an ONNX head from opset {current} to {opset}: {reason}"
            ) from None
    model.ir_version = max(model.ir_version, ir_version)
    onnx.checker.check_model(model)
    return model


def _post_nodes(head: ExternalHead, prefix: str) -> list:
    """Nodes turning the prefixed logits into the head's outputs and a flat `<head>.features`."""
    from onnx import helper, numpy_helper

    logits, name = prefix + head.model.logits_name, head.name

    def const(tag: str, values) -> object:
        return helper.make_node(
            "Constant",
            [],
            [f"{name}/post/{tag}"],
            value=numpy_helper.from_array(np.asarray(values, np.int64), f"{name}/post/{tag}_value"),
        )

    nodes = [
        const("main_columns", list(head.main_columns)),
        helper.make_node(
            "Gather", [logits, f"{name}/post/main_columns"], [f"{name}/post/main_logits"], axis=1
        ),
        helper.make_node("Softmax", [f"{name}/post/main_logits"], [name], axis=1),
        helper.make_node("Softmax", [logits], [f"{name}/post/all_probs"], axis=1),
        helper.make_node("Flatten", [prefix + head.model.features_name], [name + FEATURES_SUFFIX], axis=1),
    ]
    for out_name, column in head.extras:
        nodes += [
            const(f"{out_name}_column", column),  # a scalar index: Gather drops the class axis
            helper.make_node(
                "Gather", [f"{name}/post/all_probs", f"{name}/post/{out_name}_column"], [out_name], axis=1
            ),
        ]
    return nodes


def compose(
    base_path: str | Path,
    externals: Sequence[ExternalHead],
    head_order: Sequence[str],
    outputs: Sequence[tuple[str, tuple[int, ...]]],
    embedding: str,
    batch_axis: str,
):
    """The fused ModelProto: `base_path`'s torch export with every head in `externals` grafted in.

    head_order: every head's name, in the embedding's order; outputs: (name, per-face shape) of the
    final outputs in order (the embedding last, whose width is summed from the heads).
    """
    import onnx
    from onnx import compose as onnx_compose
    from onnx import helper

    model = _load(Path(base_path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    post = []
    for head in externals:
        prefix = f"{head.name}/"
        ext = _as_opset(_load(head.model.path), opset, model.ir_version)
        del ext.graph.value_info[:]  # inner shapes may pin a batch of 1; onnxruntime infers them again
        ext = onnx_compose.add_prefix(ext, prefix)
        model.ir_version = ext.ir_version
        model = onnx_compose.merge_models(
            model, ext, io_map=[(head.name + INPUT_SUFFIX, prefix + head.model.input_name)]
        )
        post += _post_nodes(head, prefix)
    model.graph.node.extend(post)
    model.graph.node.append(
        helper.make_node("Concat", [h + FEATURES_SUFFIX for h in head_order], [embedding], axis=1)
    )
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(name, 1, [batch_axis, *tail]) for name, tail in outputs
    )
    onnx.checker.check_model(model)
    return model
