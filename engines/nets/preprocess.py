"""In-graph preprocessing shared by the heads: center crop + bilinear resize + BGR->gray + scaling.

The crop and the resize are one linear map per axis: a (out, S) matrix whose rows hold the two
bilinear weights of each output pixel inside the centered window (half-pixel centres, border
clamped, no antialiasing: what cv2.resize INTER_LINEAR does on the cropped region). The window may
have a fractional size and offset, so every head gets exactly its own margin. Gray uses the ITU-R 601
weights cv2.cvtColor uses; the scaling (x/255 - 0.5) * 2 is folded into those weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

BGR_TO_GRAY = (0.114, 0.587, 0.299)
"""ITU-R 601 luma weights in B, G, R order (cv2.COLOR_BGR2GRAY)."""


def window_resize_matrix(size_in: int, size_out: int, fraction: float) -> np.ndarray:
    """(size_out, size_in) bilinear weights sampling the centered window of `fraction * size_in` px."""
    length = fraction * size_in
    start = (size_in - length) / 2.0
    src = start + (np.arange(size_out) + 0.5) * (length / size_out) - 0.5
    src = np.clip(src, 0.0, size_in - 1.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, size_in - 1)
    w1 = src - i0
    m = np.zeros((size_out, size_in), np.float64)
    rows = np.arange(size_out)
    np.add.at(m, (rows, i0), 1.0 - w1)
    np.add.at(m, (rows, i1), w1)
    return m.astype(np.float32)


def scaled_gray(x_bgr: torch.Tensor) -> torch.Tensor:
    """(N,3,S,S) float BGR 0-255 -> (N,S,S) gray * 2/255 (the [-1, 1] scaling minus its offset)."""
    weights = torch.tensor(BGR_TO_GRAY, dtype=torch.float32, device=x_bgr.device) * (2.0 / 255.0)
    return (x_bgr * weights.view(1, 3, 1, 1)).sum(dim=1)


class GrayWindow(nn.Module):
    """(N,3,S,S) float BGR 0-255 -> (N,1,out,out) gray scaled to [-1, 1] from the centered window.

    With `mirrored`, the output is (2N,1,out,out): the N windows, then the same N mirrored left-right
    (test-time augmentation). The window is centered, so mirroring is the x-axis matrix with its
    output columns reversed: exactly the resize of the mirrored crop, for one extra small matmul.
    """

    def __init__(self, crop_size: int, fraction: float, out_size: int = 64, mirrored: bool = False):
        super().__init__()
        self.crop_size, self.fraction, self.out_size, self.mirrored = crop_size, fraction, out_size, mirrored
        m = torch.from_numpy(window_resize_matrix(crop_size, out_size, fraction))
        self.register_buffer("rows", m)  # (out, S): y axis
        cols_t = m.t().contiguous()  # (S, out): x axis
        self.register_buffer("cols_t", torch.cat([cols_t, cols_t.flip(1)], 1) if mirrored else cols_t)

    def forward(self, x_bgr: torch.Tensor, gray: torch.Tensor | None = None) -> torch.Tensor:
        """`gray` (from `scaled_gray(x_bgr)`) may be passed in when several heads share it."""
        gray = scaled_gray(x_bgr) if gray is None else gray
        out = torch.matmul(torch.matmul(self.rows, gray), self.cols_t) - 1.0  # rows of each matrix sum to 1
        if self.mirrored:  # (N,out,2·out): the plain and the mirrored window side by side
            out = torch.cat([out[..., : self.out_size], out[..., self.out_size :]], dim=0)
        return out.unsqueeze(1)


class Head(nn.Module):
    """Base of every head: (N,3,S,S) float BGR crops -> (output (N,*tail), features (N,D)).

    Subclasses set `name` (the output name), `feature_dim` and `fraction` (window of the crop used).
    Heads with `uses_gray` also accept `gray=scaled_gray(x_bgr)`, computed once by the fused net for
    all of them.
    """

    name: str = ""
    feature_dim: int = 0
    fraction: float = 1.0
    uses_gray: bool = False
