"""Backends: created by name, one Protocol, clear one-line refusals for the ones not written yet."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engines.backends import BACKENDS, Backend, create_backend
from engines.backends.base import usable_cpus
from engines.errors import BackendUnavailable
from engines.multitask import MultiTaskNet, NetConfig
from engines.store.store import ModelStore


@pytest.fixture(scope="module")
def source() -> MultiTaskNet:
    """A net source with a real fused ONNX graph (emotion head only: quick to export)."""
    return MultiTaskNet(NetConfig(heads=("emotion",)), ModelStore())


def test_registry_names_the_three_backends():
    assert BACKENDS == ("onnxruntime", "torch", "tensorrt")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tflite", r"unknown backend 'tflite'; valid backends: onnxruntime, torch, tensorrt"),
        ("torch", r"backend 'torch' is not available"),
        ("tensorrt", r"backend 'tensorrt' is not available"),
    ],
)
def test_unavailable_backends_raise_one_line(name, message, source):
    from engines.backends import unavailable_reason

    if name != "tflite" and unavailable_reason(name) is None:
        pytest.skip(f"{name} can run on this machine, so it cannot be unavailable here")
    with pytest.raises(BackendUnavailable, match=message) as err:
        create_backend(name, source)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("threads", "expected"), [(None, len(os.sched_getaffinity(0))), (1, 1)])
def test_onnxruntime_runs_the_fused_graph_with_named_outputs(threads, expected, source):
    backend = create_backend("onnxruntime", source, intra_op_threads=threads)
    assert isinstance(backend, Backend) and backend.name == "onnxruntime"
    assert backend.intra_op_threads == expected
    crops = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    out = backend.run(crops)
    assert {k: v.shape for k, v in out.items()} == {
        "emotion": (3, 7),
        "contempt": (3,),
        "embedding": (3, 128),
    }
    np.testing.assert_allclose(out["emotion"], source.infer(crops)["emotion"], atol=1e-6)


def test_multitasknet_reports_its_backend(source):
    assert source.backend_name == "onnxruntime"
    assert source.onnx_path.is_file()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
def test_usable_cpus_follow_the_affinity_mask_not_the_machine():
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})  # what a container's cpuset or `taskset -c 0` does
        assert usable_cpus() == 1
    finally:
        os.sched_setaffinity(0, before)
    assert usable_cpus() == len(before)


def test_usable_cpus_are_capped_by_a_distributed_workers_share(monkeypatch):
    """A Ray worker with num_cpus=1 sizes its threads for one CPU, not for the whole node."""
    from engines.backends.base import CPUS_ENV

    monkeypatch.delenv(CPUS_ENV, raising=False)
    machine = usable_cpus()
    monkeypatch.setenv(CPUS_ENV, "1")
    assert usable_cpus() == 1
    monkeypatch.setenv(CPUS_ENV, "4096")  # a cap above what the process may use changes nothing
    assert usable_cpus() == machine
    monkeypatch.setenv(CPUS_ENV, "many")  # not a count: ignored
    assert usable_cpus() == machine
