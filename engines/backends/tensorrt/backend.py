"""TensorRT: runs the engine compiled from the fused ONNX graph (`tensorrt.engine` builds and caches it).

Named tensors (TensorRT 10): the input "crops_bgr" and one output per head plus "embedding", read from
the engine. Device buffers are allocated once and grown only when a larger batch comes (`BufferPlan`:
next power of two, capped at the profile's max batch, never shrunk); a batch above the max runs in
chunks. Device memory (engines.backends.tensorrt.memory) is torch CUDA tensors when torch has CUDA (one
CUDA context, shared with the device crops), else pycuda on the device's primary context (the one
TensorRT's runtime uses), made current around the build and each batch. `execute_async_v3` runs on
the memory's CUDA stream; every `set_input_shape` / `set_tensor_address` is checked.

`tensorrt`, `pycuda` and CUDA torch are imported only when the backend is built, so `BufferPlan` and
`TrtRunner` (fed fake engines in the tests) work without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines import backends
from engines.backends import chunk_bounds
from engines.backends.base import NetSource
from engines.backends.tensorrt.memory import DeviceMemory, make_memory
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


ALIGNMENT_BYTES = 256
"""TensorRT wants every address given to `set_tensor_address` aligned to 256 bytes."""


def aligned_chunk(crops: Any, lo: int, hi: int) -> Any:
    """Rows [lo, hi) of a torch tensor, contiguous and 256-byte aligned (copied when they are not)."""
    chunk = crops[lo:hi].contiguous()
    return chunk.clone() if chunk.data_ptr() % ALIGNMENT_BYTES else chunk


def _refused(ok: bool, what: str, name: str, n: int) -> None:
    if not ok:
        raise EmostreamError(f"TensorRT refused the {what} of tensor {name!r} for a batch of {n} faces")


class TrtRunner:
    """Executes one engine context on growing buffers: host or device crops in, host arrays out.

    Every batch runs inside `memory.active()` (pycuda: the context current on the calling thread).
    """

    def __init__(self, context: Any, tensors: Sequence[TensorInfo], memory: DeviceMemory, max_batch: int):
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise EmostreamError(f"a face engine has one input tensor, this one has {len(inputs)}")
        self.context, self.memory, self.input = context, memory, inputs[0]
        self.outputs = [t for t in tensors if not t.is_input]
        self.plan = BufferPlan(max_batch)
        self.buffers: dict[str, Any] = {}

    def _check(self, shape: Sequence[int], dtype: str) -> None:
        tail, want = tuple(self.input.tail), self.input.dtype.name
        if dtype != want or len(shape) != 1 + len(tail) or tuple(shape[1:]) != tail:
            raise ValueError(
                f"the engine takes (N, {', '.join(map(str, tail))}) {want} crops, got {tuple(shape)} {dtype}"
            )

    def _reserve(self, n: int, host_input: bool) -> None:
        """Output buffers for `n` faces, and the input buffer only when the crops come from the host."""
        if self.plan.reserve(n):
            self.buffers = {t.name: self._empty(t) for t in self.outputs}
        if host_input and self.input.name not in self.buffers:
            self.buffers[self.input.name] = self._empty(self.input)

    def _empty(self, tensor: TensorInfo) -> Any:
        return self.memory.empty((self.plan.capacity, *tensor.tail), tensor.dtype)

    def _execute(self, n: int, input_address: int) -> dict[str, np.ndarray]:
        name, context = self.input.name, self.context
        _refused(context.set_input_shape(name, (n, *self.input.tail)), "shape", name, n)
        _refused(context.set_tensor_address(name, input_address), "address", name, n)
        for t in self.outputs:
            address = self.memory.address(self.buffers[t.name])
            _refused(context.set_tensor_address(t.name, address), "address", t.name, n)
        if not context.execute_async_v3(self.memory.stream_handle):
            raise EmostreamError(f"TensorRT failed to execute a batch of {n} faces")
        return {t.name: self.memory.to_host(self.buffers[t.name], n) for t in self.outputs}

    def _collect(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if not parts:
            return {t.name: np.empty((0, *t.tail), t.dtype) for t in self.outputs}
        return {t.name: np.concatenate([p[t.name] for p in parts]) for t in self.outputs}

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]:
        """Host (N,S,S,3) uint8 crops -> named host outputs, in chunks of at most max_batch."""
        self._check(crops_bgr.shape, crops_bgr.dtype.name)
        parts = []
        with self.memory.active():
            for lo, hi in chunk_bounds(len(crops_bgr), self.plan.max_batch):
                self._reserve(hi - lo, host_input=True)
                buffer = self.buffers[self.input.name]
                self.memory.to_device(buffer, crops_bgr[lo:hi])
                parts.append(self._execute(hi - lo, self.memory.address(buffer)))
        return self._collect(parts)

    def run_device(self, crops: Any) -> dict[str, np.ndarray]:
        """Crops already on the device (a torch CUDA tensor): the engine reads them where they are.

        The chunks are made contiguous and aligned first, so the engine's stream waits for those
        copies too (they are queued on torch's current stream, like the crops themselves).
        """
        self._check(tuple(crops.shape), str(crops.dtype).removeprefix("torch."))
        bounds = chunk_bounds(len(crops), self.plan.max_batch)
        chunks = [aligned_chunk(crops, lo, hi) for lo, hi in bounds]
        parts = []
        with self.memory.active():
            self.memory.wait_for_torch()
            for chunk in chunks:
                self._reserve(len(chunk), host_input=False)
                parts.append(self._execute(len(chunk), self.memory.address(chunk)))
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


def _load_engine(onnx_path: Path, cache_root: Path, options: Any) -> tuple[Any, Any]:
    """engines.backends.tensorrt.engine.ensure_engine, with whatever TensorRT raises turned into a one-line
    EngineBuildError (a BackendUnavailable: `auto` then goes on to the next backend)."""
    from engines.backends.tensorrt import engine as trt_engine

    try:
        return trt_engine.ensure_engine(onnx_path, cache_root, options)
    except EmostreamError:
        raise
    except Exception as exc:
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise trt_engine.EngineBuildError(
            f"{onnx_path}: TensorRT could not build or load an engine ({type(exc).__name__}: {detail})"
        ) from exc


def _execution_context(cached: Any) -> Any:
    from engines.backends.tensorrt.engine import EngineBuildError

    context = cached.engine.create_execution_context()
    if context is None:
        raise EngineBuildError(f"{cached.path}: TensorRT could not create an execution context (GPU memory?)")
    return context


class TensorRTBackend:
    """`Backend` over a cached TensorRT engine of the fused net."""

    name = "tensorrt"

    def __init__(
        self,
        net_source: NetSource,
        precision: str = backends.DEFAULT_PRECISION["tensorrt"],
        max_batch: int = 128,
        opt_batch: int = 32,
        workspace_mb: int = 1024,
        cache_dir: str | Path | None = None,
    ):
        from engines.backends.tensorrt.engine import BuildOptions

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
        self.memory = make_memory()
        with self.memory.active():  # pycuda: the primary context is current while TensorRT works
            cached, self._runtime = _load_engine(
                net_source.onnx_path, _cache_root(net_source, cache_dir), options
            )
            self.engine, self.engine_path, self.engine_key = cached.engine, cached.path, cached.key
            self.runner = TrtRunner(
                _execution_context(cached), io_tensors(trt, self.engine), self.memory, max_batch
            )
        self.engine_built, self.precision = cached.built, cached.key.precision
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
        from engines.backends.device_crops import crop_frames

        return crop_frames(images_bgr, matrices_per_frame, size, "cuda")

    def _run_frames(
        self, images_bgr: Sequence[np.ndarray], matrices_per_frame: Sequence[np.ndarray], size: int
    ) -> dict[str, np.ndarray]:
        return self.runner.run_device(self._crops_on_device(images_bgr, matrices_per_frame, size))

    def synchronize(self) -> None:
        """Wait for queued device work (for timing)."""
        self.memory.synchronize()
