"""The project's multi-task net inside the fused graph: one trunk for three heads, ONNX equal to torch,
the window it reads, and what it says about the labelled photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines.multitask import MultiTaskNet, NetConfig
from engines.nets import mtl
from engines.nets.heads import embedding_dim, head_spec
from engines.nets.mtl_head import window_box
from engines.store.store import ModelStore


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(quality="mtl"), ModelStore(), "onnxruntime", intra_op_threads=1)


def test_the_default_quality_is_the_multitask_net():
    assert NetConfig().quality == "mtl"
    assert {head_spec(h, NetConfig().quality).models for h in ("emotion", "gender", "age")} == {
        ("emostream_mtl",)
    }


def test_three_heads_share_one_trunk_and_one_embedding(net):
    module = net.torch_module()
    trunks = {id(h.trunk) for h in module.heads}
    assert len(trunks) == 1
    assert net.output_tails == {"emotion": (7,), "contempt": (), "gender": (), "age": (), "embedding": (128,)}
    assert embedding_dim([head_spec(h, "mtl") for h in ("emotion", "gender", "age")]) == 128
    assert embedding_dim([head_spec(h, "fast") for h in ("emotion", "gender")]) == 256


def test_the_trunk_runs_once_per_batch(net):
    module, calls = net.torch_module(), []
    trunk_net = module.heads[0].trunk.net  # the conv trunk and its heads: what costs
    handle = trunk_net.register_forward_hook(lambda *a: calls.append(1))
    try:
        module(torch.zeros((2, 128, 128, 3), dtype=torch.uint8))
    finally:
        handle.remove()
    assert calls == [1]


def test_onnx_equals_torch_on_real_faces(net, labelled):
    crops = labelled[0]
    onnx_out = net.infer(crops)
    torch_out = net.torch_module().run_named(torch.from_numpy(crops))
    for name, value in onnx_out.items():
        np.testing.assert_allclose(value, torch_out[name].numpy(), atol=1e-4, err_msg=name)


def test_outputs_are_probabilities_ages_and_a_bounded_p_man(net, labelled):
    out = net.infer(labelled[0])
    np.testing.assert_allclose(out["emotion"].sum(1), np.ones(len(out["emotion"])), atol=1e-5)
    assert ((out["contempt"] >= 0) & (out["contempt"] <= 1)).all()  # P(contempt) of the 8-way softmax
    assert ((out["gender"] >= 0) & (out["gender"] <= 1)).all()
    assert ((out["age"] >= 0) & (out["age"] <= mtl.AGE_MAX)).all()


@pytest.mark.parametrize(
    ("size", "scale", "box"), [(128, 2.0, (45, 96, 38, 89)), (64, 2.0, (22, 48, 19, 45))]
)
def test_the_window_is_below_the_face_square_centre(size, scale, box):
    assert window_box(size, scale) == box


def test_the_net_reads_the_labelled_photos_no_worse_than_fast(net, labelled):
    """The posed expressions of the labelled photos: the default net gets at least as many of the 12 faces
    as the older `fast` nets, measured here on the same crops (the issue's bar), and most of them."""
    from pipeline.frames import EMOTIONS

    crops, labels = labelled
    fast = MultiTaskNet(NetConfig(quality="fast"), ModelStore(), "onnxruntime", intra_op_threads=1)
    right = {}
    for name, model in (("mtl", net), ("fast", fast)):
        predicted = [EMOTIONS[i] for i in model.infer(crops)["emotion"].argmax(1)]
        right[name] = sum(p == t for p, t in zip(predicted, labels, strict=True))
    assert right["mtl"] >= right["fast"] and right["mtl"] >= 9, right


def test_the_graphs_window_equals_an_opencv_cut_of_the_crop(net, labelled):
    """The fused graph cuts, grays and resizes in its own order; the net must see what numpy + OpenCV
    give for the same window (slice, cv2 gray, cv2 INTER_LINEAR resize, `mtl.preprocess`)."""
    crops = labelled[0]
    trunk = net.torch_module().heads[0].trunk
    top, bottom, left, right = window_box(128, 2.0)
    size = (mtl.INPUT_SIZE, mtl.INPUT_SIZE)
    windows = [c[top:bottom, left:right].astype(np.float32) for c in crops]
    gray = [cv2.cvtColor(w, cv2.COLOR_BGR2GRAY) for w in windows]
    x = np.stack([cv2.resize(g, size, interpolation=cv2.INTER_LINEAR) for g in gray])
    x = (x / 255.0 - mtl.MEAN) / mtl.STD
    with torch.no_grad():
        want = trunk.net(torch.from_numpy(x[:, None].astype(np.float32)))
        got = net.torch_module().run_named(torch.from_numpy(crops))
    np.testing.assert_allclose(got["embedding"].numpy(), want["embedding"].numpy(), atol=1e-3)
