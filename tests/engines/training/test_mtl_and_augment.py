"""The network's outputs and framing helpers, and the window sampling of the augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from engines.nets import mtl
from engines.training import utkface
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
    assert 20e6 < mtl.count_macs(mtl.MTLNet()) < 30e6  # the cost budget: half the old fused graph


def test_colour_windows_keep_three_channels_and_the_gray_path_draws(datasets):
    """BGR faces give (n, 3, 48, 48) windows with the same geometric and erasing draws as the gray path:
    with photometric jitter off, the gray of the colour batch is the gray batch (decode rounding apart)."""
    gray = torch.from_numpy(utkface.read_utkface(datasets, limit=16).images)
    bgr = torch.from_numpy(utkface.read_utkface(datasets, limit=16, colour=True).images)
    cfg = AugmentConfig(brightness=0, contrast=0, erase_p=1.0)
    g = make_batch(gray, UTK_BASE, cfg, torch.Generator().manual_seed(3))
    c = make_batch(bgr, UTK_BASE, cfg, torch.Generator().manual_seed(3))
    side = mtl.INPUT_SIZE
    assert g.shape == (16, 1, side, side) and c.shape == (16, 3, side, side)
    c_gray = (c * torch.tensor(mtl.GRAY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (c_gray - g).abs().mean() < 1 / 255 / mtl.STD
    torch.testing.assert_close(c == 0, (g == 0).expand_as(c))  # the same erased rectangles
    assert (c[:, 0] - c[:, 2]).abs().mean() > 0.1  # still colour


def test_random_gray_gives_equal_channels_through_the_jitter(datasets):
    bgr = torch.from_numpy(utkface.read_utkface(datasets, limit=64, colour=True).images)
    all_gray = make_batch(bgr, UTK_BASE, AugmentConfig(gray_p=1.0), torch.Generator().manual_seed(0))
    torch.testing.assert_close(all_gray[:, 0], all_gray[:, 1])  # photometric jitter alike on every channel
    torch.testing.assert_close(all_gray[:, 1], all_gray[:, 2])
    half = make_batch(bgr, UTK_BASE, AugmentConfig(gray_p=0.5), torch.Generator().manual_seed(0))
    n_gray = int((half[:, 0] == half[:, 2]).flatten(1).all(1).sum())
    assert 16 <= n_gray <= 48


def test_colour_net_runs_and_costs_twice_the_first_conv_more():
    gray, colour = mtl.MTLNet(), mtl.MTLNet(in_ch=3)
    assert colour(torch.zeros(2, 3, mtl.INPUT_SIZE, mtl.INPUT_SIZE))["age_logits"].shape == (2, mtl.AGE_BINS)
    first_conv_per_channel = mtl.INPUT_SIZE**2 * mtl.WIDTHS[0] * 9
    assert mtl.count_macs(colour) - mtl.count_macs(gray) == 2 * first_conv_per_channel
    assert colour.config == gray.config  # in_ch is not part of the saved config: gray stays the only release
