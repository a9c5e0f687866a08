"""Backend selection: what `auto` picks under each availability, and the one-line refusals."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

from engines import backends
from engines.backends import AUTO_ORDER, BACKEND_CHOICES, create_backend, resolve_backend
from engines.errors import BackendUnavailable
from engines.multitask import MultiTaskNet, NetConfig
from engines.store.store import ModelStore
from pipeline.cli import main as cli

HAS_CUDA = torch.cuda.is_available()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
OK = None
NO_TRT = 'the tensorrt module is not installed; pip install "emostream[tensorrt]"'
NO_CUDA = "no CUDA device visible to torch (torch.cuda.is_available() is False)"
NO_ORT = "the onnxruntime package is not installed"


@pytest.fixture(scope="module")
def source() -> MultiTaskNet:
    return MultiTaskNet(NetConfig(heads=("emotion",)), ModelStore(), backend="onnxruntime")


def _probes(monkeypatch, tensorrt, torch_, onnxruntime):
    for name, reason in (("tensorrt", tensorrt), ("torch", torch_), ("onnxruntime", onnxruntime)):
        monkeypatch.setitem(backends._PROBES, name, lambda reason=reason: reason)


@pytest.mark.parametrize(
    ("tensorrt", "torch_", "onnxruntime", "expected"),
    [
        (OK, OK, OK, "tensorrt"),
        (OK, NO_CUDA, OK, "tensorrt"),  # TensorRT with pycuda memory, torch CPU-only
        (NO_TRT, OK, OK, "torch"),
        (NO_TRT, NO_CUDA, OK, "onnxruntime"),
        ("no CUDA device found", NO_CUDA, OK, "onnxruntime"),
        (OK, OK, NO_ORT, "tensorrt"),
        (NO_TRT, NO_CUDA, NO_ORT, None),
    ],
)
def test_auto_picks_the_first_backend_that_can_run(monkeypatch, tensorrt, torch_, onnxruntime, expected):
    _probes(monkeypatch, tensorrt, torch_, onnxruntime)
    if expected is None:
        with pytest.raises(BackendUnavailable) as err:
            resolve_backend("auto")
        assert str(err.value) == (
            f"no inference backend can run here (tensorrt: {NO_TRT}; torch: {NO_CUDA}; onnxruntime: {NO_ORT})"
        )
    else:
        assert resolve_backend("auto") == expected


@pytest.mark.parametrize("name", ["onnxruntime", "torch", "tensorrt"])
def test_a_named_backend_resolves_to_itself_whatever_the_probes_say(monkeypatch, name):
    _probes(monkeypatch, NO_TRT, NO_CUDA, NO_ORT)
    assert resolve_backend(name) == name


@pytest.mark.parametrize("name", ["tflite", "cuda", "", "AUTO"])
def test_unknown_names_list_the_valid_ones(name, source):
    expected = f"unknown backend {name!r}; valid backends: onnxruntime, torch, tensorrt (or auto)"
    for call in (lambda: resolve_backend(name), lambda: create_backend(name, source)):
        with pytest.raises(BackendUnavailable) as err:
            call()
        assert str(err.value) == expected


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("tensorrt", NO_TRT),
        ("tensorrt", "no CUDA device found (neither torch nor pycuda sees an NVIDIA GPU)"),
        ("torch", NO_CUDA),
        ("torch", "this torch build is CPU-only (torch.version.cuda is None); install a CUDA build of torch"),
    ],
)
def test_a_named_backend_that_cannot_run_says_why_in_one_line(monkeypatch, source, name, reason):
    monkeypatch.setitem(backends._PROBES, name, lambda: reason)
    with pytest.raises(BackendUnavailable) as err:
        create_backend(name, source)
    assert str(err.value) == f"backend {name!r} is not available: {reason}"
    assert "\n" not in str(err.value)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_the_real_tensorrt_probe_points_at_the_extra(source):
    with pytest.raises(BackendUnavailable, match=r'pip install "emostream\[tensorrt\]"$'):
        create_backend("tensorrt", source)


@pytest.mark.skipif(HAS_CUDA, reason="torch sees a CUDA device here")
def test_the_real_torch_probe_names_the_missing_cuda(source):
    expected = "CPU-only" if torch.version.cuda is None else "torch.cuda.is_available() is False"
    with pytest.raises(BackendUnavailable, match=expected):
        create_backend("torch", source)


@pytest.mark.skipif(HAS_CUDA or HAS_TENSORRT, reason="a GPU backend can run here")
def test_auto_on_a_cpu_machine_runs_onnxruntime_and_reports_it(source):
    net = MultiTaskNet(source.config, source.store, backend="auto", intra_op_threads=1)
    assert net.backend_name == "onnxruntime" and net.backend.intra_op_threads == 1
    crops = np.random.default_rng(0).integers(0, 256, (2, 128, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(net.infer(crops)["emotion"], source.infer(crops)["emotion"], atol=1e-6)


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_auto_falls_through_when_a_probed_backend_still_refuses(monkeypatch, source):
    """The tensorrt probe is forced to pass; building the backend then fails on the missing module."""
    monkeypatch.setitem(backends._PROBES, "tensorrt", lambda: OK)
    monkeypatch.setitem(backends._PROBES, "torch", lambda: NO_CUDA)
    backend = create_backend("auto", source, precision="fp16")  # an option onnxruntime does not take
    assert backend.name == "onnxruntime"


def _cuinit_fails():
    raise RuntimeError("cuInit failed: no CUDA-capable device is detected")


def _tensorrt_that_fails(monkeypatch, where: str) -> None:
    """The tensorrt backend with its module present (a stand-in) and its probe passing, failing
    `where` the real one can: the ONNX parser, TensorRT itself, or pycuda's CUDA start."""
    from engines.backends.tensorrt import backend as trt_backend
    from engines.backends.tensorrt import engine as trt_engine

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(backends._PROBES, "tensorrt", lambda: OK)
    monkeypatch.setitem(backends._PROBES, "torch", lambda: NO_CUDA)
    if where == "pycuda":
        driver = types.SimpleNamespace(init=_cuinit_fails)
        monkeypatch.setitem(sys.modules, "pycuda", types.SimpleNamespace(driver=driver))
        monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        return
    errors = {
        "parser": trt_engine.EngineBuildError("fused.onnx: TensorRT's ONNX parser refused it: Cast"),
        "tensorrt": RuntimeError("pybind11::init(): factory function returned nullptr\nstack"),
    }

    def ensure_engine(onnx_path, cache_root, options):
        raise errors[where]

    memory = types.SimpleNamespace(kind="fake", active=contextlib.nullcontext)
    monkeypatch.setattr(trt_backend, "make_memory", lambda: memory)
    monkeypatch.setattr(trt_engine, "ensure_engine", ensure_engine)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("parser", "fused.onnx: TensorRT's ONNX parser refused it: Cast"),
        (
            "tensorrt",
            "{onnx}: TensorRT could not build or load an engine "
            "(RuntimeError: pybind11::init(): factory function returned nullptr)",
        ),
        (
            "pycuda",
            "backend 'tensorrt' could not start CUDA through pycuda "
            "(RuntimeError: cuInit failed: no CUDA-capable device is detected)",
        ),
    ],
)
def test_a_tensorrt_that_fails_to_start_gives_way_under_auto(monkeypatch, source, where, message):
    _tensorrt_that_fails(monkeypatch, where)
    assert create_backend("auto", source, precision="fp16").name == "onnxruntime"
    with pytest.raises(BackendUnavailable) as err:
        create_backend("tensorrt", source)
    assert str(err.value) == message.format(onnx=source.onnx_path)


def test_auto_order_and_the_cli_choices_match_the_registry():
    assert AUTO_ORDER == ("tensorrt", "torch", "onnxruntime")
    assert BACKEND_CHOICES == ("auto", "onnxruntime", "torch", "tensorrt")
    assert cli.build_parser().parse_args(["run", "x.mp4", "--out", "o"]).backend == "auto"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--backend", "onnxruntime,tflite"], "--backend: unknown tflite; valid: auto, onnxruntime"),
        (["bench", "--backend", ","], "--backend: unknown empty list"),
        (["bench", "--batches", "1,x"], "--batches must be comma-separated whole numbers"),
        (["bench", "--batches", "0,8"], "--batches and --runs must be >= 1"),
        (["bench", "--runs", "0"], "--batches and --runs must be >= 1"),
    ],
)
def test_bench_arguments_are_checked_before_any_work(capsys, argv, message):
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"emostream: error: {message}") and err.count("\n") == 1
