"""Fakes shared by the TensorRT engine, backend and device-memory tests.

TensorRT is not installable on the development machines: the runner takes an engine context and
device memory, so these small fakes stand in for them (and KEY for a real engine key).
"""

from __future__ import annotations

import contextlib
import importlib.util

import numpy as np

from engines.backends.tensorrt.backend import TensorInfo
from engines.backends.tensorrt.engine import EngineKey

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
KEY = EngineKey(
    onnx_sha256="ab" * 32,
    trt_version="10.7.0",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    precision="fp16",
    profile=(1, 32, 128),
    workspace_mb=1024,
)


class FakeMemory:
    """Device memory as numpy arrays addressed by id, counting allocations and recording events."""

    kind, stream_handle = "fake", 7

    def __init__(self) -> None:
        self.by_address: dict[int, np.ndarray] = {}
        self.allocations: list[tuple[int, ...]] = []
        self.events: list[str] = []
        self.depth = 0

    @contextlib.contextmanager
    def active(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def is_active(self) -> bool:
        return self.depth > 0

    def empty(self, shape, dtype):
        buffer = np.full(shape, 255, dtype)  # garbage until written
        self.by_address[id(buffer)] = buffer
        self.allocations.append(shape)
        return buffer

    def address(self, buffer) -> int:
        """Host arrays, and CPU torch tensors standing in for device crops."""
        self.by_address[id(buffer)] = buffer if isinstance(buffer, np.ndarray) else buffer.numpy()
        return id(buffer)

    def to_device(self, buffer, host) -> None:
        buffer[: len(host)] = host

    def to_host(self, buffer, n):
        return buffer[:n].copy()

    def wait_for_torch(self) -> None:
        self.events.append("wait")

    def synchronize(self) -> None:
        self.events.append("synchronize")


class FakeContext:
    """An 'engine' whose outputs are each crop's mean and per-channel means, read at the set addresses.

    `refuse` holds ("shape" | "address", tensor name) pairs whose setter returns False.
    """

    def __init__(self, memory, ok: bool = True, refuse=()) -> None:
        self.memory, self.ok, self.refuse = memory, ok, set(refuse)
        self.addresses, self.shapes = {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return ("shape", name) not in self.refuse

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return ("address", name) not in self.refuse

    def _view(self, name) -> np.ndarray:
        info = {t.name: t for t in TENSORS}[name]
        return self.memory.by_address[self.addresses[name]].view(info.dtype).reshape(-1, *info.tail)

    def execute_async_v3(self, stream_handle):
        assert stream_handle == self.memory.stream_handle and self.memory.is_active()
        self.memory.events.append("execute")
        n = self.shapes["crops_bgr"][0]
        crops = self._view("crops_bgr")[:n].astype(np.float32)
        self._view("mean")[:n] = crops.mean(axis=(1, 2, 3))
        self._view("channels")[:n] = crops.mean(axis=(1, 2))
        return self.ok


TENSORS = [
    TensorInfo("crops_bgr", True, np.dtype(np.uint8), (16, 16, 3)),
    TensorInfo("mean", False, np.dtype(np.float32), ()),
    TensorInfo("channels", False, np.dtype(np.float32), (3,)),
]
