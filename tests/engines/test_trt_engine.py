"""TensorRT engine cache (keys, sidecars, rebuilds), buffer growth and the runner's plumbing.

TensorRT is not installable on the development machines: the cache takes its builder and
deserializer as callables and the runner takes an engine context and device memory, so both are
tested here with small fakes; the real build + run is a `gpu` test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import sys
import threading
import types

import cv2
import numpy as np
import pytest

from engines.backends.tensorrt import ALIGNMENT_BYTES, BufferPlan, TensorInfo, TrtRunner, aligned_chunk
from engines.backends.trt_memory import PycudaMemory, make_memory
from engines.bench import backend_label
from engines.errors import BackendUnavailable, EmostreamError
from engines.trt_engine import (
    ENGINE_FORMAT,
    BuildOptions,
    EngineBuildError,
    EngineCache,
    EngineKey,
    effective_precision,
    ensure_engine,
    make_key,
    set_precision,
    use_timing_cache,
)
from pipeline import cli

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


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("onnx_sha256", "cd" * 32),
        ("trt_version", "10.8.0"),
        ("gpu_name", "NVIDIA GeForce RTX 4090"),
        ("compute_capability", "8.9"),
        ("precision", "fp32"),
        ("profile", (1, 16, 128)),
        ("profile", (1, 32, 64)),
        ("profile", (2, 32, 128)),
        ("workspace_mb", 2048),
        ("format", "emostream-trt-v0"),
    ],
)
def test_every_key_field_changes_the_cache_entry(tmp_path, field, other):
    changed = dataclasses.replace(KEY, **{field: other})
    assert changed.digest() != KEY.digest()
    assert EngineCache(tmp_path).engine_path(changed) != EngineCache(tmp_path).engine_path(KEY)


def test_the_key_round_trips_through_json():
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY
    with pytest.raises(ValueError, match="an engine key has the fields"):
        EngineKey.from_dict({k: v for k, v in KEY.to_dict().items() if k != "gpu_name"})


def test_make_key_takes_the_profile_and_workspace_from_the_options():
    options = BuildOptions(precision="fp32", max_batch=64, opt_batch=100, workspace_mb=512)
    key = make_key("ef" * 32, options, "10.7.0", ("NVIDIA L4", "8.9"))
    assert (key.profile, key.workspace_mb, key.precision, key.gpu_name) == (
        (1, 64, 64),
        512,
        "fp32",
        "NVIDIA L4",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "int8"}, "unknown precision 'int8'; valid: fp32, fp16"),
        ({"max_batch": 0}, "max batch must be >= 1, got 0"),
        ({"opt_batch": -1}, "optimum batch must be >= 1, got -1"),
        ({"workspace_mb": 0}, "workspace must be >= 1 MiB, got 0"),
    ],
)
def test_build_options_refuse_bad_values_in_one_line(kwargs, message):
    with pytest.raises(EmostreamError) as err:
        BuildOptions(**kwargs)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("requested", "fast_fp16", "expected"),
    [("fp16", True, "fp16"), ("fp16", False, "fp32"), ("fp32", True, "fp32"), ("fp32", False, "fp32")],
)
def test_fp16_only_where_the_gpu_has_it(requested, fast_fp16, expected):
    assert effective_precision(requested, fast_fp16) == expected


TRT10_FLAGS = types.SimpleNamespace(FP16="FP16", TF32="TF32")
TRT11_FLAGS = types.SimpleNamespace(TF32="TF32")  # TensorRT 11 dropped BuilderFlag.FP16


class FakeConfig:
    """A builder config recording its flags; timing caches are ("cache", blob) or refused as TensorRT does."""

    def __init__(self) -> None:
        self.set, self.cleared, self.timing_cache = [], [], None

    def set_flag(self, flag):
        self.set.append(flag)

    def clear_flag(self, flag):
        self.cleared.append(flag)

    def create_timing_cache(self, blob: bytes):
        if blob == b"raises":
            raise RuntimeError("timing cache is corrupt")
        return None if blob == b"corrupt" else ("cache", blob)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        if cache[1] == b"other device":
            return False
        self.timing_cache = cache
        return True


@pytest.mark.parametrize(
    ("flags", "precision", "set_", "cleared"),
    [
        (TRT10_FLAGS, "fp16", ["FP16"], []),
        (TRT10_FLAGS, "fp32", [], ["TF32"]),  # TensorRT would otherwise run fp32 convolutions in TF32
        (TRT11_FLAGS, "fp32", [], ["TF32"]),
        (types.SimpleNamespace(), "fp32", [], []),  # no TF32 flag: nothing to clear
    ],
)
def test_precision_flags(flags, precision, set_, cleared):
    config = FakeConfig()
    set_precision(types.SimpleNamespace(BuilderFlag=flags, __version__="10.7.0"), config, precision)
    assert (config.set, config.cleared) == (set_, cleared)


def test_fp16_without_a_builder_flag_is_a_one_line_build_error():
    trt = types.SimpleNamespace(BuilderFlag=TRT11_FLAGS, __version__="11.0.0")
    with pytest.raises(EngineBuildError) as err:
        set_precision(trt, FakeConfig(), "fp16")
    assert str(err.value) == (
        "TensorRT 11.0.0 has no BuilderFlag.FP16 (removed in TensorRT 11): ask for precision fp32, "
        'or install TensorRT 10 with pip install "emostream[tensorrt]"'
    )
    assert isinstance(err.value, BackendUnavailable)  # so `auto` moves on to the next backend


def test_ensure_engine_refuses_fp16_on_tensorrt_11_before_any_work(monkeypatch, tmp_path):
    class Logger:
        ERROR = 1

        def __init__(self, level):
            pass

    fake = types.SimpleNamespace(
        __version__="11.0.0", Logger=Logger, Builder=lambda logger: object(), BuilderFlag=TRT11_FLAGS
    )
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    missing = tmp_path / "not-read.onnx"  # hashing it would raise FileNotFoundError
    with pytest.raises(EngineBuildError, match=r"has no BuilderFlag\.FP16"):
        ensure_engine(missing, tmp_path / "trt", BuildOptions(precision="fp16"))
    assert not (tmp_path / "trt").exists()


@pytest.mark.parametrize(
    ("saved", "used"),
    [
        (None, b""),  # first build: an empty cache
        (b"timings", b"timings"),
        (b"corrupt", b""),  # create_timing_cache returned None
        (b"raises", b""),
        (b"other device", b""),  # set_timing_cache refused it
    ],
)
def test_a_missing_or_unusable_timing_cache_starts_an_empty_one(tmp_path, saved, used):
    path = tmp_path / "timing.cache"
    if saved is not None:
        path.write_bytes(saved)
    config = FakeConfig()
    use_timing_cache(config, path)
    assert config.timing_cache == ("cache", used)


class FakeBuilder:
    """Stands in for TensorRT: 'engines' are bytes naming their key; anything else does not load."""

    def __init__(self) -> None:
        self.builds: list[EngineKey] = []

    def build(self, key: EngineKey) -> bytes:
        self.builds.append(key)
        return b"engine:" + key.digest().encode()

    @staticmethod
    def deserialize(data: bytes):
        return ("engine", data) if data.startswith(b"engine:") else None


def _load(cache: EngineCache, builder: FakeBuilder, key: EngineKey = KEY):
    return cache.load_or_build(key, builder.build, builder.deserialize)


def test_first_use_builds_and_the_second_loads(tmp_path):
    cache, builder = EngineCache(tmp_path / "trt"), FakeBuilder()
    first = _load(cache, builder)
    second = _load(cache, builder)
    assert (first.built, second.built, len(builder.builds)) == (True, False, 1)
    assert first.path == second.path == cache.engine_path(KEY) and first.engine == second.engine
    assert cache.recorded_key(first.path) == KEY
    assert sorted(p.name for p in (tmp_path / "trt").iterdir()) == sorted(
        [first.path.name, first.path.with_suffix(".json").name]
    )


def _foreign_sidecar(path):
    data = json.loads(path.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**data, "trt_version": "8.6.1"}))


def _no_sidecar(path):
    path.with_suffix(".json").unlink()


def _garbled_sidecar(path):
    path.with_suffix(".json").write_text("{not json")


def _corrupt_engine(path):
    path.write_bytes(b"\x00" * 64)


def _truncated_engine(path):
    path.write_bytes(path.read_bytes()[:5])


@pytest.mark.parametrize(
    "damage", [_foreign_sidecar, _no_sidecar, _garbled_sidecar, _corrupt_engine, _truncated_engine]
)
def test_a_stale_foreign_or_broken_engine_is_rebuilt_not_loaded(tmp_path, damage):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    path = _load(cache, builder).path
    damage(path)
    again = _load(cache, builder)
    assert again.built and len(builder.builds) == 2
    assert FakeBuilder.deserialize(path.read_bytes()) is not None and cache.recorded_key(path) == KEY


def test_a_deserializer_that_raises_on_the_cached_file_means_rebuild(tmp_path):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    _load(cache, builder)
    calls = []

    def picky(data: bytes):
        calls.append(data)
        if len(calls) == 1:
            raise RuntimeError("engine plan was built for another TensorRT")
        return FakeBuilder.deserialize(data)

    assert cache.load_or_build(KEY, builder.build, picky).built and len(builder.builds) == 2


def test_a_failed_build_leaves_nothing_under_the_final_names(tmp_path):
    cache = EngineCache(tmp_path)

    def broken(key):
        raise EngineBuildError("parser refused the graph")

    with pytest.raises(EngineBuildError):
        cache.load_or_build(KEY, broken, FakeBuilder.deserialize)
    with pytest.raises(EngineBuildError, match="cannot deserialize"):
        cache.load_or_build(KEY, lambda key: b"junk", FakeBuilder.deserialize)
    assert list(tmp_path.iterdir()) == []


def test_engines_cached_before_fp32_dropped_tf32_are_rebuilt(tmp_path):
    """Format v1 engines were fp32 with TF32 on; the current format names another cache entry."""
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    old = _load(cache, builder, dataclasses.replace(KEY, precision="fp32", format="emostream-trt-v1"))
    new = _load(cache, builder, dataclasses.replace(KEY, precision="fp32"))
    assert KEY.format == ENGINE_FORMAT != "emostream-trt-v1"
    assert new.built and new.path != old.path and len(builder.builds) == 2


def test_keys_differing_only_in_gpu_live_side_by_side(tmp_path):
    cache, builder = EngineCache(tmp_path), FakeBuilder()
    other = dataclasses.replace(KEY, gpu_name="NVIDIA A10", compute_capability="8.6")
    paths = {_load(cache, builder, k).path for k in (KEY, other, KEY, other)}
    assert len(paths) == 2 and len(builder.builds) == 2
    assert cache.timing_cache_path(KEY) != cache.timing_cache_path(other)
    assert cache.timing_cache_path(KEY) == cache.timing_cache_path(dataclasses.replace(KEY, precision="fp32"))


@pytest.mark.parametrize(
    ("max_batch", "requests", "capacities", "grew"),
    [
        (128, [1, 1, 2, 3, 4, 5], [1, 1, 2, 4, 4, 8], [True, False, True, True, False, True]),
        (128, [7, 2, 1], [8, 8, 8], [True, False, False]),  # never shrinks
        (128, [33, 100, 128, 64], [64, 128, 128, 128], [True, True, False, False]),
        (100, [65, 99, 100], [100, 100, 100], [True, False, False]),  # capped at a non-power-of-two max
        (1, [1, 1], [1, 1], [True, False]),
    ],
)
def test_buffers_grow_to_the_next_power_of_two_and_never_shrink(max_batch, requests, capacities, grew):
    plan = BufferPlan(max_batch)
    seen = [(plan.reserve(n), plan.capacity) for n in requests]
    assert seen == list(zip(grew, capacities, strict=True))


@pytest.mark.parametrize("n", [0, -1, 129])
def test_a_batch_outside_the_profile_is_refused(n):
    with pytest.raises(ValueError, match="split it first"):
        BufferPlan(128).target(n)


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


@pytest.fixture(scope="module")
def patches(media_dir) -> np.ndarray:
    """200 distinct 16x16 patches of a real photo."""
    image = cv2.imread(str(media_dir / "pyfeat_multi_face_5.jpg"))
    return np.stack([image[y : y + 16, x : x + 16] for y in range(0, 400, 40) for x in range(0, 800, 40)])


def test_the_runner_grows_buffers_chunks_big_batches_and_keeps_row_order(patches):
    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory), TENSORS, memory, max_batch=128)
    for lo, hi in [(0, 3), (3, 5), (5, 10), (10, 140), (140, 141)]:
        crops = patches[lo:hi]
        out = runner.run(crops)
        np.testing.assert_allclose(out["mean"], crops.astype(np.float32).mean(axis=(1, 2, 3)), rtol=1e-6)
        np.testing.assert_allclose(out["channels"], crops.astype(np.float32).mean(axis=(1, 2)), rtol=1e-6)
    capacities = [shape[0] for shape in memory.allocations[:: len(TENSORS)]]
    assert capacities == [4, 8, 128]  # 3 -> 4, 2 fits, 5 -> 8, 130 = 128 + 2 -> 128, 1 fits
    assert memory.allocations[:3] == [(4,), (4, 3), (4, 16, 16, 3)]  # outputs, then the host input


def test_a_failed_execution_is_an_error_not_garbage(patches):
    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory, ok=False), TENSORS, memory, max_batch=8)
    with pytest.raises(EmostreamError, match="TensorRT failed to execute a batch of 2 faces"):
        runner.run(patches[:2])


def test_an_engine_with_two_inputs_is_refused():
    memory = FakeMemory()
    with pytest.raises(EmostreamError, match="one input tensor, this one has 2"):
        TrtRunner(FakeContext(memory), [*TENSORS, TENSORS[0]], memory, max_batch=8)


@pytest.mark.parametrize(
    ("refuse", "message"),
    [
        (("shape", "crops_bgr"), "TensorRT refused the shape of tensor 'crops_bgr' for a batch of 2 faces"),
        (
            ("address", "crops_bgr"),
            "TensorRT refused the address of tensor 'crops_bgr' for a batch of 2 faces",
        ),
        (("address", "channels"), "TensorRT refused the address of tensor 'channels' for a batch of 2 faces"),
    ],
)
def test_a_refused_shape_or_address_names_the_tensor(patches, refuse, message):
    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory, refuse=[refuse]), TENSORS, memory, max_batch=8)
    with pytest.raises(EmostreamError) as err:
        runner.run(patches[:2])
    assert str(err.value) == message and memory.events == []  # nothing executed


def _torch_crops(patches, n: int, contiguous: bool):
    """Device-crop stand-ins: CPU torch tensors, optionally a non-contiguous view of the same values."""
    import torch

    if contiguous:
        return torch.from_numpy(patches[:n].copy())
    return torch.from_numpy(patches[:n].transpose(0, 2, 1, 3).copy()).transpose(1, 2)


@pytest.mark.parametrize("contiguous", [True, False])
def test_run_device_waits_once_then_reads_the_crops_without_an_input_buffer(patches, contiguous):
    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory), TENSORS, memory, max_batch=8)
    out = runner.run_device(_torch_crops(patches, 11, contiguous))  # 8 + 3
    np.testing.assert_allclose(out["mean"], patches[:11].astype(np.float32).mean(axis=(1, 2, 3)), rtol=1e-6)
    assert memory.events == ["wait", "execute", "execute"]
    assert memory.allocations == [(8,), (8, 3)]  # outputs only: the engine reads the crops in place
    runner.run(patches[:3])  # a host batch later needs the input buffer, at the current capacity
    assert memory.allocations == [(8,), (8, 3), (8, 16, 16, 3)]


@pytest.mark.parametrize(
    ("shape", "dtype", "got"),
    [
        ((2, 16, 16, 3), np.float32, "(2, 16, 16, 3) float32"),
        ((2, 8, 8, 3), np.uint8, "(2, 8, 8, 3) uint8"),
        ((16, 16, 3), np.uint8, "(16, 16, 3) uint8"),
    ],
)
def test_crops_of_the_wrong_shape_or_type_are_refused(shape, dtype, got):
    import torch

    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory), TENSORS, memory, max_batch=8)
    expected = f"the engine takes (N, 16, 16, 3) uint8 crops, got {got}"
    for call in (
        lambda: runner.run(np.zeros(shape, dtype)),
        lambda: runner.run_device(torch.zeros(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype)),
    ):
        with pytest.raises(ValueError) as err:
            call()
        assert str(err.value) == expected
    assert memory.events == [] and memory.allocations == []


def test_an_empty_batch_gives_empty_outputs(patches):
    memory = FakeMemory()
    runner = TrtRunner(FakeContext(memory), TENSORS, memory, max_batch=8)
    for out in (runner.run(patches[:0]), runner.run_device(_torch_crops(patches, 0, True))):
        assert {k: (v.shape, v.dtype) for k, v in out.items()} == {
            "mean": ((0,), np.float32),
            "channels": ((0, 3), np.float32),
        }
    assert memory.events == ["wait"] and memory.allocations == []


@pytest.mark.parametrize(
    ("size", "lo", "hi", "copied"),
    [
        (8, 0, 2, False),  # the start of an aligned tensor
        (8, 1, 3, True),  # 8*8*3 = 192 bytes per crop: row 1 is off by 192
        (8, 4, 6, False),  # 4 * 192 = 768 = 3 * 256
        (16, 1, 3, False),  # 16*16*3 = 768 bytes per crop: every row is aligned
    ],
)
def test_device_chunks_are_copied_only_when_not_256_byte_aligned(size, lo, hi, copied):
    import torch

    raw = torch.arange(8 * size * size * 3 + 256, dtype=torch.int64).to(torch.uint8)
    skip = (-raw.data_ptr()) % ALIGNMENT_BYTES
    crops = raw[skip : skip + 8 * size * size * 3].view(8, size, size, 3)
    assert crops.data_ptr() % ALIGNMENT_BYTES == 0
    chunk = aligned_chunk(crops, lo, hi)
    assert torch.equal(chunk, crops[lo:hi]) and chunk.is_contiguous()
    assert (chunk.data_ptr() != crops[lo:hi].data_ptr()) == copied
    if not copied:
        assert chunk.data_ptr() % ALIGNMENT_BYTES == 0


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


class FakeEngine:
    """The name-based tensor API of a TensorRT 10 engine, for the backend's glue."""

    def __init__(self, memory: FakeMemory) -> None:
        self.memory = memory
        self.num_io_tensors = len(TENSORS)

    def get_tensor_name(self, i):
        return TENSORS[i].name

    def get_tensor_mode(self, name):
        return "input" if name == "crops_bgr" else "output"

    def get_tensor_dtype(self, name):
        return {t.name: t.dtype for t in TENSORS}[name]

    def get_tensor_shape(self, name):
        return (-1, *{t.name: t.tail for t in TENSORS}[name])

    def create_execution_context(self):
        return FakeContext(self.memory)


