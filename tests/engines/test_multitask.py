"""The fused multi-task net: heads agree with the graph, batching, export cache, real photos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines import export
from engines.decode import gender_label, top_emotion
from engines.errors import EmostreamError
from engines.heads import build_head, center_fraction, head_spec
from engines.multitask import FusedNet, MultiTaskNet, NetConfig
from engines.store import ModelStore

PHOTOS = [
    "pyfeat_happy_f15.jpg",
    "pyfeat_surprise_f1.jpg",
    "fer_justin_smile.jpg",
    "pyfeat_angry_f13.jpg",
    "pyfeat_disgust_m7.jpg",
    "pyfeat_single_face_smile.jpg",
    "pyfeat_neutral_man.jpg",
]


def face_crop(image_bgr: np.ndarray, detector, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """Crop like the aligner: the tight face square (YuNet box, longer side) in the central 1/scale."""
    detector.setInputSize((image_bgr.shape[1], image_bgr.shape[0]))
    _, faces = detector.detect(image_bgr)
    x, y, w, h = faces[np.argmax(faces[:, -1])][:4]
    k = size / (max(w, h) * scale)
    m = np.array([[k, 0, size / 2 - k * (x + w / 2)], [0, k, size / 2 - k * (y + h / 2)]], np.float32)
    return cv2.warpAffine(image_bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


@pytest.fixture(scope="module")
def crops(media_dir, models_dir) -> dict[str, np.ndarray]:
    det = cv2.FaceDetectorYN.create(
        str(models_dir / "face_detection_yunet_2023mar.onnx"), "", (320, 320), 0.6
    )
    return {p: face_crop(cv2.imread(str(media_dir / p)), det) for p in PHOTOS}


@pytest.fixture(scope="module")
def batch32(crops) -> np.ndarray:
    """32 distinct real-face crops: the photos, mirrored and shifted."""
    base = list(crops.values())
    variants = [c for c in base] + [c[:, ::-1] for c in base]
    variants += [np.roll(c, s, axis=a) for s in (3, -5) for a in (0, 1) for c in base]
    return np.ascontiguousarray(np.stack(variants[:32]))


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(), ModelStore())


def test_fused_graph_equals_each_head_run_alone(net, batch32):
    x = torch.from_numpy(batch32).permute(0, 3, 1, 2).float()
    out = net.infer(batch32)
    features = []
    for spec in net.specs:
        head = build_head(spec, net.store, net.crop_size, net.crop_scale)
        with torch.no_grad():
            alone, feats = head(x)
        np.testing.assert_allclose(out[spec.name], alone.numpy(), atol=1e-4, rtol=0)
        features.append(feats.numpy())
    np.testing.assert_allclose(out["embedding"], np.concatenate(features, axis=1), atol=1e-4, rtol=0)


def test_outputs_have_the_documented_shapes_and_ranges(net, batch32):
    out = net.infer(batch32)
    assert net.output_names == ("emotion", "gender", "embedding")
    assert {k: v.shape for k, v in out.items()} == {
        "emotion": (32, 7),
        "gender": (32,),
        "embedding": (32, 256),
    }
    np.testing.assert_allclose(out["emotion"].sum(1), 1.0, atol=1e-5)
    assert ((out["gender"] >= 0) & (out["gender"] <= 1)).all()


@pytest.mark.parametrize("batch_size", [1, 7, 32])
def test_batch_size_does_not_change_per_face_results(batch_size, net, batch32):
    whole = net.infer(batch32)
    parts = [net.infer(batch32[i : i + batch_size]) for i in range(0, len(batch32), batch_size)]
    for name in net.output_names:
        np.testing.assert_allclose(np.concatenate([p[name] for p in parts]), whole[name], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("photo", "emotion", "gender"),
    [
        ("pyfeat_happy_f15.jpg", "happy", "woman"),
        ("pyfeat_surprise_f1.jpg", "surprise", "woman"),
        ("fer_justin_smile.jpg", "happy", "man"),
        ("pyfeat_single_face_smile.jpg", "happy", "man"),
    ],
)
def test_real_photos_get_their_posed_emotion_and_gender(photo, emotion, gender, net, crops):
    out = net.infer(crops[photo][None])
    assert top_emotion(out["emotion"])[1] == [emotion]
    assert gender_label(out["gender"]) == [gender]


def test_empty_batch_gives_empty_arrays_without_running_the_backend(net):
    class Refusing:
        name = "refusing"

        def run(self, crops_bgr):
            raise AssertionError("the backend ran on an empty batch")

    empty_net = MultiTaskNet(NetConfig(), net.store)
    empty_net.backend = Refusing()
    out = empty_net.infer(np.zeros((0, 128, 128, 3), np.uint8))
    assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
        "emotion": ((0, 7), np.float32),
        "gender": ((0,), np.float32),
        "embedding": ((0, 256), np.float32),
    }


def test_emotion_only_head_set_matches_the_full_net(net, batch32):
    only = MultiTaskNet(NetConfig(heads=("emotion",)), net.store)
    out = only.infer(batch32)
    assert set(out) == {"emotion", "embedding"} and out["embedding"].shape == (32, 128)
    assert only.models == [("fer_mini_xception", net.store.sha256("fer_mini_xception"))]
    np.testing.assert_allclose(out["emotion"], net.infer(batch32)["emotion"], atol=1e-6)
    assert only.onnx_path != net.onnx_path


def test_second_construction_hits_the_export_cache(tmp_path):
    store = ModelStore(cache_dir=tmp_path)
    first = MultiTaskNet(NetConfig(heads=("gender",)), store)
    stat = first.onnx_path.stat()
    second = MultiTaskNet(NetConfig(heads=("gender",)), store)
    assert second.onnx_path == first.onnx_path
    assert (second.onnx_path.stat().st_mtime_ns, second.onnx_path.stat().st_ino) == (
        stat.st_mtime_ns,
        stat.st_ino,
    )
    assert first.onnx_path.parent == store.derived_dir / "onnx"
    assert [p.name for p in first.onnx_path.parent.iterdir()] == [first.onnx_path.name]  # no temp files left


def test_a_cached_graph_runs_without_importing_torch(net):
    code = (
        "import sys, numpy as np; from engines.multitask import MultiTaskNet, NetConfig; "
        "out = MultiTaskNet(NetConfig()).infer(np.zeros((1, 128, 128, 3), np.uint8)); "
        "assert out['emotion'].shape == (1, 7); assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert net.onnx_path.is_file()  # exported into this session's cache, which the child inherits
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], env=os.environ.copy()
    )


def test_a_crash_during_export_leaves_no_file(tmp_path):
    class Exploding(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("boom")

    path = tmp_path / "onnx" / "x.onnx"
    with pytest.raises(RuntimeError, match="boom"):
        export.ensure_onnx(path, Exploding, lambda: torch.zeros(1, 3), ("y",))
    assert os.listdir(path.parent) == []


def test_fused_net_is_importable_from_multitask_and_runs_torch(net, batch32):
    module = net.torch_module()
    assert isinstance(module, FusedNet)
    named = module.run_named(torch.from_numpy(batch32[:3]))
    np.testing.assert_allclose(named["emotion"].numpy(), net.infer(batch32[:3])["emotion"], atol=1e-4)


@pytest.mark.parametrize(
    ("head", "crop_scale", "fraction"),
    [("emotion", 2.0, 0.6), ("gender", 2.0, 0.8), ("gender", 1.5, 1.0), ("emotion", 3.0, 0.4)],
)
def test_each_head_reads_its_own_share_of_the_crop(head, crop_scale, fraction):
    assert center_fraction(head_spec(head).face_pad, crop_scale) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: NetConfig(heads=("emotion", "smile")), EmostreamError, "unknown head 'smile'"),
        (lambda: NetConfig(quality="best"), EmostreamError, "unknown quality"),
        (lambda: NetConfig(heads=()), EmostreamError, "non-empty"),
    ],
)
def test_bad_configs_raise_one_line_errors(make, error, message):
    with pytest.raises(error, match=message):
        MultiTaskNet(make())


@pytest.mark.parametrize("heads", ["emotion", ["emotion"], ("emotion",)])
def test_config_heads_are_stored_as_a_tuple(heads):
    assert NetConfig(heads=heads).heads == ("emotion",)


def test_wrong_crop_shape_is_refused(net):
    with pytest.raises(ValueError, match=r"\(N,128,128,3\) uint8"):
        net.infer(np.zeros((2, 64, 64, 3), np.uint8))
