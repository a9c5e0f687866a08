"""TensorRT: runs the engine compiled from the fused ONNX graph (engines.trt_engine builds and caches it).

Named tensors (TensorRT 10): the input "crops_bgr" and one output per head plus "embedding", read from
the engine. Device buffers are allocated once and grown only when a larger batch comes (`BufferPlan`:
next power of two, capped at the profile's max batch, never shrunk); a batch above the max runs in
chunks. Device memory is torch CUDA tensors when torch has CUDA (one CUDA context, shared with the
device crops), else pycuda on the device's primary context (the one TensorRT's runtime uses).
`execute_async_v3` runs on the memory's CUDA stream.

`tensorrt`, `pycuda` and CUDA torch are imported only when the backend is built, so `BufferPlan` and
`TrtRunner` (fed fake engines in the tests) work without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engines import backends
from engines.backends import chunk_bounds
from engines.backends.base import NetSource
from engines.errors import BackendUnavailable, EmostreamError


@dataclass
class BufferPlan:
    """How many faces the device buffers hold: grown on demand to the next power of two <= max_batch."""

    max_batch: int
    capacity: int = 0

    def target(self, n: int) -> int:
        """The capacity a batch of `n` faces needs (the current one when it already fits)."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch of {n} faces is outside 1..{self.max_batch}; split it first")
        if n <= self.capacity:
            return self.capacity
        return min(1 << (n - 1).bit_length(), self.max_batch)

    def reserve(self, n: int) -> bool:
        """Make room for `n` faces; True when the buffers must be (re)allocated."""
        target = self.target(n)
        grew, self.capacity = target != self.capacity, target
        return grew


@dataclass(frozen=True)
class TensorInfo:
    """One I/O tensor of an engine: name, direction, numpy dtype, shape after the batch axis."""

    name: str
    is_input: bool
    dtype: np.dtype
    tail: tuple[int, ...]


class DeviceMemory(Protocol):
    """Device buffers and a CUDA stream (torch or pycuda)."""

    kind: str
    stream_handle: int

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any: ...
    def address(self, buffer: Any) -> int: ...
    def to_device(self, buffer: Any, host: np.ndarray) -> None: ...
    def to_host(self, buffer: Any, n: int) -> np.ndarray: ...


class TorchMemory:
    """Buffers are torch CUDA tensors; copies and execution are queued on one torch stream."""

    kind = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = self.stream.cuda_stream

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        torch_dtype = self.torch.from_numpy(np.empty(0, dtype)).dtype
        return self.torch.empty(shape, dtype=torch_dtype, device="cuda")

    def address(self, buffer: Any) -> int:
        return buffer.data_ptr()

    def to_device(self, buffer: Any, host: np.ndarray) -> None:
        with self.torch.cuda.stream(self.stream):
            buffer[: len(host)].copy_(self.torch.from_numpy(np.ascontiguousarray(host)))

    def to_host(self, buffer: Any, n: int) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            return buffer[:n].cpu().numpy()  # a blocking copy on this stream: waits for the engine

    def wait_for_torch(self) -> None:
        """Order this stream after work torch queued on its current stream (the device crops)."""
        self.stream.wait_stream(self.torch.cuda.current_stream())


@dataclass
class _PycudaBuffer:
    device: Any
    host: np.ndarray  # page-locked staging of the same shape


class PycudaMemory:
    """Buffers are pycuda allocations with page-locked host staging, on the primary context."""

    kind = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(0).retain_primary_context()
        self.context.push()
        self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> _PycudaBuffer:
        host = self.cuda.pagelocked_empty(shape, dtype)
        return _PycudaBuffer(self.cuda.mem_alloc(max(host.nbytes, 1)), host)

    def address(self, buffer: _PycudaBuffer) -> int:
        return int(buffer.device)

    def to_device(self, buffer: _PycudaBuffer, host: np.ndarray) -> None:
        staged = buffer.host[: len(host)]
        np.copyto(staged, host)
        self.cuda.memcpy_htod_async(buffer.device, staged, self.stream)

    def to_host(self, buffer: _PycudaBuffer, n: int) -> np.ndarray:
        self.cuda.memcpy_dtoh_async(buffer.host[:n], buffer.device, self.stream)
        self.stream.synchronize()
        return buffer.host[:n].copy()


def make_memory() -> DeviceMemory:
    """TorchMemory when torch has CUDA (no second context), else PycudaMemory."""
    try:
        import torch

        if torch.cuda.is_available():
            return TorchMemory()
    except ImportError:
        pass
    try:
        return PycudaMemory()
    except ImportError:
        raise BackendUnavailable(
            "backend 'tensorrt' needs device memory from a CUDA build of torch or from pycuda; "
            f"neither is installed: {backends.TENSORRT_INSTALL_HINT}"
        ) from None


