"""TensorRT device memory (engines/backends/tensorrt/memory.py): PycudaMemory and make_memory, with a
fake pycuda driver.
"""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest

from engines.backends.tensorrt.backend import TrtRunner
from engines.backends.tensorrt.memory import PycudaMemory, make_memory
from engines.errors import BackendUnavailable
from tests.engines.backends.tensorrt.fakes import TENSORS, FakeContext


class FakeDriver:
    """The part of pycuda.driver PycudaMemory uses: a context stack per thread (as CUDA keeps it),
    device allocations as byte arrays by address."""

    def __init__(self, init_error: Exception | None = None) -> None:
        self.init_error, self.local, self.by_address = init_error, threading.local(), {}
        self.primary, self.pushes, self.pops = object(), 0, 0
        driver = self

        class Context:
            @staticmethod
            def pop():
                driver.pops += 1
                driver.stack().pop()

        class Primary:
            def push(self):
                driver.pushes += 1
                driver.stack().append(driver.primary)

        self.Context = Context
        self.Device = lambda index: types.SimpleNamespace(retain_primary_context=Primary)

    def stack(self) -> list:
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def init(self) -> None:
        if self.init_error is not None:
            raise self.init_error

    def Stream(self):  # pycuda's name
        assert self.stack() == [self.primary], "a stream needs the context current"
        return types.SimpleNamespace(handle=7, synchronize=lambda: None)

    def pagelocked_empty(self, shape, dtype):
        return np.empty(shape, dtype)

    def mem_alloc(self, nbytes: int) -> int:
        assert self.stack() == [self.primary], "memory needs the context current"
        address = 256 * (len(self.by_address) + 1)
        self.by_address[address] = np.zeros(nbytes, np.uint8)
        return address

    def memcpy_htod_async(self, device, host, stream) -> None:
        self.by_address[int(device)][: host.nbytes] = np.ascontiguousarray(host).view(np.uint8).ravel()

    def memcpy_dtoh_async(self, host, device, stream) -> None:
        host.view(np.uint8).reshape(-1)[:] = self.by_address[int(device)][: host.nbytes]


class PycudaView:
    """What FakeContext reads through for pycuda memory: the driver's allocations and its stack."""

    def __init__(self, driver: FakeDriver, memory: PycudaMemory) -> None:
        self.driver, self.by_address, self.stream_handle = driver, driver.by_address, memory.stream_handle
        self.events: list[str] = []

    def is_active(self) -> bool:
        return self.driver.stack() == [self.driver.primary]


def _on_a_thread(driver: FakeDriver, fn):
    """fn() on a new thread, as live mode infers: (its result or exception, that thread's stack after)."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except Exception as exc:
            box["result"] = exc
        box["stack"] = list(driver.stack())

    worker = threading.Thread(target=target)
    worker.start()
    worker.join()
    return box["result"], box["stack"]


@pytest.mark.parametrize("ok", [True, False])
def test_pycuda_context_is_pushed_on_the_inferring_thread_and_always_popped(patches, ok):
    driver = FakeDriver()
    memory = PycudaMemory(driver)
    assert driver.stack() == [] and driver.pushes == driver.pops == 1  # the stream was made inside
    runner = TrtRunner(FakeContext(PycudaView(driver, memory), ok=ok), TENSORS, memory, max_batch=8)
    result, stack = _on_a_thread(driver, lambda: runner.run(patches[:11]))  # 8 + 3
    assert stack == [] and driver.stack() == [] and driver.pushes == driver.pops == 2
    if ok:
        want = patches[:11].astype(np.float32).mean(axis=(1, 2, 3))
        np.testing.assert_allclose(result["mean"], want, rtol=1e-6)
    else:
        assert str(result) == "TensorRT failed to execute a batch of 8 faces"


def _fake_pycuda(monkeypatch, driver: FakeDriver) -> None:
    """`import pycuda.driver` finds `driver`; torch reports no CUDA (so pycuda is what is left)."""
    import torch

    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_without_cuda_torch_the_memory_is_pycuda(monkeypatch):
    driver = FakeDriver()
    _fake_pycuda(monkeypatch, driver)
    memory = make_memory()
    assert memory.kind == "pycuda" and driver.stack() == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            RuntimeError("cuInit failed: no CUDA-capable device is detected"),
            "RuntimeError: cuInit failed: no CUDA-capable device is detected",
        ),
        (OSError("driver/library version mismatch\nmore detail"), "OSError: driver/library version mismatch"),
    ],
)
def test_a_pycuda_that_cannot_start_cuda_is_a_one_line_backend_unavailable(monkeypatch, error, reason):
    _fake_pycuda(monkeypatch, FakeDriver(init_error=error))
    with pytest.raises(BackendUnavailable) as err:
        make_memory()
    assert str(err.value) == f"backend 'tensorrt' could not start CUDA through pycuda ({reason})"