def test_the_backend_wires_engine_tensors_memory_and_cache_together(monkeypatch, tmp_path, patches):
    """TensorRTBackend's glue with the library, the engine build and the device memory faked."""
    import sys
    import types

    from engines import backends, trt_engine
    from engines.backends import tensorrt as trt_backend

    memory = FakeMemory()
    fake_trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="input"), nptype=lambda d: d)
    built = {}

    def fake_ensure(onnx_path, cache_root, options):
        built.update(onnx_path=onnx_path, cache_root=cache_root, options=options)
        return trt_engine.CachedEngine(FakeEngine(memory), cache_root / "x.engine", KEY, True), None

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    monkeypatch.setitem(backends._PROBES, "tensorrt", lambda: None)
    monkeypatch.setattr(trt_backend, "make_memory", lambda: memory)
    monkeypatch.setattr(trt_engine, "ensure_engine", fake_ensure)
    source = types.SimpleNamespace(onnx_path=tmp_path / "onnx" / "fused.onnx", store=None)
    backend = backends.create_backend("tensorrt", source, precision="fp32", max_batch=16)
    assert built["cache_root"] == tmp_path / "trt" and built["options"].profile == (1, 16, 16)
    assert (backend.name, backend.engine_key, backend.engine_built) == ("tensorrt", KEY, True)
    assert backend.precision == KEY.precision == "fp16"  # the engine's, for the bench rows
    net = types.SimpleNamespace(backend=backend, backend_name="tensorrt")
    assert backend_label(net) == "tensorrt fp16"
    assert not hasattr(backend, "run_frames")  # device crops only with torch CUDA memory
    out = backend.run(patches[:20])  # 16 + 4
    np.testing.assert_allclose(out["mean"], patches[:20].astype(np.float32).mean(axis=(1, 2, 3)), rtol=1e-6)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["build-engine"],
            "backend 'tensorrt' is not available: the tensorrt module is not installed; "
            'pip install "emostream[tensorrt]"',
        ),
        (["build-engine", "--max-batch", "0"], "max batch must be >= 1, got 0"),
        (["build-engine", "--workspace", "0"], "workspace must be >= 1 MiB, got 0"),
    ],
)
def test_build_engine_without_tensorrt_exits_2_with_the_reason(capsys, argv, message):
    assert cli.main(argv) == cli.EXIT_USAGE
    assert capsys.readouterr().err == f"emostream: error: {message}\n"


