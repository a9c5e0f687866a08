"""Quality "affectnet": a downloaded HSEmotion ONNX file grafted into the fused graph.

The real enet_b0_8_best_afew.onnx is not in the mirror (users download it), so these tests generate
a small ONNX file with its interface (input "input" (N,3,224,224) float, output (N,8) logits in the
order Anger, Contempt, Disgust, Fear, Happiness, Neutral, Sadness, Surprise, a final Gemm after
global pooling, an older opset), put it in a temporary mirror under the registered file name, and
pin the registry's sha256 to it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from engines.errors import EmostreamError
from engines.multitask import MultiTaskNet, NetConfig
from engines.nets.affectnet import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from engines.nets.heads import build_head, head_spec
from engines.store.registry import FER2013_EMOTIONS, MODELS
from engines.store.store import ModelStore, sha256_file

NAME = "hsemotion_enet_b0_8"
FEATURES = 1280


def make_classifier(
    path: Path,
    bias: np.ndarray,
    weight_scale: float = 0.2,
    hw: int = 224,
    probabilities: bool = False,
    batch: str | int = "batch_size",
) -> Path:
    """An EfficientNet-shaped stand-in: pool -> conv -> ReLU -> global pool -> flatten -> Gemm (logits),
    with a final Softmax when `probabilities` (upstream's file gives logits; some exports do not).

    Its `flat` tensor (the Gemm input, 1280 features) is also written as a second output to a
    sibling file `<stem>.features.onnx`, which the tests use as the standalone reference.
    """
    rng = np.random.default_rng(len(bias) + int(weight_scale * 10))
    weights = {
        "conv_w": rng.normal(0, 0.05, (FEATURES, 3, 7, 7)),
        "conv_b": rng.normal(0, 0.1, FEATURES),
        "fc_w": rng.normal(0, weight_scale, (len(bias), FEATURES)),
        "fc_b": np.asarray(bias),
    }
    k = hw // 7
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[k, k], strides=[k, k]),
        helper.make_node("Conv", ["pooled", "conv_w", "conv_b"], ["conv"]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node(
            "Gemm", ["flat", "fc_w", "fc_b"], ["logits" if probabilities else "output"], transB=1
        ),
    ]
    if probabilities:
        nodes.append(helper.make_node("Softmax", ["logits"], ["output"], axis=1))
    for target, outputs in [(path, ["output"]), (path.with_suffix(".features.onnx"), ["output", "flat"])]:
        graph = helper.make_graph(
            nodes,
            "enet_like",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, hw, hw])],
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            [numpy_helper.from_array(v.astype(np.float32), n) for n, v in weights.items()],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
        model.ir_version = 6
        onnx.save(onnx.shape_inference.infer_shapes(model), str(target))  # inner shapes, as exporters write
    return path


def mirror_with(folder: Path, models_dir: Path, bias: np.ndarray, **kwargs) -> Path:
    """A mirror folder: the generated model under the registered name, links to the real mirror."""
    folder.mkdir(parents=True)
    for f in models_dir.iterdir():
        if f.is_file():
            os.symlink(f, folder / f.name)
    make_classifier(folder / MODELS[NAME].filename, bias, **kwargs)
    return folder


def net_for(mirror: Path, heads=("emotion", "gender")) -> MultiTaskNet:
    """The affectnet-quality net on `mirror` with the registry pinned to its generated file."""
    spec = dataclasses.replace(MODELS[NAME], sha256=sha256_file(mirror / MODELS[NAME].filename))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(MODELS, NAME, spec)
        net = MultiTaskNet(NetConfig(heads=heads, quality="affectnet"), ModelStore(mirror_dir=mirror))
        net.torch_module()  # built while the pin holds
    return net


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


BIAS = np.random.default_rng(3).normal(0, 0.5, 8)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, models_dir) -> Path:
    return mirror_with(tmp_path_factory.mktemp("affectnet") / "mirror", models_dir, BIAS)


@pytest.fixture(scope="module")
def net(mirror) -> MultiTaskNet:
    return net_for(mirror)


def test_outputs_are_emotion_in_fer2013_order_plus_contempt(net, batch32):
    out = net.infer(batch32)
    assert net.output_names == ("emotion", "contempt", "gender", "embedding")
    assert {k: v.shape for k, v in out.items()} == {
        "emotion": (32, 7),
        "contempt": (32,),
        "gender": (32,),
        "embedding": (32, FEATURES + 128),
    }
    np.testing.assert_allclose(out["emotion"].sum(1), 1.0, atol=1e-5)


def test_fused_graph_equals_the_onnx_model_run_alone(net, mirror, batch32):
    """Same crops: the torch-side preprocessing, then the generated file in its own session."""
    head = net.torch_module().heads[0]
    with torch.no_grad():
        x = head(torch.from_numpy(batch32).permute(0, 3, 1, 2).float()).numpy()
    alone = ort.InferenceSession(str(mirror / "enet_b0_8_best_afew.features.onnx"))
    logits, features = alone.run(None, {"input": x})
    out = net.infer(batch32)
    fer_order = [0, 2, 3, 4, 6, 7, 5]  # anger, disgust, fear, happiness, sadness, surprise, neutral
    np.testing.assert_allclose(out["emotion"], softmax(logits[:, fer_order]), atol=1e-5)
    np.testing.assert_allclose(out["contempt"], softmax(logits)[:, 1], atol=1e-5)
    np.testing.assert_allclose(out["embedding"][:, :FEATURES], features, atol=1e-4)
    assert np.ptp(logits, axis=0).min() > 0.01  # the faces differ: the comparison is not of constants


def test_other_heads_are_the_fast_ones(net, batch32):
    fast = MultiTaskNet(NetConfig(heads=("gender",), quality="fast"), ModelStore())
    out, ref = net.infer(batch32), fast.infer(batch32)
    np.testing.assert_allclose(out["gender"], ref["gender"], atol=1e-5)
    np.testing.assert_allclose(out["embedding"][:, FEATURES:], ref["embedding"], atol=1e-5)


@pytest.mark.parametrize(
    "variant",
    [
        {"probabilities": True},  # the graft reads the logits before a final Softmax: no double squash
        {"batch": 1},  # an export with a fixed batch of 1 still runs on any batch
    ],
)
def test_other_exports_of_the_same_model_give_the_same_outputs(variant, net, tmp_path, models_dir, batch32):
    other = net_for(mirror_with(tmp_path / "m", models_dir, BIAS, **variant))
    out, ref = other.infer(batch32[:7]), net.infer(batch32[:7])
    for name in net.output_names:
        np.testing.assert_allclose(out[name], ref[name], atol=1e-6, err_msg=name)


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batch_size_does_not_change_per_face_results(batch_size, net, batch32):
    whole = net.infer(batch32)
    parts = [net.infer(batch32[i : i + batch_size]) for i in range(0, 32, batch_size)]
    for name in net.output_names:
        np.testing.assert_allclose(np.concatenate([p[name] for p in parts]), whole[name], atol=1e-5)


def test_each_class_lands_in_its_named_column(tmp_path, models_dir, batch32):
    """Weights ~0, biases ranked: the output order by name shows where every AffectNet class went."""
    #                 anger contempt disgust fear happiness neutral sadness surprise
    bias = np.array([1.0, 7.0, 2.0, 3.0, 6.0, 5.0, 0.0, 4.0])
    net = net_for(mirror_with(tmp_path / "m", models_dir, bias, weight_scale=0.0), heads=("emotion",))
    out = net.infer(batch32[:2])
    ranked = [FER2013_EMOTIONS[i] for i in np.argsort(-out["emotion"][0])]
    assert ranked == ["happy", "neutral", "surprise", "fear", "disgust", "angry", "sad"]
    np.testing.assert_allclose(out["contempt"], softmax(bias[None])[0, 1], atol=1e-5)


def test_preprocessing_is_upstreams_on_the_rgb_face_window(net, crops_of):
    """HSEmotion: cv2.resize(rgb face, 224x224) / 255, ImageNet mean/std per channel, CHW."""
    crops = crops_of(128)["fer_justin_smile.jpg"]
    head = net.torch_module().heads[0]
    with torch.no_grad():
        ours = head(torch.from_numpy(crops).permute(0, 3, 1, 2).float()).numpy()
    face_rgb = crops[0, 32:96, 32:96, ::-1].astype(np.float32)  # fraction 0.5 of the crop
    ref = (cv2.resize(face_rgb, (224, 224)) / 255.0 - IMAGENET_MEAN_RGB) / IMAGENET_STD_RGB
    np.testing.assert_allclose(ours[0].transpose(1, 2, 0), ref, atol=1e-4)


def test_the_export_cache_is_keyed_by_the_model_file(net, tmp_path, models_dir):
    other = net_for(mirror_with(tmp_path / "m", models_dir, np.zeros(8)))
    assert other.onnx_path != net.onnx_path and other.onnx_path.parent == net.onnx_path.parent


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bias": np.zeros(8), "hw": 112}, r"input input is \(None, 3, 112, 112\), expected float"),
        ({"bias": np.zeros(7)}, "7 classes, the registry lists 8"),
    ],
)
def test_a_model_with_another_interface_is_a_one_line_error(kwargs, message, tmp_path, models_dir):
    mirror = mirror_with(tmp_path / "m", models_dir, **kwargs)
    spec = dataclasses.replace(MODELS[NAME], sha256=sha256_file(mirror / MODELS[NAME].filename))
    with pytest.MonkeyPatch.context() as mp, pytest.raises(EmostreamError, match=message) as err:
        mp.setitem(MODELS, NAME, spec)
        build_head(head_spec("emotion", "affectnet"), ModelStore(mirror_dir=mirror), 128, 2.0)
    assert "\n" not in str(err.value)
