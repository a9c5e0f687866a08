"""OpenCV Zoo's RAF-DB expression net (int8 MobileFaceNet) grafted into the fused graph as quality "rafdb"."""

from __future__ import annotations

import numpy as np
import pytest

from engines.convert.compose import inspect_onnx
from engines.labels import fer_columns
from engines.multitask import MultiTaskNet, NetConfig
from engines.store.registry import FER2013_EMOTIONS, get_spec
from engines.store.store import ModelStore


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(heads=("emotion",), quality="rafdb"), ModelStore(), "onnxruntime")


def test_the_int8_classifier_is_read_through_its_quantized_last_layer(models_dir):
    info = inspect_onnx(models_dir / get_spec("mobilefacenet_rafdb").filename, (3, 112, 112))
    assert (info.logits_name, info.num_classes, info.feature_dim) == ("label", 7, 512)
    assert info.features_name == "481"  # the float features before QuantizeLinear, not the int8 ones


def test_its_class_order_maps_onto_fer2013():
    columns, rest = fer_columns(get_spec("mobilefacenet_rafdb").classes)
    # its order: angry disgust fearful happy neutral sad surprised; FER2013's ends sad surprise neutral
    assert (columns, rest) == ([0, 1, 2, 3, 5, 6, 4], [])
    assert len(columns) == len(FER2013_EMOTIONS)


def test_one_graph_gives_probabilities_and_its_512_features(net, labelled):
    out = net.infer(labelled[0])
    assert out["emotion"].shape == (12, 7) and out["embedding"].shape == (12, 512)
    np.testing.assert_allclose(out["emotion"].sum(1), np.ones(12), atol=1e-5)


def test_it_reads_the_labelled_photos(net, labelled):
    crops, labels = labelled
    predicted = [FER2013_EMOTIONS[i] for i in net.infer(crops)["emotion"].argmax(1)]
    pairs = list(zip(predicted, labels, strict=True))
    assert sum(p == t for p, t in pairs) >= 9, pairs  # as many as the fast quality
