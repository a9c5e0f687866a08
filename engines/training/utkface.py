"""UTKFace reader: ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` 200x200 aligned & cropped faces, flat folder.

Gender 0 = male, 1 = female; race 0..4, missing in a few names (-1 here). Images are decoded once to gray
`STORE_SIZE` x `STORE_SIZE` (the whole 200 px image, INTER_AREA): the net's 48 px window (where it lies in
these images is `engines.training.data.UTK_BASE`, measured) is cut from it at about 1:1. `colour=True`
keeps BGR (N, S, S, 3) instead, for the gray-or-colour measurement (tools/gray_vs_colour.py); it is cached
under its own key. Malformed names are counted and reported (first few named), never fatal.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from engines.errors import EmostreamError
from engines.training.paths import cache_key, load_cached, save_cached

STORE_SIZE = 80
NAME_RE = re.compile(r"^(\d{1,3})_([01])_(?:([0-4])_)?(\d+)\.jpg\.chip\.jpg$")


@dataclass
class UtkFace:
    """names (N,), images uint8 (N, S, S) gray or (N, S, S, 3) BGR (S = STORE_SIZE), ages, genders (0 male),
    races (-1: none)."""

    names: np.ndarray
    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    races: np.ndarray
    malformed: list[str] = field(default_factory=list)

    def report(self) -> str:
        """One line: how many faces, and how many names were skipped as malformed (first 3 named)."""
        line = f"UTKFace: {len(self.names)} faces"
        if self.malformed:
            line += f", {len(self.malformed)} malformed names skipped (e.g. {', '.join(self.malformed[:3])})"
        return line


def parse_name(name: str) -> tuple[int, int, int] | None:
    """(age, gender, race or -1) from a UTKFace file name, None when it does not follow the pattern."""
    m = NAME_RE.match(name)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3)) if m.group(3) is not None else -1


def utk_dir(root: str | Path) -> Path:
    """`root`/utkface when it exists, else `root` itself."""
    root = Path(root)
    return root / "utkface" if (root / "utkface").is_dir() else root


def list_faces(folder: Path) -> tuple[list[str], list[tuple[int, int, int]], list[str]]:
    """(well-formed names sorted, their labels, malformed .jpg names) of the folder."""
    good, labels, bad = [], [], []
    for name in sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(".jpg")):
        parsed = parse_name(name)
        if parsed is None:
            bad.append(name)
        else:
            good.append(name)
            labels.append(parsed)
    return good, labels, bad


def _decode(folder: Path, names: list[str], colour: bool = False) -> np.ndarray:
    """Decode to (N, STORE_SIZE, STORE_SIZE) gray, or (..., 3) BGR, uint8 (JPEG reduced decoding, then
    INTER_AREA)."""
    flag = cv2.IMREAD_REDUCED_COLOR_2 if colour else cv2.IMREAD_REDUCED_GRAYSCALE_2

    def one(name: str) -> np.ndarray:
        img = cv2.imread(str(folder / name), flag)
        if img is None:
            raise EmostreamError(f"UTKFace image unreadable: {folder / name}")
        return cv2.resize(img, (STORE_SIZE, STORE_SIZE), interpolation=cv2.INTER_AREA)

    if not names:
        return np.zeros((0, STORE_SIZE, STORE_SIZE, 3) if colour else (0, STORE_SIZE, STORE_SIZE), np.uint8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        return np.stack(list(pool.map(one, names)))


def read_utkface(
    root: str | Path, limit: int | None = None, cache: bool = True, colour: bool = False
) -> UtkFace:
    """Read the folder (every `len // limit`-th well-formed face when `limit` is given, uncached); gray,
    or BGR when `colour`."""
    folder = utk_dir(root)
    if not folder.is_dir():
        raise EmostreamError(f"UTKFace folder not found: {folder}")
    names, labels, bad = list_faces(folder)
    if not names:
        raise EmostreamError(f"UTKFace folder has no AGE_GENDER_RACE_DATE.jpg.chip.jpg files: {folder}")
    if limit is not None:
        step = max(1, len(names) // limit)
        names, labels = names[::step][:limit], labels[::step][:limit]
    lab = np.asarray(labels, dtype=np.int32)
    key = f"utkface-{cache_key(folder, len(names) + len(bad), STORE_SIZE, 'bgr' if colour else 'gray')}"
    use_cache = cache and limit is None
    hit = load_cached(key) if use_cache else None
    if hit is None:
        hit = {"images": _decode(folder, names, colour)}
        if use_cache:
            save_cached(key, hit)
    return UtkFace(np.asarray(names), hit["images"], lab[:, 0], lab[:, 1], lab[:, 2], bad)


def split_indices(
    names: np.ndarray, val_fraction: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed (train, val) index split over the sorted names, so it does not depend on listing order."""
    order = np.argsort(names, kind="stable")
    perm = order[np.random.default_rng(seed).permutation(len(names))]
    n_val = round(len(names) * val_fraction)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def indices_of(names: np.ndarray, wanted: list[str] | np.ndarray) -> np.ndarray:
    """Indices of `wanted` names in `names` (to reuse a split saved as file-name lists)."""
    pos = {n: i for i, n in enumerate(names.tolist())}
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise EmostreamError(
            f"{len(missing)} split file names not in this UTKFace folder (e.g. {missing[0]})"
        )
    return np.asarray([pos[w] for w in wanted], dtype=np.int64)
