"""Every head against TensorFlow's own conversion of its model, preprocessing done the upstream way.

References: crop the head's window out of a real aligned crop by slicing, resize it with cv2 (float,
INTER_LINEAR), convert colour and scale as each upstream project does, and run the tf2onnx graphs
in ../shared/models/reference. The nets read a 160 px crop here so that every window is a whole
number of pixels (0.5, 0.8 and 0.95 of 160) and slicing is exact.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from engines.multitask import MultiTaskNet, NetConfig
from engines.nets.heads import center_fraction, head_spec
from engines.nets.preprocess import window_bounds
from engines.store.store import ModelStore

SIZE = 160


def window(crops: np.ndarray, fraction: float, mirrored: bool = False) -> np.ndarray:
    """(N,64,64,3) float32 BGR: the centered window of each crop, cv2-resized (and mirrored)."""
    side = round(fraction * SIZE)
    lo = (SIZE - side) // 2
    assert lo * 2 + side == SIZE, "the test window must be whole pixels"
    out = [cv2.resize(c[lo : lo + side, lo : lo + side].astype(np.float32), (64, 64)) for c in crops]
    return np.stack([cv2.flip(o, 1) if mirrored else o for o in out])


def reference(models_dir, name: str, x_nhwc: np.ndarray) -> np.ndarray:
    path = models_dir / "reference" / f"{name}.nhwc.onnx"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x_nhwc, np.float32)})[0]


def fer_input(windows_bgr: np.ndarray) -> np.ndarray:
    """face_classification's preprocessing: gray, x/255, (x - 0.5) * 2, channel last."""
    gray = np.stack([cv2.cvtColor(w, cv2.COLOR_BGR2GRAY) for w in windows_bgr])
    return ((gray / 255.0 - 0.5) * 2.0)[..., None]


def ref_emotion_fast(models_dir, crops):
    return reference(models_dir, "fer2013_mini_XCEPTION.102-0.66", fer_input(window(crops, 0.5)))


def ref_emotion_accurate(models_dir, crops):
    views = [fer_input(window(crops, 0.5, mirrored)) for mirrored in (False, True)]
    names = ["fer2013_mini_XCEPTION.102-0.66", "fer2013_big_XCEPTION.54-0.66"]
    return np.mean([reference(models_dir, n, v) for n in names for v in views], axis=0)


def ref_gender(models_dir, crops):
    return reference(models_dir, "gender_mini_XCEPTION.21-0.95", fer_input(window(crops, 0.8)))[:, 1]


def ref_age(models_dir, crops):
    return reference(models_dir, "ssrnet_age_imdb", window(crops, 0.95))[:, 0]


def ref_gender_ssr(models_dir, crops):
    return np.clip(reference(models_dir, "ssrnet_gender_imdb", window(crops, 0.95))[:, 0], 0.0, 1.0)


@pytest.fixture(scope="module")
def crops160(crops_of) -> np.ndarray:
    return np.concatenate(list(crops_of(SIZE).values()))


@pytest.mark.parametrize(
    ("head", "quality", "make_reference", "atol"),
    [
        ("emotion", "fast", ref_emotion_fast, 1e-4),
        ("emotion", "accurate", ref_emotion_accurate, 1e-4),
        ("gender", "fast", ref_gender, 1e-4),
        ("age", "fast", ref_age, 1e-4),
        ("gender_ssr", "fast", ref_gender_ssr, 1e-4),
    ],
)
def test_head_in_the_fused_graph_matches_tensorflows_model(
    head, quality, make_reference, atol, crops160, models_dir
):
    net = MultiTaskNet(NetConfig(heads=(head,), quality=quality, crop_size=SIZE), ModelStore())
    ours = net.infer(crops160)[head]
    ref = make_reference(models_dir, crops160)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=atol, rtol=0)
    assert np.ptp(ref) > 0.1  # different faces give different answers: not a saturated comparison


@pytest.mark.parametrize(
    ("head", "quality", "fraction"),
    [
        ("emotion", "fast", 0.5),
        ("emotion", "accurate", 0.5),
        ("emotion", "affectnet", 0.5),
        ("gender", "fast", 0.8),
        ("gender", "accurate", 0.8),
        ("age", "fast", 0.95),
        ("gender_ssr", "fast", 0.95),
    ],
)
def test_each_head_reads_its_own_share_of_the_crop(head, quality, fraction):
    assert center_fraction(head_spec(head, quality).face_pad, 2.0) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("face_pad", "crop_scale", "fraction"), [(0.0, 3.0, 1 / 3), (0.3, 1.5, 1.0), (0.45, 1.0, 1.0)]
)
def test_a_margin_wider_than_the_crop_uses_the_whole_crop(face_pad, crop_scale, fraction):
    assert center_fraction(face_pad, crop_scale) == pytest.approx(fraction)


@pytest.mark.parametrize(
    ("size", "fraction", "bounds"),
    [
        (128, 0.5, (32, 96)),
        (128, 0.8, (13, 115)),
        (128, 0.95, (3, 125)),
        (128, 1.0, (0, 128)),
        (7, 0.01, (3, 4)),
    ],
)
def test_windows_are_whole_pixels_with_equal_margins(size, fraction, bounds):
    assert window_bounds(size, fraction) == bounds


@pytest.mark.parametrize(
    ("head", "quality", "models"),
    [
        ("emotion", "fast", ("fer_mini_xception",)),
        ("emotion", "accurate", ("fer_mini_xception", "fer_big_xception")),
        ("emotion", "affectnet", ("hsemotion_enet_b0_8",)),
        ("gender", "affectnet", ("gender_mini_xception",)),  # other heads fall back to "fast"
        ("age", "accurate", ("ssrnet_age_imdb",)),
    ],
)
def test_quality_picks_the_models_of_each_head(head, quality, models):
    assert head_spec(head, quality).models == models
