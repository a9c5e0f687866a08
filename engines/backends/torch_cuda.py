"""torch on CUDA: runs the fused module itself (no export), for GPUs without TensorRT.

fp16 runs under autocast (convolutions and matmuls in half, softmax in fp32, outputs returned as fp32);
fp32 on CUDA runs with TF32 off (`exact_fp32`), so it agrees with the CPU backends to 1e-3: torch's TF32
flags are process-wide, so they are turned off once when such a backend is made (a job starts) and
restored by `close()` (the job's end), never flipped per call (another thread's work would see them
change under it); on the CPU they are not touched;
the module is channels-last (the NHWC uint8 input, permuted, already is). With `cuda_graphs=True` each
batch is padded up to a fixed bucket (1, 2, 4, ... 128 faces), whose captured graph is replayed, and
the padding rows are sliced off. `device="cpu"` runs the same code on the CPU (tests, no GPU needed).

`run_frames` cuts the crops on the device (engines.backends.device_crops), so each frame is uploaded once.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from engines import backends
from engines.backends import chunk_bounds
from engines.backends.base import PRECISIONS, NetSource
from engines.backends.device_crops import crop_frames
from engines.errors import BackendUnavailable, EmostreamError

BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
"""Batch sizes a CUDA graph is captured for; a bigger batch runs in chunks of the largest."""


def bucket_for(n: int, buckets: Sequence[int] = BUCKETS) -> int:
    """The smallest bucket holding `n` faces (n >= 1 and at most the largest bucket)."""
    for b in buckets:
        if b >= n >= 1:
            return b
    raise ValueError(f"a batch of {n} faces fits no bucket in {tuple(buckets)}")


def tf32_off_settings() -> list[tuple[Any, str, Any]]:
    """(object, attribute, value) that turn TF32 off for cuBLAS matmuls and cuDNN convolutions:
    the `fp32_precision` API where torch has it (2.9+; reading the legacy flags after the new API
    was used raises), else the legacy `allow_tf32` flags."""
    b = torch.backends
    if hasattr(b.cuda.matmul, "fp32_precision") and hasattr(b.cudnn, "conv"):
        return [(b.cuda.matmul, "fp32_precision", "ieee"), (b.cudnn.conv, "fp32_precision", "ieee")]
    return [(b.cuda.matmul, "allow_tf32", False), (b.cudnn, "allow_tf32", False)]


@contextlib.contextmanager
def exact_fp32(enabled: bool = True) -> Iterator[None]:
    """TF32 off inside the block, the previous settings restored after.

    torch lets cuDNN convolutions run in TF32 by default (10-bit mantissas), so "fp32" would not
    be fp32 (nor within 1e-3 of onnxruntime). The settings are read when a kernel is picked, also
    while a CUDA graph is captured.
    """
    settings = tf32_off_settings() if enabled else []
    saved = [getattr(obj, attr) for obj, attr, _ in settings]
    for obj, attr, value in settings:
        setattr(obj, attr, value)
    try:
        yield
    finally:
        for (obj, attr, _), value in zip(settings, saved, strict=True):
            setattr(obj, attr, value)


def needs_exact_fp32(device: torch.device, precision: str) -> bool:
    """TF32 only exists on CUDA: fp32 there needs it off; the CPU and fp16 leave the flags alone."""
    return device.type == "cuda" and precision == "fp32"


class _GraphRunner:
    """One captured CUDA graph per bucket, created on first use; replayed on a padded static input.

    The graphs share one memory pool: they are replayed one at a time on one stream and each
    replay's outputs are copied out before the next, so one graph's scratch may reuse another's.
    """

    def __init__(self, forward: Callable[[torch.Tensor], tuple[torch.Tensor, ...]], tail: tuple[int, ...]):
        self.forward, self.tail = forward, tail
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, ...]]] = {}
        self.pool: tuple[int, int] | None = None

    def _capture(self, bucket: int):
        static_in = torch.zeros((bucket, *self.tail), dtype=torch.uint8, device="cuda")
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the capture (cuDNN picks its algorithms here)
                self.forward(static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(graph, pool=self.pool):
            static_out = self.forward(static_in)
        return graph, static_in, static_out

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = []
        for lo, hi in chunk_bounds(len(x), BUCKETS[-1]):
            bucket = bucket_for(hi - lo)
            if bucket not in self.graphs:
                self.graphs[bucket] = self._capture(bucket)
            graph, static_in, static_out = self.graphs[bucket]
            static_in[: hi - lo].copy_(x[lo:hi])  # rows past hi - lo keep old faces: sliced off below
            graph.replay()
            parts.append(tuple(o[: hi - lo].clone() for o in static_out))
        return tuple(torch.cat(cols) for cols in zip(*parts, strict=True))


class TorchCudaBackend:
    """`Backend` running `net_source.torch_module()` on a torch device (CUDA unless told otherwise)."""

    name = "torch"

    def __init__(
        self,
        net_source: NetSource,
        device: str = "cuda",
        precision: str | None = None,
        channels_last: bool = True,
        cuda_graphs: bool = False,
    ):
        self.device = torch.device(device)
        if self.device.type == "cuda":
            reason = backends.unavailable_reason("torch")
            if reason:
                raise BackendUnavailable(f"backend 'torch' is not available: {reason}")
        on_gpu = self.device.type == "cuda"
        self.precision = precision or (backends.DEFAULT_PRECISION["torch"] if on_gpu else "fp32")
        if self.precision not in PRECISIONS:
            raise EmostreamError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        source_module = net_source.torch_module()
        if getattr(source_module, "has_external", False):
            raise BackendUnavailable(
                "backend 'torch' cannot run this head set: it has an ONNX-only head (e.g. quality "
                "'affectnet'); use tensorrt or onnxruntime"
            )
        module = copy.deepcopy(source_module).eval().to(self.device)  # the source stays on CPU
        self.module = module.to(memory_format=torch.channels_last) if channels_last else module
        self.output_names: tuple[str, ...] = tuple(self.module.output_names)
        self.crop_size: int = self.module.crop_size
        use_graphs = cuda_graphs and self.device.type == "cuda"
        tail = (self.crop_size, self.crop_size, 3)
        self._graphs = _GraphRunner(self._forward, tail) if use_graphs else None
        self._scope = contextlib.ExitStack()  # TF32 off for this backend's life (CUDA fp32 only)
        if needs_exact_fp32(self.device, self.precision):
            self._scope.enter_context(exact_fp32())
        self._warm_up()

    def _warm_up(self) -> None:
        """One forward of a blank crop while the backend is built, so the device's lazy start (CUDA
        kernel images, cuDNN and cuBLAS handles) lands in setup rather than on the first frame with a
        face: in the H200 runs the infer stage's totals (2.1 s over 27 calls, 2.6 s over 118) looked like
        such a one-time cost on top of the bench's warm ~3.5 ms a call."""
        blank = torch.zeros((1, self.crop_size, self.crop_size, 3), dtype=torch.uint8, device=self.device)
        self._forward(blank)
        self.synchronize()

    def close(self) -> None:
        """Give back what the backend changed process-wide (the TF32 settings); safe to call twice."""
        self._scope.close()

    def _forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with (
            torch.no_grad(),
            torch.autocast(
                self.device.type,
                dtype=torch.float16,
                enabled=self.precision == "fp16",
                cache_enabled=False,  # cached casts would outlive a CUDA graph capture
            ),
        ):
            return tuple(o.float() for o in self.module(crops))

    def run_device(self, crops: torch.Tensor) -> dict[str, np.ndarray]:
        """Named outputs (host numpy, fp32) for (N,S,S,3) uint8 crops already on this device."""
        if not len(crops):
            raise ValueError("run_device needs at least one crop")
        outputs = self._graphs(crops) if self._graphs is not None else self._forward(crops)
        return {name: o.cpu().numpy() for name, o in zip(self.output_names, outputs, strict=True)}

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Named outputs for a host (N,S,S,3) uint8 batch (one upload for the whole batch)."""
        x = torch.from_numpy(np.ascontiguousarray(crops_bgr, np.uint8)).to(self.device)
        return self.run_device(x)

    def crops_on_device(
        self, images_bgr: Sequence[np.ndarray], matrices_per_frame: Sequence[np.ndarray], size: int
    ) -> torch.Tensor:
        """Every face crop of every frame, cut on this device (each frame uploaded once)."""
        return crop_frames(images_bgr, matrices_per_frame, size, self.device)

    def run_frames(
        self, images_bgr: Sequence[np.ndarray], matrices_per_frame: Sequence[np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        """Named outputs for the faces of several frames, in frame then row order."""
        return self.run_device(self.crops_on_device(images_bgr, matrices_per_frame, size))

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
