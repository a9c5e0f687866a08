"""Device memory for the TensorRT backend: torch CUDA tensors, or pycuda on the primary context.

`TorchMemory` is used when torch has CUDA (one CUDA context, shared with the device crops);
`PycudaMemory` otherwise. A pycuda context is current per thread and must be popped as often as it
is pushed (pycuda aborts the process at exit when its context stack is not empty), so
`PycudaMemory.active()` pushes the primary context for one block of work and pops it after: the
backend wraps its construction and every batch in it, whatever thread runs the batch (live mode
infers on a worker thread). `TorchMemory.active()` does nothing: torch and TensorRT's runtime
both use the primary context, which the CUDA runtime makes current on each thread by itself.

`torch` and `pycuda` are imported when a memory is made, never at import.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from engines import backends
from engines.errors import BackendUnavailable


class DeviceMemory(Protocol):
    """Device buffers and a CUDA stream (torch or pycuda)."""

    kind: str
    stream_handle: int

    def active(self) -> AbstractContextManager[None]: ...
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any: ...
    def address(self, buffer: Any) -> int: ...
    def to_device(self, buffer: Any, host: np.ndarray) -> None: ...
    def to_host(self, buffer: Any, n: int) -> np.ndarray: ...
    def synchronize(self) -> None: ...


class TorchMemory:
    """Buffers are torch CUDA tensors; copies and execution are queued on one torch stream."""

    kind = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = self.stream.cuda_stream

    def active(self) -> AbstractContextManager[None]:
        """Nothing to make current: the CUDA runtime binds the primary context on each thread."""
        return contextlib.nullcontext()

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

    def synchronize(self) -> None:
        self.torch.cuda.synchronize()


@dataclass
class _PycudaBuffer:
    device: Any
    host: np.ndarray  # page-locked staging of the same shape


class PycudaMemory:
    """Buffers are pycuda allocations with page-locked host staging, on device 0's primary context."""

    kind = "pycuda"

    def __init__(self, cuda: Any) -> None:
        """`cuda` is `pycuda.driver`; raises BackendUnavailable when the driver cannot start."""
        try:
            cuda.init()
            self.context = cuda.Device(0).retain_primary_context()
        except Exception as exc:  # no driver, no device, a broken install: pycuda raises its own types
            raise BackendUnavailable(
                f"backend 'tensorrt' could not start CUDA through pycuda ({_first_line(exc)})"
            ) from None
        self.cuda = cuda
        with self.active():
            self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The primary context current on this thread for the block, popped after (even on errors)."""
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

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

    def synchronize(self) -> None:
        with self.active():
            self.stream.synchronize()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def make_memory() -> DeviceMemory:
    """TorchMemory when torch has CUDA (no second context), else PycudaMemory."""
    try:
        import torch

        if torch.cuda.is_available():
            return TorchMemory()
    except ImportError:
        pass
    try:
        import pycuda.driver as cuda
    except ModuleNotFoundError:
        raise BackendUnavailable(
            "backend 'tensorrt' needs device memory from a CUDA build of torch or from pycuda; "
            f"neither is installed: {backends.TENSORRT_INSTALL_HINT}"
        ) from None
    except Exception as exc:  # pycuda present but libcuda does not load (ImportError, OSError)
        raise BackendUnavailable(f"backend 'tensorrt' could not load pycuda ({_first_line(exc)})") from None
    return PycudaMemory(cuda)
