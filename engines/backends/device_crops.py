"""Aligned face crops cut on the inference device: a frame is uploaded once, not once per face.

Input: a frame (H,W,3) uint8 BGR and the (N,2,3) image->crop matrices of its faces (the numbers
`pipeline.stages.align.crop_matrices` makes, cv2.warpAffine convention). Output: (N,S,S,3) uint8 crops on the
same device, made like `pipeline.stages.align.crop_faces`: bilinear sampling of the inverse map, edge pixels
replicated outside the image (grid_sample padding_mode="border" = cv2.BORDER_REPLICATE), and faces
shrunk by more than 2x sampled from a pyrDown level of the frame (5x5 binomial blur with reflect-101
borders, every second pixel, rounded to uint8 at each level as cv2.pyrDown does).

`engines.crops.warp_crops_cv2` (re-exported here) is the same recipe on the CPU with OpenCV: the pipeline's
and the benchmark's CPU path, and the reference the device path is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engines.crops import MAX_PYRAMID_LEVEL, level_matrix, pyramid_level, warp_crops_cv2

__all__ = [
    "MAX_PYRAMID_LEVEL",
    "crop_frames",
    "level_matrix",
    "pyramid_level",
    "warp_crops",
    "warp_crops_cv2",
]

_BINOMIAL = (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16)


def upload_frame(image_bgr: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """(H,W,3) uint8 on `device` (one host->device copy per frame)."""
    return torch.from_numpy(np.ascontiguousarray(image_bgr, np.uint8)).to(device)


def pyr_down(planes: torch.Tensor) -> torch.Tensor:
    """cv2.pyrDown of (1,3,H,W) float 0-255 planes: binomial 5x5 blur, reflect-101, even pixels, rounded.

    Written as weighted sums of strided slices (separable: rows, then columns): as fast as a
    convolution on a GPU and much faster than a grouped one on a CPU.
    """
    padded = F.pad(planes, (2, 2, 2, 2), mode="reflect")  # torch "reflect" leaves the edge out: reflect-101
    rows_out, cols_out = (planes.shape[2] + 1) // 2, (planes.shape[3] + 1) // 2
    rows = sum(w * padded[:, :, t : t + 2 * rows_out - 1 : 2, :] for t, w in enumerate(_BINOMIAL))
    out = sum(w * rows[:, :, :, t : t + 2 * cols_out - 1 : 2] for t, w in enumerate(_BINOMIAL))
    return out.round()


def _normaliser(width: int, height: int) -> np.ndarray:
    """3x3 map from pixel coordinates (centres at integers) to grid_sample's [-1,1] (align_corners=False)."""
    return np.array([[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]])


def affine_thetas(matrices: np.ndarray, src_wh: tuple[int, int], size: int) -> np.ndarray:
    """(N,2,3) affine_grid thetas: normalised crop coords -> normalised source coords (inverse map)."""
    mats = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    full = np.concatenate([mats, np.broadcast_to([[[0.0, 0.0, 1.0]]], (len(mats), 1, 3))], axis=1)
    crop_to_src = np.linalg.inv(full)
    thetas = _normaliser(*src_wh) @ crop_to_src @ np.linalg.inv(_normaliser(size, size))
    return thetas[:, :2].astype(np.float32)


def _sample(planes: torch.Tensor, thetas: np.ndarray, size: int) -> torch.Tensor:
    """(N,size,size,3) float crops of (1,3,H,W) planes, one grid_sample call for every face."""
    n = len(thetas)
    theta = torch.from_numpy(thetas).to(planes.device, planes.dtype)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    out = F.grid_sample(
        planes, grid.reshape(1, n * size, size, 2), "bilinear", padding_mode="border", align_corners=False
    )
    return out.reshape(3, n, size, size).permute(1, 2, 3, 0)


def warp_crops(frame: torch.Tensor, matrices: np.ndarray, size: int) -> torch.Tensor:
    """(N,size,size,3) uint8 crops on `frame`'s device from an (H,W,3) uint8 frame tensor."""
    mats = np.asarray(matrices, np.float64).reshape(-1, 2, 3)
    out = torch.empty((len(mats), size, size, 3), dtype=torch.uint8, device=frame.device)
    if not len(mats):
        return out
    levels = np.array([pyramid_level(m) for m in mats])
    planes = frame.permute(2, 0, 1).unsqueeze(0).to(torch.float32)
    for level in range(int(levels.max()) + 1):
        if level:
            planes = pyr_down(planes)
        rows = np.flatnonzero(levels == level)
        if len(rows):
            src_wh = (planes.shape[3], planes.shape[2])
            thetas = affine_thetas(np.stack([level_matrix(m, level) for m in mats[rows]]), src_wh, size)
            crops = _sample(planes, thetas, size)
            out[torch.from_numpy(rows).to(frame.device)] = crops.round().clamp(0, 255).to(torch.uint8)
    return out


def crop_frames(
    images_bgr: Sequence[np.ndarray],
    matrices_per_frame: Sequence[np.ndarray],
    size: int,
    device: torch.device | str,
) -> torch.Tensor:
    """(sum N,size,size,3) uint8 crops on `device`, frame by frame; faceless frames are not uploaded."""
    if len(images_bgr) != len(matrices_per_frame):
        raise ValueError(f"{len(images_bgr)} frames but {len(matrices_per_frame)} matrix sets")
    parts = [
        warp_crops(upload_frame(image, device), mats, size)
        for image, mats in zip(images_bgr, matrices_per_frame, strict=True)
        if len(mats)
    ]
    if not parts:
        return torch.empty((0, size, size, 3), dtype=torch.uint8, device=device)
    return torch.cat(parts) if len(parts) > 1 else parts[0]
