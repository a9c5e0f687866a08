"""The torch backend: batch buckets, agreement with onnxruntime on real aligned faces (CPU here, CUDA
where there is one), device crops through `run_frames`, and its refusals."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from engines.backends import create_backend, torch_cuda
from engines.backends.torch_cuda import (
    BUCKETS,
    TorchCudaBackend,
    bucket_for,
    chunk_bounds,
    tf32_off_settings,
)
from engines.errors import EmostreamError
from engines.labels import top_emotion
from engines.multitask import MultiTaskNet, NetConfig
from engines.store.store import ModelStore
from pipeline.frames import Frame
from pipeline.stages.align import crop_faces, crop_matrices
from pipeline.stages.detect import create_detector

LABELLED = {
    "pyfeat_happy_f15.jpg": "happy",
    "pyfeat_surprise_f1.jpg": "surprise",
    "fer_justin_smile.jpg": "happy",
    "pyfeat_single_face_smile.jpg": "happy",
}
OTHERS = [
    "pyfeat_angry_f13.jpg",
    "pyfeat_disgust_m7.jpg",
    "pyfeat_neutral_man.jpg",
    "pyfeat_multi_face_5.jpg",
]


@pytest.mark.parametrize(
    ("n", "bucket"), [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16), (17, 32), (33, 64), (65, 128), (128, 128)]
)
def test_a_batch_is_padded_to_the_smallest_bucket_holding_it(n, bucket):
    assert bucket_for(n) == bucket


@pytest.mark.parametrize("n", [0, 129])
def test_no_bucket_outside_1_to_128(n):
    with pytest.raises(ValueError, match="fits no bucket"):
        bucket_for(n)


@pytest.mark.parametrize(
    ("n", "max_batch", "bounds"),
    [(0, 128, []), (5, 128, [(0, 5)]), (128, 128, [(0, 128)]), (130, 128, [(0, 128), (128, 130)])],
)
def test_big_batches_run_in_chunks_of_the_largest_bucket(n, max_batch, bounds):
    assert chunk_bounds(n, max_batch) == bounds
    assert BUCKETS[-1] == 128


@pytest.fixture(scope="module")
def photos(media_dir) -> dict[str, tuple[np.ndarray, object]]:
    """Each photo with YuNet's faces in it."""
    detector = create_detector("yunet")
    out = {}
    for name in [*LABELLED, *OTHERS]:
        image = cv2.imread(str(media_dir / name))
        out[name] = (image, detector.detect(Frame(index=0, time_s=0.0, image_bgr=image)))
    return out


@pytest.fixture(scope="module")
def crops(photos) -> np.ndarray:
    """The pipeline's aligned crops of every face in the photos, plus their mirror images."""
    faces = np.concatenate([crop_faces(image, batch) for image, batch in photos.values()])
    return np.ascontiguousarray(np.concatenate([faces, faces[:, :, ::-1]]))


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(heads=("emotion", "gender")), ModelStore(), backend="onnxruntime")


def test_torch_on_cpu_equals_onnxruntime_on_real_faces(net, crops):
    backend = TorchCudaBackend(net, device="cpu")
    assert (backend.name, backend.precision) == ("torch", "fp32")
    got, want = backend.run(crops), net.infer(crops)
    assert list(got) == list(want) == ["emotion", "contempt", "gender", "embedding"]
    for name in want:
        assert got[name].dtype == np.float32 and got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], atol=1e-4, rtol=0)


def test_building_the_backend_runs_one_blank_crop_to_warm_the_device(net, monkeypatch):
    seen = []
    real = TorchCudaBackend._forward
    monkeypatch.setattr(TorchCudaBackend, "_forward", lambda self, x: seen.append(x.clone()) or real(self, x))
    backend = TorchCudaBackend(net, device="cpu")
    assert len(seen) == 1 and seen[0].shape == (1, backend.crop_size, backend.crop_size, 3)
    assert seen[0].dtype == torch.uint8 and not seen[0].any()


