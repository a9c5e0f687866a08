"""Keras HDF5 -> torch converter: equal to TensorFlow's own conversion (tf2onnx reference graphs)."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import onnxruntime as ort
import pytest
import torch

from engines.convert.export import export_module
from engines.convert.keras_import import load_keras_model
from engines.errors import EmostreamError
from engines.nets.xception import load_xception

MODELS = ["fer2013_mini_XCEPTION.102-0.66", "fer2013_big_XCEPTION.54-0.66", "gender_mini_XCEPTION.21-0.95"]


def _inputs(media_dir) -> np.ndarray:
    """(N,64,64,1) preprocessed inputs: noise at two scales and real faces (the posed photos' centres)."""
    rng = np.random.default_rng(7)
    faces = []
    for name in ["pyfeat_happy_f15.jpg", "pyfeat_surprise_f1.jpg", "fer_justin_smile.jpg"]:
        gray = cv2.cvtColor(cv2.imread(str(media_dir / name)), cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        face = cv2.resize(gray[h // 6 : h - h // 6, w // 6 : w - w // 6], (64, 64))
        faces.append((face.astype(np.float32) / 255.0 - 0.5) * 2.0)
    noise = [rng.uniform(-1, 1, (64, 64)), rng.normal(0, 0.2, (64, 64))]
    return np.stack([*faces, *noise]).astype(np.float32)[..., None]


def _reference(models_dir, name: str, x_nhwc: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(
        str(models_dir / "reference" / f"{name}.nhwc.onnx"), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {sess.get_inputs()[0].name: x_nhwc})[0]


@pytest.mark.parametrize("name", MODELS)
def test_torch_module_matches_tensorflow_reference(name, models_dir, media_dir):
    x = _inputs(media_dir)
    with torch.no_grad():
        ours = load_keras_model(models_dir / f"{name}.hdf5")(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    ref = _reference(models_dir, name, x)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)
    assert len(set(ref.argmax(1))) > 1  # the inputs reach different classes: not a saturated comparison


@pytest.mark.parametrize("name", MODELS)
def test_exported_onnx_matches_tensorflow_reference(name, models_dir, media_dir, tmp_path):
    x = _inputs(media_dir)
    module = load_keras_model(models_dir / f"{name}.hdf5")
    path = export_module(module, torch.zeros(2, 1, 64, 64), tmp_path / "m.onnx", ("x",), ("probs",))
    ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"x": np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    )[0]
    np.testing.assert_allclose(ours, _reference(models_dir, name, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("name", "classes", "feature_dim"),
    [
        ("fer2013_mini_XCEPTION.102-0.66", 7, 128),
        ("fer2013_big_XCEPTION.54-0.66", 7, 256),
        ("gender_mini_XCEPTION.21-0.95", 2, 128),
    ],
)
def test_xception_features_are_the_input_of_the_last_conv(name, classes, feature_dim, models_dir, media_dir):
    net = load_xception(models_dir / f"{name}.hdf5")
    x = torch.from_numpy(_inputs(media_dir)).permute(0, 3, 1, 2)
    with torch.no_grad():
        probs, features = net(x)
        fmap = net.graph.run(x, (net.feature_layer,))[0]
    assert (net.num_classes, net.feature_dim) == (classes, feature_dim)
    assert probs.shape == (len(x), classes) and features.shape == (len(x), feature_dim)
    torch.testing.assert_close(features, fmap.mean(dim=(2, 3)))
    assert features.std(dim=0).min() > 0  # not constant across faces


# --- a synthetic model with the uneven TF 'same' padding cases, checked against plain numpy ---------


def _layer(kind, name, inbound, **cfg):
    return {
        "class_name": kind,
        "name": name,
        "config": {"name": name, **cfg},
        "inbound_nodes": [[[inbound, 0, 0, {}]]] if inbound else [],
    }


SYNTH = [
    _layer("InputLayer", "in", None, batch_input_shape=[None, 12, 12, 2]),
    _layer(
        "Conv2D",
        "conv",
        "in",
        filters=3,
        kernel_size=[3, 3],
        strides=[2, 2],
        padding="same",
        use_bias=True,
        activation="relu",
    ),  # 12 -> 6, pads (0, 1): explicit Pad
    _layer(
        "MaxPooling2D", "pool_a", "conv", pool_size=[2, 2], strides=[1, 1], padding="same"
    ),  # explicit -inf
    _layer(
        "SeparableConv2D",
        "sep",
        "pool_a",
        filters=4,
        kernel_size=[3, 3],
        strides=[1, 1],
        padding="same",
        use_bias=True,
        depth_multiplier=2,
        activation="linear",
    ),
    _layer("BatchNormalization", "bn", "sep", epsilon=0.01, axis=-1),
    _layer("MaxPooling2D", "pool_b", "bn", pool_size=[3, 3], strides=[2, 2], padding="same"),  # ceil_mode
    _layer("Flatten", "flat", "pool_b"),
    _layer("Dense", "dense", "flat", units=5, use_bias=True, activation="softmax"),
]


def _synth_weights(rng) -> dict[str, dict[str, np.ndarray]]:
    r = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)  # noqa: E731
    return {
        "conv": {"kernel": r(3, 3, 2, 3), "bias": r(3)},
        "sep": {"depthwise_kernel": r(3, 3, 3, 2), "pointwise_kernel": r(1, 1, 6, 4), "bias": r(4)},
        "bn": {"gamma": r(4), "beta": r(4), "moving_mean": r(4), "moving_variance": np.abs(r(4)) + 0.1},
        "dense": {"kernel": r(36, 5), "bias": r(5)},
    }


def _write_keras_h5(path, layers, weights) -> None:
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(
            {
                "class_name": "Model",
                "config": {
                    "name": "synth",
                    "layers": layers,
                    "input_layers": [["in", 0, 0]],
                    "output_layers": [["dense", 0, 0]],
                },
            }
        )
        mw = f.create_group("model_weights")
        for layer, ws in weights.items():
            g = mw.create_group(layer)
            g.attrs["weight_names"] = [f"{layer}_1/{k}:0".encode() for k in ws]
            for k, v in ws.items():
                g[f"{layer}_1/{k}:0"] = v


def _tf_pad(x, k, s, value=0.0):
    """NHWC padding as TensorFlow documents 'same': total = max((ceil(n/s)-1)*s + k - n, 0), extra after."""
    pads = [(0, 0)]
    for n in x.shape[1:3]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, [*pads, (0, 0)], constant_values=value)


def _windows(x, k, s):
    return np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))[:, ::s, ::s]  # N,Ho,Wo,C,k,k


def _numpy_forward(x, w):
    y = (
        np.einsum("nhwcij,ijco->nhwo", _windows(_tf_pad(x, 3, 2), 3, 2), w["conv"]["kernel"])
        + w["conv"]["bias"]
    )
    y = _windows(_tf_pad(np.maximum(y, 0), 2, 1, -np.inf), 2, 1).max(axis=(-2, -1))
    d = np.einsum("nhwcij,ijcm->nhwcm", _windows(_tf_pad(y, 3, 1), 3, 1), w["sep"]["depthwise_kernel"])
    y = d.reshape(*d.shape[:3], -1) @ w["sep"]["pointwise_kernel"][0, 0] + w["sep"]["bias"]
    bn = w["bn"]
    y = (y - bn["moving_mean"]) / np.sqrt(bn["moving_variance"] + 0.01) * bn["gamma"] + bn["beta"]
    y = _windows(_tf_pad(y, 3, 2, -np.inf), 3, 2).max(axis=(-2, -1))
    logits = y.reshape(len(y), -1) @ w["dense"]["kernel"] + w["dense"]["bias"]
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_uneven_same_padding_flatten_and_dense_match_numpy(tmp_path):
    rng = np.random.default_rng(3)
    weights = _synth_weights(rng)
    _write_keras_h5(tmp_path / "synth.h5", SYNTH, weights)
    x = rng.normal(0, 1, (4, 12, 12, 2)).astype(np.float32)
    graph = load_keras_model(tmp_path / "synth.h5")
    with torch.no_grad():
        ours = graph(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert graph.shapes["conv"] == (3, 6, 6) and graph.shapes["pool_b"] == (4, 3, 3)
    np.testing.assert_allclose(ours, _numpy_forward(x.astype(np.float64), weights), atol=1e-5)


def _with_lstm(tmp_path, models_dir):
    weights = {"conv": _synth_weights(np.random.default_rng(0))["conv"]}
    _write_keras_h5(tmp_path / "x.h5", [*SYNTH[:2], _layer("LSTM", "dense", "conv")], weights)
    return tmp_path / "x.h5"


def _without_conv_weights(tmp_path, models_dir):
    _write_keras_h5(tmp_path / "y.h5", SYNTH, {})
    return tmp_path / "y.h5"


@pytest.mark.parametrize(
    ("make_file", "message"),
    [
        (lambda tmp, models: models / "ssrnet_age_imdb.h5", "no model_config"),  # weights-only file
        (lambda tmp, models: tmp / "missing.hdf5", "cannot read"),
        (_with_lstm, "LSTM"),
        (_without_conv_weights, r"conv \(Conv2D\): weight 'kernel' missing"),
    ],
)
def test_unusable_files_raise_one_line_errors(make_file, message, tmp_path, models_dir):
    with pytest.raises(EmostreamError, match=message) as err:
        load_keras_model(make_file(tmp_path, models_dir))
    assert "\n" not in str(err.value)
