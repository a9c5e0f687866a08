"""The self-supervised jigsaw task: its tile orders, the shuffle on real faces, training with it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from engines.nets.mtl import INPUT_SIZE, MTLNet
from engines.training import export, train
from engines.training.augment import AugmentConfig, make_batch
from engines.training.jigsaw import GRID, N_PERMUTATIONS, permutations, shuffle_tiles


def test_orders_are_distinct_far_apart_and_start_with_the_identity():
    orders = permutations()
    assert orders.shape == (N_PERMUTATIONS, GRID * GRID)
    assert (orders[0] == np.arange(GRID * GRID)).all()
    assert all(sorted(o) == list(range(GRID * GRID)) for o in orders)
    hamming = (orders[:, None] != orders[None]).sum(-1)
    off_diagonal = hamming[~np.eye(len(orders), dtype=bool)]
    assert off_diagonal.min() >= 6  # any two orders differ in most tiles
    assert (permutations() == orders).all()  # fixed: a resumed run sees the same classes


@pytest.fixture
def faces(small_data):
    return make_batch(
        small_data.fer_train.images[:4], small_data.fer_train.base, AugmentConfig(), torch.Generator()
    )


def test_shuffle_moves_whole_tiles_as_numpy_slicing_does(faces):
    orders = torch.from_numpy(permutations()[[0, 5, 11, 23]])
    got = shuffle_tiles(faces, orders).numpy()
    side = INPUT_SIZE // GRID
    for n in range(len(faces)):
        for k, src in enumerate(orders[n].tolist()):
            (r, c), (sr, sc) = divmod(k, GRID), divmod(src, GRID)
            want = faces[n, :, sr * side : (sr + 1) * side, sc * side : (sc + 1) * side].numpy()
            np.testing.assert_array_equal(
                got[n, :, r * side : (r + 1) * side, c * side : (c + 1) * side], want
            )
    assert np.array_equal(got[0], faces[0].numpy())  # the identity order leaves the face alone
    assert not np.array_equal(got[1], faces[1].numpy())


def test_puzzle_loss_falls_when_trained_on_real_faces(small_data):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    args = train.parse_args(["--out", "unused", "--batch", "64", "--lr", "0.02", "--jigsaw", "1.0"])
    model, opt, sched, aux = train.build(args, small_data)
    assert aux is not None and aux.head.out_features == N_PERMUTATIONS
    sched.lr_lambdas = [lambda _: 1.0] * 2
    gen = torch.Generator().manual_seed(0)
    ids = np.concatenate([np.arange(32), len(small_data.fer_train.images) + np.arange(32)])
    weak = AugmentConfig(scale=0, shift=0, rotate_deg=0, brightness=0, contrast=0, erase_p=0)
    steps = [train.train_step(model, opt, sched, small_data, ids, weak, gen, aux) for _ in range(60)]
    puzzle = [step["jigsaw"] for step in steps]
    assert np.mean(puzzle[:10]) > 0.9 * np.log(N_PERMUTATIONS)  # chance at the start
    assert np.mean(puzzle[-10:]) < 0.75 * np.mean(puzzle[:10])  # measured: 3.26 -> 1.9


def test_cli_with_the_puzzle_resumes_and_releases_only_the_net(datasets, tmp_path):
    common = ["--data", str(datasets), "--out", str(tmp_path), "--limit", "48", "--batch", "16"]
    common += ["--threads", "1", "--max-steps", "2", "--jigsaw", "0.5"]
    assert train.main([*common, "--epochs", "1"]) == 0
    assert train.main([*common, "--epochs", "2", "--resume"]) == 0
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"] and float(rows[-1]["jigsaw"]) > 0
    assert set(torch.load(tmp_path / "last.pt", weights_only=False)["aux"]) == {"head.weight", "head.bias"}
    assert export.load_model(tmp_path / "final.pt").config == MTLNet().config  # strict load: no puzzle head
