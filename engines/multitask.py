"""The per-face inference engine the pipeline uses: `MultiTaskNet(config).infer(crops_bgr)`.

`NetConfig` says which heads run at which quality on which crops; `MultiTaskNet` resolves the
heads' models in the store, gets the fused graph (exported once, then cached), and runs it through a
backend. `FusedNet` (the torch module) is importable from here but loads torch only when asked for.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.backends import Backend, create_backend
from engines.convert import export
from engines.errors import EmostreamError
from engines.nets.heads import (
    DEFAULT_HEADS,
    DEFAULT_QUALITY,
    EMBEDDING,
    QUALITIES,
    HeadSpec,
    build_head,
    embedding_dim,
    head_spec,
)
from engines.store.store import ModelStore


@dataclass(frozen=True)
class NetConfig:
    """Heads to run, quality mode, and the aligned crop they read (S×S px, face square = S/crop_scale)."""

    heads: tuple[str, ...] = DEFAULT_HEADS
    quality: str = DEFAULT_QUALITY
    crop_size: int = 128
    crop_scale: float = 2.0

    def __post_init__(self) -> None:
        heads = (self.heads,) if isinstance(self.heads, str) else tuple(self.heads)
        object.__setattr__(self, "heads", heads)  # a list or a single name is accepted, stored as a tuple
        if not self.heads or len(set(self.heads)) != len(self.heads):
            raise EmostreamError(f"net heads must be a non-empty list without repeats, got {self.heads!r}")
        if self.quality not in QUALITIES:
            raise EmostreamError(f"unknown quality {self.quality!r}; valid: {', '.join(QUALITIES)}")
        if self.crop_size < 16 or self.crop_scale < 1.0:
            raise EmostreamError(
                f"crop_size must be >= 16 and crop_scale >= 1, got {self.crop_size}, {self.crop_scale}"
            )


class MultiTaskNet:
    """Crops in, per-head arrays out: `infer((N,S,S,3) uint8 BGR) -> {"emotion": (N,7), ...}`."""

    def __init__(
        self,
        config: NetConfig | None = None,
        store: ModelStore | None = None,
        backend: str = "onnxruntime",
        **backend_options: Any,
    ):
        self.config = config or NetConfig()
        self.store = store or ModelStore()
        self.specs: tuple[HeadSpec, ...] = tuple(head_spec(h, self.config.quality) for h in self.config.heads)
        self._module: Any = None
        self._onnx_path: Path | None = None
        self.backend: Backend = create_backend(backend, self, **backend_options)
        self.backend_name = self.backend.name

    @property
    def crop_size(self) -> int:
        return self.config.crop_size

    @property
    def crop_scale(self) -> float:
        return self.config.crop_scale

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every head's outputs (main one first, e.g. emotion, contempt), then the embedding."""
        return tuple(self.output_tails)

    @property
    def output_tails(self) -> dict[str, tuple[int, ...]]:
        """Per-face shape of each output (what follows the batch axis), in output order."""
        tails = {name: tail for s in self.specs for name, tail in s.outputs}
        return {**tails, EMBEDDING: (embedding_dim(self.specs),)}

    @property
    def models(self) -> list[tuple[str, str]]:
        """(registry name, pinned sha256) of every model file the net is made of, in head order."""
        names = dict.fromkeys(m for s in self.specs for m in s.models)
        return [(m, self.store.sha256(m)) for m in names]

    @property
    def onnx_path(self) -> Path:
        """The fused ONNX graph in the store's cache, exported on first use (needs torch only then).

        Every source model is verified against its pinned sha256 first, also when the graph is cached
        (summary.json names those hashes), and the cached graph against the sha256 recorded when it was
        exported."""
        if self._onnx_path is None:
            fields = {
                "models": self.models,
                "heads": list(self.config.heads),
                "specs": [asdict(s) for s in self.specs],
                "quality": self.config.quality,
                "crop_size": self.crop_size,
                "crop_scale": self.crop_scale,
            }
            for name, _ in self.models:  # the sources are checked even when the derived graph is cached
                self.store.path(name)
            path = export.cached_onnx_path(self.store.derived_dir, fields)
            self._onnx_path = export.ensure_onnx(
                path, self.torch_module, self._example, finish=self._graft, sha256=self.store.file_sha256
            )
        return self._onnx_path

    def torch_module(self) -> Any:
        """The `FusedNet` (eval mode), built from the store's verified model files on first use.

        With an ONNX-only head (quality "affectnet") the module prepares that head's input but cannot
        run it: only the exported graph gives every output.
        """
        if self._module is None:
            from engines.nets.fused import FusedNet

            heads = [build_head(s, self.store, self.crop_size, self.crop_scale) for s in self.specs]
            self._module = FusedNet(heads, self.crop_size).eval()
        return self._module

    def infer(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Named outputs, one row per crop; an empty batch gives empty arrays without running the net."""
        s = self.crop_size
        if crops_bgr.dtype != np.uint8 or crops_bgr.ndim != 4 or crops_bgr.shape[1:] != (s, s, 3):
            raise ValueError(
                f"crops must be (N,{s},{s},3) uint8 BGR, got {crops_bgr.shape} {crops_bgr.dtype}"
            )
        if len(crops_bgr) == 0:
            return {name: np.zeros((0, *tail), np.float32) for name, tail in self.output_tails.items()}
        return self.backend.run(crops_bgr)

    def close(self) -> None:
        """Close the backend where it holds something process-wide (torch's TF32 settings on CUDA)."""
        close = getattr(self.backend, "close", None)
        if close is not None:
            close()

    def _graft(self, path: Path) -> None:
        """Rewrite the torch export at `path` into the final graph if some heads are ONNX-only."""
        module = self.torch_module()
        if not module.has_external:
            return
        import onnx

        from engines.convert.compose import compose
        from engines.nets.fused import is_external

        externals = [h.graft for h in module.heads if is_external(h)]
        tails = self.output_tails
        fused = compose(path, externals, self.config.heads, list(tails.items()), EMBEDDING, export.BATCH_AXIS)
        onnx.save(fused, str(path))

    def _example(self) -> Any:
        import torch

        return torch.zeros((2, self.crop_size, self.crop_size, 3), dtype=torch.uint8)


def __getattr__(name: str) -> Any:
    """`FusedNet` lives in engines.nets.fused; imported on demand so importing this module skips torch."""
    if name == "FusedNet":
        from engines.nets.fused import FusedNet

        return FusedNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
