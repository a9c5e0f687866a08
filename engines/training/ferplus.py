"""FER+ reader: 48x48 gray faces with 10 crowd votes each, the majority protocol and soft targets.

Layout (Microsoft's FERPlus data/ folder): ``<root>/FER2013Train``, ``FER2013Valid`` and optionally
``FER2013Test``, each holding the PNGs and a ``label.csv`` whose rows are ``name, "(x, y, w, h)", 10 votes``
for neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF (no header row in
the release; a header is tolerated). `root` may be the ferplus folder or the datasets folder above it.
"""

from __future__ import annotations

import csv
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.errors import EmostreamError
from engines.training.paths import cache_key, load_cached, save_cached

SPLITS = {"train": "FER2013Train", "valid": "FER2013Valid", "test": "FER2013Test"}
N_EMOTIONS = 8
N_VOTES = 10
SIZE = 48


@dataclass
class FerPlusSplit:
    """One split: names (N,), images uint8 (N, 48, 48), raw votes int (N, 10)."""

    names: np.ndarray
    images: np.ndarray
    votes: np.ndarray

    def majority(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices kept by the majority protocol, their labels 0..7)."""
        return majority_labels(self.votes)

    def soft_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices whose cleaned-vote winner is an emotion, their (n, 8) renormalised vote distributions)."""
        return soft_targets(self.votes)


def clean_votes(votes: np.ndarray) -> np.ndarray:
    """FER+ outlier removal: a class with a single vote gets none (src/ferplus.py, _process_data)."""
    v = np.asarray(votes, dtype=np.float64).copy()
    v[v <= 1.0] = 0.0
    return v


def majority_labels(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep rows where one class has > half of the cleaned votes and it is an emotion (not unknown/NF)."""
    v = clean_votes(votes)
    top = v.argmax(axis=1)
    ok = (v.max(axis=1) > 0.5 * v.sum(axis=1)) & (top < N_EMOTIONS)
    idx = np.flatnonzero(ok)
    return idx, top[idx]


def soft_targets(votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose cleaned-vote argmax is an emotion, with the 8 emotion votes renormalised to sum 1."""
    v = clean_votes(votes)
    idx = np.flatnonzero((v.argmax(axis=1) < N_EMOTIONS) & (v[:, :N_EMOTIONS].sum(axis=1) > 0))
    t = v[idx, :N_EMOTIONS]
    return idx, (t / t.sum(axis=1, keepdims=True)).astype(np.float32)


def ferplus_dir(root: str | Path) -> Path:
    """`root` itself when it holds FER2013* folders, else `root`/ferplus."""
    root = Path(root)
    if any((root / name).is_dir() for name in SPLITS.values()):
        return root
    return root / "ferplus"


def read_labels(csv_path: Path) -> tuple[list[str], np.ndarray]:
    """(image names, (N, 10) int votes) from one label.csv; a non-numeric first row is a header."""
    names, votes = [], []
    with csv_path.open(newline="") as f:
        for i, row in enumerate(csv.reader(f)):
            if not row:
                continue
            if len(row) != 2 + N_VOTES:
                raise EmostreamError(f"{csv_path}: row {i + 1} has {len(row)} fields, expected {2 + N_VOTES}")
            try:
                counts = [int(float(c)) for c in row[2:]]
            except ValueError:
                if i == 0:
                    continue
                raise EmostreamError(f"{csv_path}: row {i + 1} has non-numeric votes") from None
            names.append(row[0].strip())
            votes.append(counts)
    return names, np.asarray(votes, dtype=np.int32).reshape(-1, N_VOTES)


def _decode(folder: Path, names: list[str]) -> np.ndarray:
    """Decode the named PNGs as (N, 48, 48) gray uint8, resizing any odd-sized one."""

    def one(name: str) -> np.ndarray:
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise EmostreamError(f"FER+ image missing or unreadable: {folder / name}")
        return (
            img if img.shape == (SIZE, SIZE) else cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        return np.stack(list(pool.map(one, names))) if names else np.zeros((0, SIZE, SIZE), np.uint8)


def read_split(root: str | Path, split: str, limit: int | None = None, cache: bool = True) -> FerPlusSplit:
    """Read one split ('train', 'valid', 'test'); the first `limit` rows only when given (not cached)."""
    folder = ferplus_dir(root) / SPLITS[split]
    if not folder.is_dir():
        raise EmostreamError(f"FER+ folder not found: {folder}")
    csv_path = folder / "label.csv"
    if not csv_path.is_file():
        raise EmostreamError(f"FER+ label file not found: {csv_path}")
    names, votes = read_labels(csv_path)
    if limit is not None:
        names, votes = names[:limit], votes[:limit]
        return FerPlusSplit(np.asarray(names), _decode(folder, names), votes)
    key = f"ferplus-{split}-{cache_key(folder, len(names), SIZE)}"
    hit = load_cached(key) if cache else None
    if hit is None:
        hit = {"names": np.asarray(names), "images": _decode(folder, names), "votes": votes}
        if cache:
            save_cached(key, hit)
    return FerPlusSplit(hit["names"], hit["images"], hit["votes"])