def test_the_shared_module_is_left_on_the_cpu_untouched(net):
    before = {k: (v.device, v.is_contiguous()) for k, v in net.torch_module().state_dict().items()}
    TorchCudaBackend(net, device="cpu", channels_last=True)
    after = {k: (v.device, v.is_contiguous()) for k, v in net.torch_module().state_dict().items()}
    assert after == before


def test_run_frames_cuts_the_crops_itself_and_keeps_frame_order(net, photos):
    backend = TorchCudaBackend(net, device="cpu")
    images = [image for image, _ in photos.values()]
    batches = [batch for _, batch in photos.values()]
    matrices = [crop_matrices(b) for b in batches]
    got = backend.run_frames(images, matrices, net.crop_size)
    want = net.infer(np.concatenate([crop_faces(im, b) for im, b in zip(images, batches, strict=True)]))
    assert got["emotion"].shape == want["emotion"].shape == (sum(len(b) for b in batches), 7)
    assert top_emotion(got["emotion"])[1] == top_emotion(want["emotion"])[1]
    np.testing.assert_allclose(got["emotion"], want["emotion"], atol=0.02)  # crops differ by <= 1 grey level


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"device": "cpu", "precision": "int8"}, "unknown precision 'int8'; valid: fp32, fp16")],
)
def test_bad_options_are_one_line_errors(net, kwargs, message):
    with pytest.raises(EmostreamError) as err:
        TorchCudaBackend(net, **kwargs)
    assert str(err.value) == message


class _Tf32Spy(torch.nn.Module):
    """Stands in for the fused module: records the TF32 settings in force while it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list] = []

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.seen.append([getattr(obj, attr) for obj, attr, _ in tf32_off_settings()])
        return (crops.float().mean(dim=(1, 2, 3)),)


@pytest.mark.parametrize(("precision", "tf32_off"), [("fp32", True), ("fp16", False)])
def test_fp32_runs_with_tf32_off_for_the_backends_life_and_close_restores(
    net, crops, precision, tf32_off, monkeypatch
):
    before = [getattr(obj, attr) for obj, attr, _ in tf32_off_settings()]
    monkeypatch.setattr(torch_cuda, "needs_exact_fp32", lambda device, p: p == "fp32")  # as on CUDA
    backend = TorchCudaBackend(net, device="cpu", precision=precision)
    backend.module = spy = _Tf32Spy()
    backend._forward(torch.from_numpy(crops[:2]))
    backend._forward(torch.from_numpy(crops[:2]))
    off = [value for _, _, value in tf32_off_settings()]
    assert spy.seen == [off if tf32_off else before] * 2 and off != before
    backend.close()
    backend.close()
    assert [getattr(obj, attr) for obj, attr, _ in tf32_off_settings()] == before


def test_the_cpu_never_touches_the_process_wide_tf32_flags(net, crops):
    before = [getattr(obj, attr) for obj, attr, _ in tf32_off_settings()]
    backend = TorchCudaBackend(net, device="cpu", precision="fp32")
    backend.module = spy = _Tf32Spy()
    backend._forward(torch.from_numpy(crops[:2]))
    assert spy.seen == [before]
    backend.close()


class _HostTensorWatch(TorchDispatchMode):
    """Records ops that make a tensor from host data or read one back: both break a CUDA graph capture."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in ("aten.lift_fresh.default", "aten._local_scalar_dense.default"):
            self.seen.add(str(func))
        return func(*args, **(kwargs or {}))


def test_the_forward_makes_no_tensor_from_host_data(crops):
    """What CUDA graph capture forbids (a host->device copy, a sync) cannot happen in the forward."""
    every_head = MultiTaskNet(NetConfig(heads=("emotion", "gender", "age")), ModelStore(), "onnxruntime")
    backend, x = TorchCudaBackend(every_head, device="cpu"), torch.from_numpy(crops[:2])
    with _HostTensorWatch() as watch:
        backend._forward(x)
    assert watch.seen == set()


