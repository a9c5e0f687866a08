"""Aligned face crops on the CPU from image->crop matrices (cv2.warpAffine convention), torch-free.

One recipe for every caller: `pipeline.stages.align.crop_faces` (the pipeline), the backend benchmark,
and the reference that `engines.backends.device_crops` (the same recipe on a GPU) is tested against.
Faces shrunk by more than 2x are sampled from a cv2.pyrDown level of the image, so they do not alias.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

MAX_PYRAMID_LEVEL = 6
BORDER_MODE = cv2.BORDER_REPLICATE
"""Outside the image, edge pixels repeat: black bars would add strong edges and darken the heads' input."""


def pyramid_level(matrix: np.ndarray, max_level: int = MAX_PYRAMID_LEVEL) -> int:
    """How many 2x pyrDown steps bring a crop's pixels-per-image-pixel back to at least 0.5."""
    k = math.hypot(float(matrix[0, 0]), float(matrix[1, 0]))
    if not k > 0 or k >= 0.5:
        return 0
    return min(max_level, math.ceil(math.log2(0.5 / k)))


def level_matrix(matrix: np.ndarray, level: int) -> np.ndarray:
    """The image->crop matrix for pyramid `level` (a level-l pixel x sits at 2**l x in the image)."""
    mat = np.array(matrix, np.float64)
    mat[:, :2] *= 2**level
    return mat


def warp_crops_cv2(image_bgr: np.ndarray, matrices: np.ndarray, size: int) -> np.ndarray:
    """(N,size,size,3) uint8 crops with cv2.warpAffine, from the pyramid level each face needs."""
    out = np.empty((len(matrices), size, size, 3), np.uint8)
    pyramid = [image_bgr]
    for i, mat in enumerate(np.asarray(matrices, np.float64).reshape(-1, 2, 3)):
        level = pyramid_level(mat)
        while len(pyramid) <= level:
            pyramid.append(cv2.pyrDown(pyramid[-1]))
        out[i] = cv2.warpAffine(
            pyramid[level],
            level_matrix(mat, level),
            (size, size),
            flags=cv2.INTER_LINEAR,
            borderMode=BORDER_MODE,
        )
    return out
