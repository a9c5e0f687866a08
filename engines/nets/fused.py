"""The fused multi-task net: uint8 BGR crops in -> every head (own preprocessing) -> named outputs.

This module is the unit of compilation: `engines.export` turns it into one ONNX graph, the torch
backend runs it directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from engines.heads import EMBEDDING
from engines.nets.preprocess import Head


class FusedNet(nn.Module):
    """(N,S,S,3) uint8 BGR -> tuple of outputs in `output_names` order (heads..., embedding)."""

    def __init__(self, heads: Sequence[Head], crop_size: int):
        super().__init__()
        if not heads:
            raise ValueError("FusedNet needs at least one head")
        self.heads = nn.ModuleList(heads)
        self.crop_size = crop_size
        self.output_names: tuple[str, ...] = (*(h.name for h in heads), EMBEDDING)

    def forward(self, crops_bgr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = crops_bgr.permute(0, 3, 1, 2).to(torch.float32)  # converted once, shared by every head
        outputs, features = zip(*(head(x) for head in self.heads), strict=True)
        return (*outputs, torch.cat(features, dim=1))

    @torch.no_grad()
    def run_named(self, crops_bgr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs by name (convenience for the torch path and tests)."""
        return dict(zip(self.output_names, self(crops_bgr), strict=True))