def _labelled_crops(photos) -> tuple[np.ndarray, list[str]]:
    crops = [crop_faces(*photos[name])[:1] for name in LABELLED]
    return np.concatenate(crops), list(LABELLED.values())


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("precision", "cuda_graphs", "atol"),
    [("fp32", False, 1e-3), ("fp32", True, 1e-3), ("fp16", False, 1e-2), ("fp16", True, 1e-2)],
)
def test_torch_cuda_agrees_with_onnxruntime_cpu(net, photos, crops, precision, cuda_graphs, atol):
    backend = create_backend("torch", net, precision=precision, cuda_graphs=cuda_graphs)
    labelled, emotions = _labelled_crops(photos)
    got = backend.run(labelled)
    np.testing.assert_allclose(got["emotion"], net.infer(labelled)["emotion"], atol=atol, rtol=0)
    assert top_emotion(got["emotion"])[1] == emotions
    for n in (1, 3, len(crops)):  # bucket padding and (with graphs) replays of several sizes
        np.testing.assert_allclose(
            backend.run(crops[:n])["emotion"], net.infer(crops[:n])["emotion"], atol=atol
        )
    big = np.concatenate([crops] * (130 // len(crops) + 1))[:130]  # more than the largest bucket
    np.testing.assert_allclose(backend.run(big)["gender"], net.infer(big)["gender"], atol=atol)
    if cuda_graphs:  # every bucket's graph was captured into the one shared pool
        graphs = backend._graphs.graphs
        assert len(graphs) >= 4 and {g.pool() for g, _, _ in graphs.values()} == {backend._graphs.pool}


@pytest.mark.gpu
def test_run_frames_on_cuda_matches_the_cpu_crops(net, photos):
    backend = create_backend("torch", net, precision="fp32")
    images = [image for image, _ in photos.values()]
    matrices = [crop_matrices(b) for _, b in photos.values()]
    cpu = TorchCudaBackend(net, device="cpu").run_frames(images, matrices, net.crop_size)
    gpu = backend.run_frames(images, matrices, net.crop_size)
    np.testing.assert_allclose(gpu["emotion"], cpu["emotion"], atol=1e-2)
    assert torch.cuda.is_available()


def test_the_analyzer_hands_frames_to_a_backend_with_run_frames(media_dir, photos):
    """FaceAnalyzer.infer: with run_frames the backend cuts the crops; the results match the CPU path."""
    from pipeline.analyzer import FaceAnalyzer
    from pipeline.config import AnalyzerConfig

    analyzer = FaceAnalyzer(AnalyzerConfig(heads=("emotion", "gender"), backend="onnxruntime"))
    names = ["pyfeat_multi_face_5.jpg", "fer_justin_smile.jpg"]
    frames = [Frame(index=i, time_s=i / 30, image_bgr=photos[n][0]) for i, n in enumerate(names)]
    batches = [photos[n][1] for n in names]
    on_cpu = analyzer.infer(frames, batches)
    calls = []
    device = TorchCudaBackend(analyzer.net, device="cpu")

    def run_frames(images, matrices, size):
        calls.append([len(m) for m in matrices])
        return device.run_frames(images, matrices, size)

    analyzer.net.backend = type("Spy", (), {"name": "torch", "run_frames": staticmethod(run_frames)})()
    on_device = analyzer.infer(frames, batches)
    assert calls == [[len(b) for b in batches]]
    for cpu, dev in zip(on_cpu, on_device, strict=True):
        np.testing.assert_allclose(dev.outputs["emotion"], cpu.outputs["emotion"], atol=0.02)
        np.testing.assert_allclose(dev.outputs["gender"], cpu.outputs["gender"], atol=0.02)
    empty = [b.select(np.zeros(len(b), bool)) for b in batches]
    assert [len(b) for b in analyzer.infer(frames, empty)] == [0, 0] and len(calls) == 1
    analyzer.close()
