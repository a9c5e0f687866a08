"""Backend benchmark: the workload, the phase split, the table, and a tiny real run on onnxruntime."""

from __future__ import annotations

import types

import numpy as np
import pytest

from engines.backends.device_crops import pyramid_level
from engines.bench import BenchRow, backend_label, face_matrices, markdown_table, run_bench, synthetic_frame
from engines.multitask import MultiTaskNet, NetConfig
from engines.store.store import ModelStore
from pipeline.cli import main as cli


@pytest.fixture(scope="module")
def net() -> MultiTaskNet:
    return MultiTaskNet(
        NetConfig(heads=("emotion",)), ModelStore(), backend="onnxruntime", intra_op_threads=1
    )


@pytest.mark.parametrize(("n", "size", "scale"), [(1, 128, 2.0), (32, 128, 2.0), (7, 96, 1.5)])
def test_workload_faces_are_inside_the_frame_and_need_the_first_pyramid_level(n, size, scale):
    mats = face_matrices(n, size, scale)
    assert mats.shape == (n, 2, 3) and mats.dtype == np.float32
    inverse = np.linalg.inv(np.concatenate([mats, np.tile([[[0, 0, 1]]], (n, 1, 1))], axis=1))
    centres = inverse[:, :2] @ np.array([size / 2, size / 2, 1.0])
    assert ((centres > 0) & (centres < [1920, 1080])).all()
    assert {pyramid_level(m) for m in mats} == {1 if size / scale / 160 < 0.5 else 0}


@pytest.mark.parametrize(
    ("row", "faces_per_s", "shares"),
    [
        (BenchRow("onnxruntime", 8, 1.0, 2.0, 1.0), 2000.0, (0.25, 0.5, 0.25)),
        (BenchRow("torch fp16", 32, 0.0, 4.0, 0.0), 8000.0, (0.0, 1.0, 0.0)),
        # slow phases in different runs: the median run took 5 ms, not the 4 ms the phase medians add to
        (BenchRow("onnxruntime", 10, 1.0, 2.0, 1.0, median_total_ms=5.0), 2000.0, (0.25, 0.5, 0.25)),
    ],
)
def test_rows_give_faces_per_second_and_phase_shares(row, faces_per_s, shares):
    assert row.faces_per_s == pytest.approx(faces_per_s)
    assert tuple(row.share(p) for p in ("pre", "infer", "post")) == pytest.approx(shares)


@pytest.mark.parametrize(
    ("backend_name", "precision", "label"),
    [
        ("onnxruntime", None, "onnxruntime"),
        ("torch", "fp16", "torch fp16"),
        ("tensorrt", "fp32", "tensorrt fp32"),
    ],
)
def test_rows_name_the_backend_that_ran_and_its_precision(backend_name, precision, label):
    backend = types.SimpleNamespace(name=backend_name, precision=precision)
    assert backend_label(types.SimpleNamespace(backend=backend, backend_name=backend_name)) == label


def test_the_table_has_one_line_per_backend_and_batch():
    rows = [BenchRow("onnxruntime", 1, 0.5, 1.5, 0.0), BenchRow("onnxruntime", 32, 3.0, 12.5, 0.5)]
    lines = markdown_table(rows).splitlines()
    assert lines[0] == "| backend | batch | faces/s | ms/batch | pre % | infer % | post % |"
    assert lines[2:] == [
        "| onnxruntime | 1 | 500 | 2.00 | 25 | 75 | 0 |",
        "| onnxruntime | 32 | 2,000 | 16.00 | 19 | 78 | 3 |",
    ]


def test_a_tiny_real_run_on_onnxruntime(net):
    rows = run_bench([net], batches=[1, 4], runs=2, image=synthetic_frame((640, 360)))
    assert [(r.backend, r.batch) for r in rows] == [("onnxruntime", 1), ("onnxruntime", 4)]
    for r in rows:
        assert r.pre_ms > 0 and r.infer_ms > 0 and r.post_ms >= 0 and r.faces_per_s > 0
        assert r.median_total_ms is not None and r.total_ms == r.median_total_ms
        assert sum(r.share(p) for p in ("pre", "infer", "post")) == pytest.approx(1.0)


@pytest.mark.parametrize(("batches", "runs"), [([], 1), ([0], 1), ([1], 0)])
def test_bad_settings_are_refused(net, batches, runs):
    with pytest.raises(ValueError, match="need runs >= 1 and batch sizes >= 1"):
        run_bench([net], batches, runs)


def test_the_bench_command_prints_the_table(capsys):
    argv = ["bench", "--backend", "onnxruntime", "--heads", "emotion", "--batches", "2", "--runs", "1"]
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("| onnxruntime | 2 | ")
