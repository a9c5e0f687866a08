"""The fused multi-task net: uint8 BGR crops in -> every head (own preprocessing) -> named outputs.

This module is the unit of compilation: `engines.convert.export` turns it into one ONNX graph, the torch
backend runs it directly. A head whose network is an ONNX file (`external` heads, e.g. HSEmotion)
only prepares its input here; then the module returns the raw pieces (each torch head's output and
features, each external head's input) and `engines.convert.compose` grafts the ONNX heads on and builds the
embedding in head order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from engines.convert.compose import FEATURES_SUFFIX, INPUT_SUFFIX
from engines.nets.heads import EMBEDDING
from engines.nets.preprocess import Head, scaled_gray


def is_external(head: nn.Module) -> bool:
    return bool(getattr(head, "external", False))


class FusedNet(nn.Module):
    """(N,S,S,3) uint8 BGR -> tuple of outputs in `output_names` order.

    Torch heads only: (head outputs..., embedding); a head may give several outputs (`output_names`), and
    heads sharing a `trunk` (the project's multi-task net) run it once and give the embedding once.
    With external heads: for each head in order, either (`<name>`, `<name>.features`) or `<name>.input`
    (see the module docstring).
    """

    def __init__(self, heads: Sequence[Head], crop_size: int):
        super().__init__()
        if not heads:
            raise ValueError("FusedNet needs at least one head")
        self.heads = nn.ModuleList(heads)
        self.crop_size = crop_size
        self.has_external = any(is_external(h) for h in heads)
        if not self.has_external:
            self.output_names: tuple[str, ...] = (*(n for h in heads for n in h.output_names), EMBEDDING)
        else:
            self.output_names = tuple(
                n
                for h in heads
                for n in ((h.name + INPUT_SUFFIX,) if is_external(h) else (h.name, h.name + FEATURES_SUFFIX))
            )

    def forward(self, crops_bgr: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # Cast first: converted once for every head, and the uint8 input feeds a Cast directly, which is
        # what TensorRT accepts for a UINT8 network input. A shared trunk that reads NHWC (`from_nhwc`)
        # cuts its window before any transpose; the NCHW copy is made only if some head needs it.
        x_nhwc = crops_bgr.to(torch.float32)
        all_nhwc = all(hasattr(getattr(h, "trunk", None), "from_nhwc") for h in self.heads)
        x = x_nhwc if all_nhwc else x_nhwc.permute(0, 3, 1, 2)
        gray = scaled_gray(x) if any(getattr(h, "uses_gray", False) for h in self.heads) else None
        trunks: dict[int, dict[str, torch.Tensor]] = {}  # shared trunks run once per batch
        results, features = [], []
        for head in self.heads:
            trunk = getattr(head, "trunk", None)
            if trunk is None:
                results.append(head(x, gray) if getattr(head, "uses_gray", False) else head(x))
                features.append(None if self.has_external else results[-1][-1])
                continue
            first = id(trunk) not in trunks
            if first:
                trunks[id(trunk)] = trunk.from_nhwc(x_nhwc) if hasattr(trunk, "from_nhwc") else trunk(x)
            results.append(head.from_trunk(trunks[id(trunk)]))
            features.append(results[-1][-1] if first else None)  # one embedding per shared trunk
        if self.has_external:
            return tuple(t for r in results for t in ((r,) if isinstance(r, torch.Tensor) else r))
        outputs = [t for r in results for t in r[:-1]]
        return (*outputs, torch.cat([f for f in features if f is not None], dim=1))

    @torch.no_grad()
    def run_named(self, crops_bgr: torch.Tensor) -> dict[str, torch.Tensor]:
        """The outputs by name (convenience for the torch path and tests)."""
        return dict(zip(self.output_names, self(crops_bgr), strict=True))