LABELLED = ["pyfeat_happy_f15.jpg", "pyfeat_surprise_f1.jpg", "fer_justin_smile.jpg", "pyfeat_angry_f13.jpg"]


def aligned_crops(media_dir, names=LABELLED) -> np.ndarray:
    """The pipeline's own aligned 128 px crops of every face YuNet finds in the labelled photos."""
    from pipeline.align import crop_faces
    from pipeline.detect import create_detector
    from pipeline.frames import Frame

    detector = create_detector("yunet")
    images = [cv2.imread(str(media_dir / name)) for name in names]
    crops = [crop_faces(im, detector.detect(Frame(index=0, time_s=0.0, image_bgr=im))) for im in images]
    return np.concatenate(crops)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed (it cannot be on the dev machines)")
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 1e-2)])
def test_tensorrt_engine_agrees_with_onnxruntime_and_is_cached(tmp_path, media_dir, precision, atol):
    from engines.multitask import MultiTaskNet, NetConfig
    from engines.store import ModelStore

    net = MultiTaskNet(NetConfig(heads=("emotion", "gender")), ModelStore(), backend="onnxruntime")
    faces = aligned_crops(media_dir)
    crops = np.concatenate([faces, faces[:, :, ::-1]] * 5)  # > max_batch: runs in chunks
    options = {"precision": precision, "max_batch": 32, "cache_dir": tmp_path}
    first = MultiTaskNet(net.config, net.store, "tensorrt", **options)
    second = MultiTaskNet(net.config, net.store, "tensorrt", **options)
    assert first.backend.engine_built and not second.backend.engine_built
    want, got = net.infer(crops), second.infer(crops)
    for name in ("emotion", "gender"):
        np.testing.assert_allclose(got[name], want[name], atol=atol, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed (it cannot be on the dev machines)")
def test_tensorrt_on_device_crops_agrees_with_host_crops(tmp_path, media_dir):
    """run_frames (crops cut on the GPU, read in place, odd chunk offsets) against run on cv2 crops."""
    from engines.multitask import MultiTaskNet, NetConfig
    from pipeline.align import crop_faces, crop_matrices
    from pipeline.detect import create_detector
    from pipeline.frames import Frame

    net = MultiTaskNet(NetConfig(heads=("emotion",)), backend="tensorrt", max_batch=3, cache_dir=tmp_path)
    assert net.backend.precision in ("fp16", "fp32") and hasattr(net.backend, "run_frames")
    detector = create_detector("yunet")
    images = [cv2.imread(str(media_dir / name)) for name in ["pyfeat_multi_face_5.jpg", *LABELLED]]
    batches = [detector.detect(Frame(index=0, time_s=0.0, image_bgr=im)) for im in images]
    got = net.backend.run_frames(images, [crop_matrices(b) for b in batches], net.crop_size)
    want = net.infer(np.concatenate([crop_faces(im, b) for im, b in zip(images, batches, strict=True)]))
    np.testing.assert_allclose(got["emotion"], want["emotion"], atol=0.02)
