"""tools/gray_vs_colour.py: the gray-or-colour measurement runs end to end on real UTKFace faces."""

from __future__ import annotations

import inspect
import json

import torch

from engines.training import train
from engines.training.data import load_data
from tools import gray_vs_colour


def test_it_uses_the_trainers_utk_split():
    assert train.parse_args(["--out", "x"]).seed == gray_vs_colour.SPLIT_SEED
    assert inspect.signature(load_data).parameters["val_fraction"].default == gray_vs_colour.VAL_FRACTION


def test_smoke_run_writes_every_arm_to_its_json(datasets, tmp_path):
    threads = torch.get_num_threads()
    try:
        argv = ["--data", str(datasets), "--out", str(tmp_path), "--limit", "120", "--epochs", "1"]
        assert gray_vs_colour.main([*argv, "--max-steps", "2", "--batch", "16"]) == 0
    finally:
        torch.set_num_threads(threads)
    arms = json.loads((tmp_path / "gray_vs_colour.json").read_text())["arms"]
    assert list(arms) == list(gray_vs_colour.ARMS)
    gray, colour = arms["gray"], arms["colour"]
    assert colour["first_conv_macs"] == 3 * gray["first_conv_macs"]
    assert colour["macs"] - gray["macs"] == 2 * gray["first_conv_macs"]
    for r in arms.values():
        assert r["n_val"] == 18 and r["n_train"] == 102 and r["age_mae"] > 0 and 0 <= r["gender_acc"] <= 1
    assert "on_gray_faces" in colour and "vs_gray" in colour and "vs_gray" not in gray
    low, high = colour["vs_gray"]["age_mae"][1:]
    assert low <= colour["vs_gray"]["age_mae"][0] <= high
