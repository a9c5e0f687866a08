"""Training on real faces (a few steps, resumable) and the ONNX export agreeing with torch."""

from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from engines.nets.mtl import MTLNet, preprocess
from engines.training import export, train
from engines.training.augment import AugmentConfig

ALLOWED_OPS = {
    "Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm", "MatMul", "Add", "Mul",
    "BatchNormalization", "Identity", "Constant", "Gather", "Squeeze", "Unsqueeze", "Reshape",
}  # fmt: skip


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Training steps on one thread: fast enough, and immune to a busy machine's thread contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_loss_falls_on_real_faces(small_data):
    torch.manual_seed(0)
    args = train.parse_args(["--out", "unused", "--batch", "64", "--lr", "0.02"])
    model, opt, sched, _ = train.build(args, small_data)
    sched.base_lrs = [0.02, 0.02]
    sched.lr_lambdas = [lambda _: 1.0] * 2
    gen = torch.Generator().manual_seed(0)
    ids = np.concatenate([np.arange(24), len(small_data.fer_train.images) + np.arange(24)])
    weak = AugmentConfig(scale=0, shift=0, rotate_deg=0, brightness=0, contrast=0, erase_p=0)
    losses = [train.train_step(model, opt, sched, small_data, ids, weak, gen)["loss"] for _ in range(20)]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.slow
def test_cli_trains_writes_metrics_and_resumes(datasets, tmp_path):
    common = [
        "--data",
        str(datasets),
        "--out",
        str(tmp_path),
        "--limit",
        "48",
        "--batch",
        "16",
        "--threads",
        "1",
    ]
    assert train.main([*common, "--epochs", "1", "--max-steps", "2"]) == 0
    assert (tmp_path / "last.pt").exists() and (tmp_path / "split.json").exists()
    assert train.main([*common, "--epochs", "2", "--max-steps", "2", "--resume"]) == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert 0 <= float(rows[-1]["fer_acc"]) <= 1 and float(rows[-1]["utk_age_mae"]) > 0
    assert export.load_model(tmp_path / "final.pt").config == MTLNet().config


def test_onnx_export_matches_torch_on_real_faces(small_data, tmp_path):
    torch.manual_seed(0)
    model = MTLNet()
    for m in model.modules():  # non-trivial BN statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    path = export.export_onnx(model, tmp_path / "mtl.onnx")
    x = preprocess(small_data.fer_val.images[:8].numpy())
    diffs = export.check_export(model, path, x, tol=1e-4)
    assert max(diffs.values()) < 1e-4
    got = export.ort_session(path).run(None, {"input": x[:3]})  # dynamic batch
    assert [g.shape[0] for g in got] == [3, 3, 3, 3]
    ops = Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    assert set(ops) <= ALLOWED_OPS, set(ops) - ALLOWED_OPS
    assert onnx.load(str(path)).opset_import[0].version == export.OPSET


@pytest.mark.slow
def test_same_command_same_weights_and_resume_equals_one_run(datasets, tmp_path, monkeypatch):
    """`train` is a pure function of its command (seed, data, threads): run twice it gives identical
    weights, and a run interrupted in epoch 2 and resumed gives the weights of an uninterrupted one. This
    is what lets one documented command reproduce the released weights."""
    common = ["--data", str(datasets), "--limit", "48", "--batch", "16", "--threads", "1", "--max-steps", "2"]
    common += ["--epochs", "2"]
    for out in ("a", "b"):
        assert train.main([*common, "--out", str(tmp_path / out)]) == 0
    real = train.run_epoch

    def killed_in_epoch_two(*args, **kwargs):
        if args[5] == 1:  # the epoch index
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "run_epoch", killed_in_epoch_two)
    assert train.main([*common, "--out", str(tmp_path / "c")]) == 130
    monkeypatch.setattr(train, "run_epoch", real)
    assert train.main([*common, "--out", str(tmp_path / "c"), "--resume"]) == 0
    weights = [torch.load(tmp_path / p / "final.pt", weights_only=True)["state_dict"] for p in "abc"]
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, rtol=0, atol=0, msg=name)
        torch.testing.assert_close(weights[2][name], value, rtol=0, atol=0, msg=name)
