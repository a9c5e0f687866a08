"""The network's outputs and framing helpers, and the window sampling of the augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines.nets import mtl
from engines.training.augment import AugmentConfig, FaceFrame, make_batch, sample_windows
from engines.training.data import FER_BASE, UTK_BASE


def test_forward_shapes_and_age_decode():
    model = mtl.MTLNet().eval()
    out = model(torch.zeros(3, 1, mtl.INPUT_SIZE, mtl.INPUT_SIZE))
    assert out["emotion_logits"].shape == (3, 8)
    assert out["gender_logit"].shape == (3,)
    assert out["age_logits"].shape == (3, mtl.AGE_BINS)
    assert out["embedding"].shape == (3, mtl.EMBED_DIM)
    logits = torch.randn(4, mtl.AGE_BINS)
    np.testing.assert_allclose(mtl.decode_age(logits.numpy()), mtl.decode_age(logits).numpy(), rtol=1e-5)
    peaked = torch.full((1, mtl.AGE_BINS), -50.0)
    peaked[0, 37] = 50.0
    assert float(mtl.decode_age(peaked)) == torch.tensor(37.0).item()


def test_preprocess_matches_training_normalisation(small_data):
    imgs = small_data.fer_val.images[:4]
    windows = (sample_windows(imgs, FER_BASE)[:, 0] * 255).round().to(torch.uint8).numpy()
    via_train = make_batch(imgs, FER_BASE, None).numpy()
    np.testing.assert_allclose(via_train, mtl.preprocess(windows), atol=0.6 / 255 / mtl.STD)


def _window_by_remap(img: np.ndarray, face: FaceFrame) -> np.ndarray:
    """The centred training window computed independently: pixel-centre coordinates through cv2.remap."""
    h, w = img.shape
    side = face.side * mtl.WINDOW_SCALE
    cx, cy = face.cx * w, (face.cy + mtl.WINDOW_DY * face.side) * h
    t = (np.arange(mtl.INPUT_SIZE) + 0.5) / mtl.INPUT_SIZE - 0.5  # window coords in [-0.5, 0.5)
    map_x = np.broadcast_to(cx + t[None, :] * side * w - 0.5, (mtl.INPUT_SIZE, mtl.INPUT_SIZE))
    map_y = np.broadcast_to(cy + t[:, None] * side * h - 0.5, (mtl.INPUT_SIZE, mtl.INPUT_SIZE))
    return cv2.remap(img.astype(np.float32), map_x.astype(np.float32), map_y.astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)  # fmt: skip


@pytest.mark.parametrize("face", [UTK_BASE, FER_BASE, FaceFrame(0.6)])
def test_window_matches_an_independent_remap(small_data, face):
    imgs = small_data.utk_val.images[:4]
    win = (sample_windows(imgs, face) * 255)[:, 0].numpy()
    ref = np.stack([_window_by_remap(i, face) for i in imgs.numpy()])
    np.testing.assert_allclose(win, ref, atol=0.05)


def test_augmented_batches_are_random_but_seeded(small_data):
    imgs = small_data.fer_train.images[:8]
    a = make_batch(imgs, FER_BASE, AugmentConfig(), torch.Generator().manual_seed(1))
    b = make_batch(imgs, FER_BASE, AugmentConfig(), torch.Generator().manual_seed(1))
    c = make_batch(imgs, FER_BASE, AugmentConfig(), torch.Generator().manual_seed(2))
    assert a.shape == (8, 1, mtl.INPUT_SIZE, mtl.INPUT_SIZE)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_macs_counted():
    assert 30e6 < mtl.count_macs(mtl.MTLNet()) < 50e6
