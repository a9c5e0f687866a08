"""Batched torch augmentation and window sampling for gray faces (or BGR ones) of any stored size.

Images may live on a GPU; every random draw is made on the CPU generator `gen` and moved, so a run's
random stream is the same whatever the device.

Each source stores whole images in which the pipeline's face square has a measured place (`FaceFrame`).
One `affine_grid` + `grid_sample` per sub-batch cuts the net's
window (`WINDOW_SCALE` x the face square, `INPUT_SIZE` px) with random flip, scale, rotation and shift,
then brightness/contrast jitter and random erasing are applied on the normalised window. Colour windows
(only for tools/gray_vs_colour.py) get the same jitter on every channel, and optionally random grayscale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engines.nets.mtl import GRAY_WEIGHTS, INPUT_SIZE, MEAN, STD, WINDOW_DY, WINDOW_SCALE


@dataclass(frozen=True)
class FaceFrame:
    """Where the pipeline's face square lies in a dataset's images, as fractions of the image side: its
    side and centre (measured by running the project's YuNet + 5-point aligner on the images)."""

    side: float
    cx: float = 0.5
    cy: float = 0.5

    @staticmethod
    def of(base: FaceFrame | float) -> FaceFrame:
        """A FaceFrame as is; a number is a centred face square of that fraction."""
        return base if isinstance(base, FaceFrame) else FaceFrame(float(base))


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random jitter (all uniform, symmetric)."""

    scale: float = 0.10  # window side x [1 - s, 1 + s]
    shift: float = 0.06  # window centre moved by up to this fraction of the window side
    rotate_deg: float = 10.0
    brightness: float = 0.12  # added, on the [0, 1] pixel scale
    contrast: float = 0.3  # multiplied around the window mean by [1 - c, 1 + c]
    erase_p: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.2)
    gray_p: float = 0.0  # BGR windows only: turned gray (3 equal channels) with this probability


def _theta(n: int, base: FaceFrame | float, cfg: AugmentConfig | None, gen: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine maps from window coordinates to image coordinates (normalised coords)."""
    face = FaceFrame.of(base)
    frac = face.side * WINDOW_SCALE
    cx, cy = 2 * face.cx - 1, 2 * (face.cy + WINDOW_DY * face.side) - 1
    if cfg is None:
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = frac
        theta[:, 0, 2], theta[:, 1, 2] = cx, cy
        return theta
    u = torch.rand(n, 5, generator=gen) * 2 - 1
    s = frac * (1 + cfg.scale * u[:, 0])
    a = u[:, 1] * math.radians(cfg.rotate_deg)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.empty(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = s * torch.cos(a) * flip, -s * torch.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = s * torch.sin(a) * flip, s * torch.cos(a)
    theta[:, 0, 2] = cx + 2 * frac * cfg.shift * u[:, 2]
    theta[:, 1, 2] = cy + 2 * frac * cfg.shift * u[:, 3]
    return theta


def sample_windows(
    images: torch.Tensor,
    base: FaceFrame | float,
    cfg: AugmentConfig | None = None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (n, H, W) gray or (n, H, W, C) whole images -> float (n, 1 or C, INPUT_SIZE, INPUT_SIZE)
    windows on the [0, 1] scale."""
    x = (images.float().unsqueeze(1) if images.ndim == 3 else images.float().permute(0, 3, 1, 2)) / 255.0
    theta = _theta(len(images), base, cfg, gen or torch.default_generator).to(x.device)
    grid = F.affine_grid(theta, [len(images), 1, INPUT_SIZE, INPUT_SIZE], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Brightness / contrast jitter on [0, 1] windows (one draw per window, all channels alike), clamped back
    to [0, 1]."""
    n = len(x)
    c = (1 + cfg.contrast * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)).to(x.device)
    b = (cfg.brightness * (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1)).to(x.device)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - m) * c + m + b).clamp(0, 1)


def random_gray(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """BGR [0, 1] windows: each turned gray with probability `p` (the pipeline's BGR->gray weights,
    repeated on the 3 channels), so a colour trunk also learns the 3-equal-channel faces FER+ would give."""
    weights = torch.tensor(GRAY_WEIGHTS, device=x.device).view(1, 3, 1, 1)
    gray = (x * weights).sum(1, keepdim=True).expand_as(x)
    pick = (torch.rand(len(x), generator=gen) < p).view(-1, 1, 1, 1).to(x.device)
    return torch.where(pick, gray, x)


def random_erase(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Zero (= the normalised mean) one random rectangle per window with probability erase_p."""
    n, _, h, w = x.shape
    r = torch.rand(n, 5, generator=gen)
    area = (cfg.erase_area[0] + r[:, 0] * (cfg.erase_area[1] - cfg.erase_area[0])) * h * w
    aspect = torch.exp((r[:, 1] * 2 - 1) * math.log(3.0))
    eh = (area * aspect).sqrt().clamp(1, h).floor()
    ew = (area / aspect).sqrt().clamp(1, w).floor()
    y0 = (r[:, 2] * (h - eh + 1)).floor()
    x0 = (r[:, 3] * (w - ew + 1)).floor()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    inside = (ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
    inside = inside & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1))
    mask = inside & (r[:, 4] < cfg.erase_p).view(n, 1, 1)
    return x.masked_fill(mask.unsqueeze(1).to(x.device), 0.0)


def make_batch(
    images: torch.Tensor,
    base: FaceFrame | float,
    cfg: AugmentConfig | None,
    gen: torch.Generator | None = None,
) -> torch.Tensor:
    """Whole uint8 images -> normalised network input; `cfg` None gives the plain centred window."""
    gen = gen or torch.default_generator
    x = sample_windows(images, base, cfg, gen)
    if cfg is not None and cfg.gray_p > 0 and x.shape[1] == 3:
        x = random_gray(x, cfg.gray_p, gen)
    if cfg is not None:
        x = photometric(x, cfg, gen)
    x = (x - MEAN) / STD
    return random_erase(x, cfg, gen) if cfg is not None else x
