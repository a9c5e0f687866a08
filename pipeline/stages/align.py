"""Face crops for the heads: 5-point similarity alignment, with a box-based fallback.

Every crop puts a "unit face square" (the tight face square of the ArcFace 112x112 template) in its
central 1/scale, upright. Heads then center-crop their own margin from it (emotion ~0.6 of the crop,
gender ~0.8, age ~0.95), so both paths must place the face alike:
- landmark path (all 5 landmarks finite): least-squares similarity (rotation, scale, shift) from the
  landmarks to the template points;
- box path (any landmark NaN): the square of side max(w,h) around the box, nudged by BOX_FACE_SIDE and
  BOX_FACE_DY so that it covers the same face square as the landmark path would (measured on YuNet).

Matrices map image pixels to crop pixels (cv2.warpAffine convention); `crop_matrices` is separate from
the warp so that a GPU backend can warp on the device with the same numbers.
"""

from __future__ import annotations

import numpy as np

from engines.crops import warp_crops_cv2
from pipeline.frames import FaceBatch

TEMPLATE_UNIT = (
    np.array(
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
        np.float64,
    )
    / 112.0
)
"""ArcFace 5-point template (right eye, left eye, nose, right/left mouth corner) in the unit face square."""

BOX_FACE_SIDE = 1.06
"""Side of the unit face square as a multiple of max(w,h) of a YuNet box (fits: 0.90-0.98 -> 1/0.945)."""

BOX_FACE_DY = -0.09
"""Shift of the unit face square's center from the box center, as a fraction of max(w,h) (YuNet boxes reach
lower on the chin than the template square: landmark fits put the box center at y 0.56-0.61 of the square)."""

"""Outside the image the crop repeats the edge pixels. At scale 2 faces near the frame edge need padding;
replicated edges keep the crop's brightness statistics natural, where black bars would add strong artificial
edges for the CNNs and darken the gray-level input. (torch grid_sample's padding_mode="border" matches.)"""


def template_in_crop(size: int, scale: float) -> np.ndarray:
    """(5,2) template landmark positions in crop pixels: size * (0.5 + (t - 0.5) / scale)."""
    return size * (0.5 + (TEMPLATE_UNIT - 0.5) / scale)


def similarity_matrices(landmarks: np.ndarray, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """(N,2,3) float32 least-squares similarity from each face's (5,2) landmarks to the template in the crop.

    Closed form of the 2-D similarity fit (equal to Umeyama without reflection); rows whose landmarks are
    not all finite, or collapse to one point, come back as NaN.
    """
    src = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
    dst = template_in_crop(size, scale)
    src_mean = src.mean(axis=1, keepdims=True)
    s = src - src_mean
    d = (dst - dst.mean(axis=0))[None]
    norm = (s**2).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        a = (s * d).sum(axis=(1, 2)) / norm
        b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(axis=1) / norm
    rot = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], axis=1)  # (N,2,2)
    shift = dst.mean(axis=0)[None] - np.einsum("nij,nj->ni", rot, src_mean[:, 0])
    mats = np.concatenate([rot, shift[..., None]], axis=2)
    bad = ~np.isfinite(mats).all(axis=(1, 2)) | (norm <= 1e-12)
    mats[bad] = np.nan
    return mats.astype(np.float32)


def box_matrices(xyxy: np.ndarray, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """(N,2,3) float32 scale-and-shift placing each box's face square in the central 1/scale of the crop."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    side_px = np.maximum(xyxy[:, 2:] - xyxy[:, :2], 1e-6).max(axis=1)
    center = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    center[:, 1] += BOX_FACE_DY * side_px
    k = size / (scale * BOX_FACE_SIDE * side_px)  # crop pixels per image pixel
    mats = np.zeros((len(xyxy), 2, 3))
    mats[:, 0, 0] = mats[:, 1, 1] = k
    mats[:, :, 2] = size / 2 - k[:, None] * center
    return mats.astype(np.float32)


def crop_matrices(batch: FaceBatch, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """(N,2,3) image->crop matrices: landmark similarity where all 5 landmarks are finite, else box-based."""
    mats = similarity_matrices(batch.landmarks, size, scale)
    use_box = ~np.isfinite(mats).all(axis=(1, 2))
    if use_box.any():
        mats[use_box] = box_matrices(batch.xyxy[use_box], size, scale)
    return mats


def crop_faces(image_bgr: np.ndarray, batch: FaceBatch, size: int = 128, scale: float = 2.0) -> np.ndarray:
    """(N,size,size,3) uint8 BGR aligned crops of every face in `batch`, in row order.

    Faces shrunk by more than 2x are warped from a cv2.pyrDown level of the image instead (bilinear
    sampling alone would alias); the placement is the same.
    """
    if not len(batch):
        return np.empty((0, size, size, 3), np.uint8)
    return warp_crops_cv2(image_bgr, crop_matrices(batch, size, scale), size)
