"""The TensorRT backend (engines/backends/tensorrt/backend.py): buffer growth, the runner's plumbing, device
crops and aligned chunks, the backend's wiring, and the real build + run as `gpu` tests.

TensorRT is not installable on the development machines: the runner takes an engine context and
device memory, so it is tested here with small fakes (tests/engines/backends/tensorrt/fakes.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.backends.tensorrt.backend import ALIGNMENT_BYTES, BufferPlan, TrtRunner, aligned_chunk
from engines.bench import backend_label
from engines.errors import EmostreamError
from tests.engines.backends.tensorrt.fakes import HAS_TENSORRT, KEY, TENSORS, FakeContext, FakeMemory


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

    from engines import backends
    from engines.backends.tensorrt import backend as trt_backend
    from engines.backends.tensorrt import engine as trt_engine

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


LABELLED = ["pyfeat_happy_f15.jpg", "pyfeat_surprise_f1.jpg", "fer_justin_smile.jpg", "pyfeat_angry_f13.jpg"]


def aligned_crops(media_dir, names=LABELLED) -> np.ndarray:
    """The pipeline's own aligned 128 px crops of every face YuNet finds in the labelled photos."""
    from pipeline.frames import Frame
    from pipeline.stages.align import crop_faces
    from pipeline.stages.detect import create_detector

    detector = create_detector("yunet")
    images = [cv2.imread(str(media_dir / name)) for name in names]
    crops = [crop_faces(im, detector.detect(Frame(index=0, time_s=0.0, image_bgr=im))) for im in images]
    return np.concatenate(crops)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt is not installed (it cannot be on the dev machines)")
@pytest.mark.parametrize(("precision", "atol"), [("fp32", 1e-3), ("fp16", 1e-2)])
def test_tensorrt_engine_agrees_with_onnxruntime_and_is_cached(tmp_path, media_dir, precision, atol):
    from engines.multitask import MultiTaskNet, NetConfig
    from engines.store.store import ModelStore

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
    from pipeline.frames import Frame
    from pipeline.stages.align import crop_faces, crop_matrices
    from pipeline.stages.detect import create_detector

    net = MultiTaskNet(NetConfig(heads=("emotion",)), backend="tensorrt", max_batch=3, cache_dir=tmp_path)
    assert net.backend.precision in ("fp16", "fp32") and hasattr(net.backend, "run_frames")
    detector = create_detector("yunet")
    images = [cv2.imread(str(media_dir / name)) for name in ["pyfeat_multi_face_5.jpg", *LABELLED]]
    batches = [detector.detect(Frame(index=0, time_s=0.0, image_bgr=im)) for im in images]
    got = net.backend.run_frames(images, [crop_matrices(b) for b in batches], net.crop_size)
    want = net.infer(np.concatenate([crop_faces(im, b) for im, b in zip(images, batches, strict=True)]))
    np.testing.assert_allclose(got["emotion"], want["emotion"], atol=0.02)
