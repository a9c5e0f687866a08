"""The project's multi-task net (engines/nets/mtl.py) as heads of the fused graph: one trunk, three heads.

`MtlTrunk` cuts the net's window out of the aligned crop (`WINDOW_SCALE` x the face square, `WINDOW_DY`
below its centre: a Slice and a Resize in the graph), turns it gray, scales it and runs the net once.
The emotion, gender and age heads each hold the same trunk instance; `FusedNet` runs a shared trunk once
per batch and hands its outputs to every head that reads it (`from_trunk`), and takes the embedding
once. Outputs: `emotion` = softmax over the 7 FER2013 classes in FER2013 order (contempt left out),
`contempt` = P(contempt) of the softmax over all 8 FER+ classes (as the affectnet quality does),
`gender` = P(man), `age` = expected years over the age bins.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.errors import EmostreamError
from engines.labels import fer_columns
from engines.nets import mtl
from engines.nets.heads import HeadSpec
from engines.nets.preprocess import Head


def window_box(crop_size: int, crop_scale: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) whole-pixel bounds of the net's window in the crop."""
    side = crop_size / crop_scale * mtl.WINDOW_SCALE
    cy = crop_size / 2 + crop_size / crop_scale * mtl.WINDOW_DY
    top, left = round(cy - side / 2), round(crop_size / 2 - side / 2)
    n = round(side)
    return max(top, 0), min(top + n, crop_size), max(left, 0), min(left + n, crop_size)


class MtlTrunk(nn.Module):
    """(N,3,S,S) float BGR 0-255 -> the net's named outputs, from its window of the crop."""

    def __init__(self, net: mtl.MTLNet, crop_size: int, crop_scale: float):
        super().__init__()
        self.net = net
        self.top, self.bottom, self.left, self.right = window_box(crop_size, crop_scale)

    def forward(self, x_bgr: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.from_nhwc(x_bgr.permute(0, 2, 3, 1))

    def from_nhwc(self, x_bgr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same from (N,S,S,3) float BGR: the window is cut and turned gray before anything is
        transposed or resized, so the graph moves one channel of the window instead of the whole crop
        (bilinear resizing and the gray weighting are both linear, so their order does not matter)."""
        window = x_bgr[:, self.top : self.bottom, self.left : self.right]
        wb, wg, wr = (w / (255.0 * mtl.STD) for w in mtl.GRAY_WEIGHTS)  # gray, /255, and /STD folded in
        gray = (window[..., 0] * wb + window[..., 1] * wg + window[..., 2] * wr)[:, None]
        size = (mtl.INPUT_SIZE, mtl.INPUT_SIZE)
        gray = F.interpolate(gray, size=size, mode="bilinear", align_corners=False, antialias=False)
        return self.net(gray - mtl.MEAN / mtl.STD)


class MtlHead(Head):
    """One task of the shared net: `from_trunk(trunk outputs) -> (output, features)`."""

    def __init__(self, name: str, trunk: MtlTrunk):
        super().__init__()
        self.name, self.trunk = name, trunk
        self.feature_dim = trunk.net.config["embed_dim"]
        columns, rest = fer_columns(mtl.EMOTIONS)
        self.contempt_column = mtl.EMOTIONS.index(rest[0])
        # buffers, not Python lists: indexing with a list makes a tensor from host data on every forward,
        # which a CUDA graph capture does not allow
        self.register_buffer("fer_columns", torch.tensor(columns), persistent=False)
        self.register_buffer("age_bins", torch.arange(mtl.AGE_BINS, dtype=torch.float32), persistent=False)

    @property
    def output_names(self) -> tuple[str, ...]:
        return ("emotion", "contempt") if self.name == "emotion" else (self.name,)

    def forward(self, x_bgr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.from_trunk(self.trunk(x_bgr))

    def from_trunk(self, out: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(main output, [contempt for emotion], features) of this head from the trunk's outputs."""
        if self.name == "emotion":
            logits = out["emotion_logits"]
            seven = torch.softmax(logits[:, self.fer_columns], dim=1)
            contempt = torch.softmax(logits, dim=1)[:, self.contempt_column]
            return seven, contempt, out["embedding"]
        if self.name == "gender":
            return torch.sigmoid(out["gender_logit"]), out["embedding"]
        return torch.softmax(out["age_logits"], dim=1) @ self.age_bins, out["embedding"]


@functools.cache
def _trunk(path: Path, crop_size: int, crop_scale: float) -> MtlTrunk:
    """One trunk per weights file and crop geometry, shared by every head built from it."""
    return MtlTrunk(load_weights(path), crop_size, crop_scale).eval()


def load_weights(path: Path) -> mtl.MTLNet:
    """The MTLNet saved in a release file ({"config", "state_dict"}); a file of another shape is one line."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        cfg = blob["config"]
        net = mtl.MTLNet(tuple(cfg["widths"]), tuple(cfg["depths"]), cfg["embed_dim"])
        net.load_state_dict(blob["state_dict"])
    except Exception as e:
        raise EmostreamError(f"{path}: not a multi-task net weights file ({type(e).__name__}: {e})") from None
    return net.eval()


def build_head(spec: HeadSpec, paths: list[Path], crop_size: int, crop_scale: float) -> MtlHead:
    """Head factory for quality "mtl" (see `engines.nets.heads`)."""
    if spec.name not in ("emotion", "gender", "age"):
        raise EmostreamError(f"the multi-task net has no head {spec.name!r}")
    return MtlHead(spec.name, _trunk(Path(paths[0]), crop_size, crop_scale)).eval()
