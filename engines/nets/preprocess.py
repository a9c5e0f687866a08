"""In-graph preprocessing shared by the heads: center window + bilinear resize + BGR->gray + scaling.

A head's window is the centered square of `fraction` of the crop, rounded to whole pixels with equal
margins (at most half a pixel per side off the exact fraction), sliced out and resized bilinearly
with half-pixel centres and no antialiasing: exactly what cv2.resize INTER_LINEAR does on the sliced
window. In the graph that is a Slice and a Resize, which onnxruntime runs about 4x faster than the
equivalent dense (out, S) matrix products the first versions used.
Gray uses the ITU-R 601 weights cv2.cvtColor uses; the scaling (x/255 - 0.5) * 2 is folded into them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

BGR_TO_GRAY = (0.114, 0.587, 0.299)
"""ITU-R 601 luma weights in B, G, R order (cv2.COLOR_BGR2GRAY)."""


def window_bounds(size_in: int, fraction: float) -> tuple[int, int]:
    """[lo, hi) of the centered whole-pixel window nearest to `fraction * size_in` px (equal margins)."""
    margin = int(np.clip(round((1.0 - fraction) * size_in / 2.0), 0, (size_in - 1) // 2))
    return margin, size_in - margin


class WindowResize(nn.Module):
    """(N,C,S,S) -> (N,C,out,out): the centered window (`window_bounds`), resized like cv2 INTER_LINEAR."""

    def __init__(self, crop_size: int, fraction: float, out_size: int):
        super().__init__()
        self.lo, self.hi = window_bounds(crop_size, fraction)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.crop(x))

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The window itself, (N,C,hi-lo,hi-lo)."""
        return x[:, :, self.lo : self.hi, self.lo : self.hi] if self.lo else x

    def resize(self, window: torch.Tensor) -> torch.Tensor:
        """A cropped window resized to (out, out)."""
        if window.shape[-1] == self.out_size:
            return window
        size = (self.out_size, self.out_size)
        return F.interpolate(window, size=size, mode="bilinear", align_corners=False, antialias=False)


def scaled_gray(x_bgr: torch.Tensor) -> torch.Tensor:
    """(N,3,S,S) float BGR 0-255 -> (N,1,S,S) gray * 2/255 (the [-1, 1] scaling minus its offset)."""
    # Python-float weights: no tensor is made per call (a host->device copy is not allowed while a
    # CUDA graph is captured), and the graph exports as three Mul and two Add on channel slices.
    wb, wg, wr = (w * (2.0 / 255.0) for w in BGR_TO_GRAY)
    return x_bgr[:, 0:1] * wb + x_bgr[:, 1:2] * wg + x_bgr[:, 2:3] * wr


class GrayWindow(nn.Module):
    """(N,3,S,S) float BGR 0-255 -> (N,1,out,out) gray scaled to [-1, 1] from the centered window.

    With `mirrored`, the output is (2N,1,out,out): the N windows, then the same N mirrored left-right
    (test-time augmentation; the window is centered, so this is the window of the mirrored crop).
    """

    def __init__(self, crop_size: int, fraction: float, out_size: int = 64, mirrored: bool = False):
        super().__init__()
        self.crop_size, self.fraction, self.out_size, self.mirrored = crop_size, fraction, out_size, mirrored
        self.window = WindowResize(crop_size, fraction, out_size)

    def forward(self, x_bgr: torch.Tensor, gray: torch.Tensor | None = None) -> torch.Tensor:
        """`gray` (from `scaled_gray(x_bgr)`) may be passed in when several heads share it."""
        out = self.window(scaled_gray(x_bgr) if gray is None else gray) - 1.0
        return torch.cat([out, out.flip(3)], dim=0) if self.mirrored else out


class Head(nn.Module):
    """Base of every head: (N,3,S,S) float BGR crops -> (output (N,*tail), features (N,D)).

    Subclasses set `name` (the output name), `feature_dim` and `fraction` (window of the crop used).
    Heads with `uses_gray` also accept `gray=scaled_gray(x_bgr)`, computed once by the fused net for
    all of them.
    """

    name: str = ""
    feature_dim: int = 0

    @property
    def output_names(self) -> tuple[str, ...]:
        """The names of this head's outputs, main one first (features not included)."""
        return (self.name,)

    fraction: float = 1.0
    uses_gray: bool = False