class TrtRunner:
    """Executes one engine context on growing buffers: host or device crops in, host arrays out."""

    def __init__(self, context: Any, tensors: Sequence[TensorInfo], memory: DeviceMemory, max_batch: int):
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise EmostreamError(f"a face engine has one input tensor, this one has {len(inputs)}")
        self.context, self.memory, self.input = context, memory, inputs[0]
        self.outputs = [t for t in tensors if not t.is_input]
        self.plan = BufferPlan(max_batch)
        self.buffers: dict[str, Any] = {}

    def _reserve(self, n: int) -> None:
        if self.plan.reserve(n):
            cap = self.plan.capacity
            self.buffers = {
                t.name: self.memory.empty((cap, *t.tail), t.dtype) for t in (self.input, *self.outputs)
            }

    def _execute(self, n: int, input_address: int) -> dict[str, np.ndarray]:
        self.context.set_input_shape(self.input.name, (n, *self.input.tail))
        self.context.set_tensor_address(self.input.name, input_address)
        for t in self.outputs:
            self.context.set_tensor_address(t.name, self.memory.address(self.buffers[t.name]))
        if not self.context.execute_async_v3(self.memory.stream_handle):
            raise EmostreamError(f"TensorRT failed to execute a batch of {n} faces")
        return {t.name: self.memory.to_host(self.buffers[t.name], n) for t in self.outputs}

    def _collect(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {t.name: np.concatenate([p[t.name] for p in parts]) for t in self.outputs}

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Host (N,S,S,3) uint8 crops -> named host outputs, in chunks of at most max_batch."""
        parts = []
        for lo, hi in chunk_bounds(len(crops_bgr), self.plan.max_batch):
            self._reserve(hi - lo)
            self.memory.to_device(self.buffers[self.input.name], crops_bgr[lo:hi])
            parts.append(self._execute(hi - lo, self.memory.address(self.buffers[self.input.name])))
        return self._collect(parts)

    def run_device(self, crops: Any) -> dict[str, np.ndarray]:
        """Crops already on the device (a torch CUDA tensor): the engine reads them where they are."""
        self.memory.wait_for_torch()
        parts = []
        for lo, hi in chunk_bounds(len(crops), self.plan.max_batch):
            self._reserve(hi - lo)
            chunk = crops[lo:hi].contiguous()
            parts.append(self._execute(hi - lo, chunk.data_ptr()))
        return self._collect(parts)


def io_tensors(trt: Any, engine: Any) -> list[TensorInfo]:
    """The engine's named I/O tensors (TensorRT 10 name-based API)."""
    infos = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        infos.append(
            TensorInfo(
                name=name,
                is_input=engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                dtype=np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                tail=tuple(engine.get_tensor_shape(name))[1:],
            )
        )
    return infos


def _cache_root(net_source: NetSource, cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    store = getattr(net_source, "store", None)
    derived = store.derived_dir if store is not None else Path(net_source.onnx_path).parent.parent
    return Path(derived) / "trt"


class TensorRTBackend:
    """`Backend` over a cached TensorRT engine of the fused net."""

    name = "tensorrt"

    def __init__(
        self,
        net_source: NetSource,
        precision: str = "fp16",
        max_batch: int = 128,
        opt_batch: int = 32,
        workspace_mb: int = 1024,
        cache_dir: str | Path | None = None,
    ):
        from engines.trt_engine import BuildOptions, ensure_engine

        reason = backends.unavailable_reason("tensorrt")
        if reason:
            raise BackendUnavailable(f"backend 'tensorrt' is not available: {reason}")
        options = BuildOptions(precision, max_batch, opt_batch, workspace_mb)  # checked before any work
        try:
            import tensorrt as trt
        except ImportError:
            raise BackendUnavailable(
                "backend 'tensorrt' is not available: the tensorrt module is not installed; "
                f"{backends.TENSORRT_INSTALL_HINT}"
            ) from None
        self.memory = make_memory()  # before the engine: pycuda must make the primary context current
        cached, self._runtime = ensure_engine(
            net_source.onnx_path, _cache_root(net_source, cache_dir), options
        )
        self.engine, self.engine_path, self.engine_key = cached.engine, cached.path, cached.key
        self.engine_built = cached.built
        self.runner = TrtRunner(
            self.engine.create_execution_context(), io_tensors(trt, self.engine), self.memory, max_batch
        )
        if self.memory.kind == "torch":  # device crops need torch on the GPU
            self.run_device = self.runner.run_device
            self.crops_on_device = self._crops_on_device
            self.run_frames = self._run_frames

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Named outputs for a host (N,S,S,3) uint8 batch."""
        return self.runner.run(np.ascontiguousarray(crops_bgr, np.uint8))

    def _crops_on_device(
        self, images_bgr: Sequence[np.ndarray], matrices_per_frame: Sequence[np.ndarray], size: int
    ) -> Any:
        from engines.device_crops import crop_frames

        return crop_frames(images_bgr, matrices_per_frame, size, "cuda")

    def _run_frames(
        self, images_bgr: Sequence[np.ndarray], matrices_per_frame: Sequence[np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        return self.runner.run_device(self._crops_on_device(images_bgr, matrices_per_frame, size))

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        if self.memory.kind == "torch":
            self.memory.torch.cuda.synchronize()
