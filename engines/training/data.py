"""The training and validation sets of the multi-task net, assembled from the FER+ and UTKFace readers.

FER+ train: every image whose cleaned-vote winner is an emotion, with its soft target (the vote
distribution); FER+ valid: the majority protocol (official). UTKFace: a fixed-seed split whose file-name
lists are kept (in the checkpoint and `split.json`) so evaluation reuses exactly the same faces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.training import ferplus, utkface
from engines.training.augment import FaceFrame

FER_BASE = FaceFrame(side=1.068, cx=0.493, cy=0.415)
UTK_BASE = FaceFrame(side=1.165, cx=0.487, cy=0.323)
"""Medians over 300 faces of each set (YuNet + the 5-point aligner; FER+ upscaled 4x with a replicated
border so the detector sees a whole face): the pipeline's face square is a little larger than both
datasets' images and sits high in them (the ArcFace template square holds much forehead)."""


@dataclass
class Source:
    """Whole images of one dataset as a uint8 tensor plus the face-square fraction they hold."""

    images: torch.Tensor
    base: FaceFrame


@dataclass
class TrainData:
    """Tensors for training (soft emotion targets; ages; P(man) targets) and validation."""

    fer_train: Source
    fer_soft: torch.Tensor
    fer_val: Source
    fer_val_labels: np.ndarray
    utk_train: Source
    utk_val: Source
    utk_train_age: torch.Tensor
    utk_train_man: torch.Tensor
    utk_val_age: np.ndarray
    utk_val_man: np.ndarray
    utk_split: dict[str, list[str]]


def _subsample(n: int, limit: int | None) -> np.ndarray:
    """All indices, or `limit` evenly spaced ones (for smoke tests)."""
    return np.arange(n) if limit is None or limit >= n else np.linspace(0, n - 1, limit).astype(np.int64)


def _utk_split(utk: utkface.UtkFace, split: dict[str, list[str]] | None, seed: int, val_fraction: float):
    """(train, val) indices: from the saved name lists when given, else the fixed-seed split."""
    if split is not None:
        return utkface.indices_of(utk.names, split["train"]), utkface.indices_of(utk.names, split["val"])
    return utkface.split_indices(utk.names, val_fraction, seed)


def load_data(
    root: Path, limit: int | None = None, split: dict[str, list[str]] | None = None,
    split_seed: int = 0, val_fraction: float = 0.15,
) -> TrainData:  # fmt: skip
    """Read (cached) both datasets; `limit` caps every set to that many faces (uncached reads)."""
    ftr = ferplus.read_split(root, "train", limit=limit)
    fva = ferplus.read_split(root, "valid", limit=limit)
    utk = utkface.read_utkface(root, limit=None if limit is None else 2 * limit)
    i_soft, soft = ftr.soft_targets()
    i_val, y_val = fva.majority()
    tr, va = _utk_split(utk, split, split_seed, val_fraction)
    if limit is not None and split is None:
        tr, va = tr[_subsample(len(tr), limit)], va[_subsample(len(va), limit)]
    man = 1 - utk.genders
    return TrainData(
        fer_train=Source(torch.from_numpy(ftr.images[i_soft]), FER_BASE),
        fer_soft=torch.from_numpy(soft),
        fer_val=Source(torch.from_numpy(fva.images[i_val]), FER_BASE),
        fer_val_labels=y_val,
        utk_train=Source(torch.from_numpy(utk.images[tr]), UTK_BASE),
        utk_val=Source(torch.from_numpy(utk.images[va]), UTK_BASE),
        utk_train_age=torch.from_numpy(utk.ages[tr].astype(np.float32)),
        utk_train_man=torch.from_numpy(man[tr].astype(np.float32)),
        utk_val_age=utk.ages[va],
        utk_val_man=man[va],
        utk_split={"train": utk.names[tr].tolist(), "val": utk.names[va].tolist()},
    )
