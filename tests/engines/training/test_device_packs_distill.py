"""Training on a GPU and from transport packs, and distillation from a teacher: the packs give back the
exact arrays, the random stream is the same on every device, the teacher's loss behaves as a
distillation loss, and every bad input is one line."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from engines.errors import EmostreamError
from engines.nets.mtl import MTLNet
from engines.training import train
from engines.training.augment import AugmentConfig, make_batch
from engines.training.distill import Distiller, distill_loss, load_teacher
from engines.training.packs import _chunks, read_packs, write_packs


def _same(a, b) -> None:
    for name in ("fer_train", "fer_val", "utk_train", "utk_val"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images), name
        assert getattr(a, name).base == getattr(b, name).base
    for name in ("fer_soft", "utk_train_age", "utk_train_man"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("fer_val_labels", "utk_val_age", "utk_val_man"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.utk_split == b.utk_split


def test_packs_give_back_the_exact_arrays_in_several_chunks(small_data, tmp_path):
    manifest = write_packs(small_data, tmp_path / "p", max_bytes=64 << 10)
    chunks = [f for f in manifest["files"] if f["set"] == "utk_train"]
    assert len(chunks) > 1 and sum(f["count"] for f in chunks) == len(small_data.utk_train.images)
    _same(read_packs(tmp_path / "p"), small_data)


def test_damaged_or_missing_packs_are_one_line_errors(small_data, tmp_path):
    folder = tmp_path / "p"
    manifest = write_packs(small_data, folder)
    victim = folder / manifest["files"][0]["file"]
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    victim.write_bytes(bytes(blob))
    with pytest.raises(EmostreamError, match="damaged.*" + victim.name):
        read_packs(folder)
    victim.unlink()
    with pytest.raises(EmostreamError, match="missing " + victim.name):
        read_packs(folder)
    with pytest.raises(EmostreamError, match="no readable manifest"):
        read_packs(tmp_path / "nothing")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "manifest.json").write_text('{"files": [{"file": "x.npz"}]}')  # no sha256
    (tmp_path / "other" / "x.npz").write_bytes(b"x")
    with pytest.raises(EmostreamError, match="not packs written by write_packs"):
        read_packs(tmp_path / "other")


@pytest.mark.parametrize(
    ("sizes", "limit", "expected"),
    [
        ([3, 3, 3], 6, [(0, 2), (2, 3)]),
        ([3, 3, 3], 100, [(0, 3)]),
        ([10, 1], 5, [(0, 1), (1, 2)]),  # an image over the limit still gets a chunk of its own
        ([], 5, [(0, 0)]),
    ],
)
def test_chunks_stay_under_the_limit(sizes, limit, expected):
    assert _chunks([b"x" * n for n in sizes], limit) == expected


def _outputs(seed: int, n: int = 6) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return MTLNet().eval()(torch.randn(n, 1, 48, 48))


def test_distill_loss_is_zero_against_itself_and_grows_with_disagreement():
    same = _outputs(0)
    _, parts = distill_loss(same, same, n_fer=3)
    assert parts["kd_emotion"] == pytest.approx(0, abs=1e-6) and parts["kd_age"] == pytest.approx(0, abs=1e-6)
    total, parts = distill_loss(_outputs(0), _outputs(1), n_fer=3)
    assert parts["kd_emotion"] > 1e-4 and parts["kd_age"] > 1e-4 and total.item() > 0
    _, no_fer = distill_loss(_outputs(0), _outputs(1), n_fer=0)  # age and gender only on FER+ rows
    assert no_fer["kd_age"] == 0 and no_fer["kd_gender"] == 0


def test_teacher_is_frozen_and_bad_teacher_file_is_one_line(tmp_path):
    path = tmp_path / "final.pt"
    net = MTLNet((8, 8, 8, 8, 8), (1, 1, 1, 1, 1))
    torch.save({"state_dict": net.state_dict(), "config": net.config}, path)
    teacher = load_teacher(path)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    x = torch.randn(4, 1, 48, 48)
    student = MTLNet().train()
    loss, _ = Distiller(teacher, weight=2.0, temp=2.0).loss(student(x), x, n_fer=2)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")  # a torch file, but not a checkpoint
    with pytest.raises(EmostreamError, match="not a checkpoint written by train"):
        load_teacher(tmp_path / "tensor.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(EmostreamError, match=r"--teacher .*junk\.pt: not a checkpoint"):
        load_teacher(tmp_path / "junk.pt")


def test_train_from_packs_with_a_teacher(small_data, tmp_path):
    write_packs(small_data, tmp_path / "p")
    net = MTLNet((8, 8, 8, 8, 8), (1, 1, 1, 1, 1))
    torch.save({"state_dict": net.state_dict(), "config": net.config}, tmp_path / "t.pt")
    argv = ["--packs", str(tmp_path / "p"), "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert train.main([*argv, "--max-steps", "2", "--batch", "32", "--teacher", str(tmp_path / "t.pt")]) == 0
    with (tmp_path / "run" / "metrics.csv").open() as f:
        row = next(csv.DictReader(f))
    assert float(row["kd_emotion"]) > 0 and 0 <= float(row["fer_acc"]) <= 1
    assert json.loads((tmp_path / "run" / "split.json").read_text()) == small_data.utk_split
    final = torch.load(tmp_path / "run" / "final.pt", weights_only=False)
    assert all(v.device.type == "cpu" for v in final["state_dict"].values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
@pytest.mark.parametrize(("device", "message"), [("cuda", "sees no CUDA device"), ("gpu9", "--device gpu9")])
def test_unusable_device_is_one_line(tmp_path, capsys, device, message):
    assert train.main(["--packs", str(tmp_path), "--out", str(tmp_path / "r"), "--device", device]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def _images(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = np.random.default_rng(seed)
    return torch.from_numpy(g.integers(0, 256, (16, 80, 80), np.uint8)), torch.from_numpy(
        g.integers(0, 256, (8, 64, 64, 3), np.uint8)
    )


@pytest.mark.gpu
def test_augmented_batches_are_the_same_on_cuda_and_cpu():
    cfg = AugmentConfig(gray_p=0.5)
    for images in _images(0):
        cpu = make_batch(images, 1.1, cfg, torch.Generator().manual_seed(3))
        gpu = make_batch(images.cuda(), 1.1, cfg, torch.Generator().manual_seed(3))
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=0)


@pytest.mark.gpu
def test_one_training_step_on_cuda_matches_cpu():
    torch.manual_seed(0)
    cpu = MTLNet().train()
    gpu = MTLNet().train().cuda()
    gpu.load_state_dict(cpu.state_dict())
    cpu.drop.p = gpu.drop.p = 0.0
    x = make_batch(_images(1)[0], 1.1, AugmentConfig(), torch.Generator().manual_seed(0))
    for net, xx in ((cpu, x), (gpu, x.cuda())):
        net(xx)["emotion_logits"].logsumexp(1).mean().backward()
    for (name, a), b in zip(cpu.named_parameters(), gpu.parameters(), strict=True):
        if a.grad is None:  # the gender and age heads play no part in this loss
            assert b.grad is None, name
            continue
        torch.testing.assert_close(b.grad.cpu(), a.grad, atol=1e-3, rtol=1e-2, msg=name)
