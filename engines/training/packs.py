"""Transport packs of the training data, for a machine that holds no dataset folder (a GPU machine that
takes a bounded upload per call): `train --packs DIR` reads them instead of `--data`.

`write_packs` stores every decoded image of the four sets losslessly as WebP (about 70 % of the raw
bytes for these faces) in npz chunk files of bounded size, the labels and the UTKFace split in
`labels.npz`, and a `manifest.json` with each file's sha256; `read_packs` checks and decodes them back to
the exact arrays `load_data` gave. Packs are built from the datasets: like any array made from them they
stay outside the repository (git-ignored folders), and are never committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from engines.errors import EmostreamError
from engines.store.hashes import sha256_file
from engines.training.data import FER_BASE, UTK_BASE, Source, TrainData

SETS = {"fer_train": FER_BASE, "fer_val": FER_BASE, "utk_val": UTK_BASE, "utk_train": UTK_BASE}
LABELS = ("fer_soft", "fer_val_labels", "utk_train_age", "utk_train_man", "utk_val_age", "utk_val_man")


def encode_images(images: np.ndarray) -> list[bytes]:
    """uint8 (N, H, W) gray or (N, H, W, 3) images -> lossless WebP bytes, one per image."""
    params = [cv2.IMWRITE_WEBP_QUALITY, 101]  # above 100: lossless
    return [cv2.imencode(".webp", img, params)[1].tobytes() for img in images]


def decode_images(blob: np.ndarray, offsets: np.ndarray, channels: int) -> np.ndarray:
    """The inverse of `encode_images` over one chunk (bytes concatenated, `offsets` of length N + 1).
    WebP has no gray mode (a gray image comes back as 3 equal channels): `channels` 1 keeps one."""
    out = [
        cv2.imdecode(blob[offsets[i] : offsets[i + 1]], cv2.IMREAD_UNCHANGED) for i in range(len(offsets) - 1)
    ]
    return np.stack([img[:, :, 0] if channels == 1 and img.ndim == 3 else img for img in out])


def _chunks(encoded: list[bytes], max_bytes: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of consecutive images whose bytes stay under `max_bytes` (one image at least)."""
    ranges, start, size = [], 0, 0
    for i, b in enumerate(encoded):
        if size and size + len(b) > max_bytes:
            ranges.append((start, i))
            start, size = i, 0
        size += len(b)
    ranges.append((start, len(encoded)))
    return ranges


def _write_set(name: str, images: np.ndarray, folder: Path, max_bytes: int) -> list[dict]:
    """Chunk files of one set; returns their manifest entries."""
    encoded = encode_images(images)
    entries = []
    for k, (a, b) in enumerate(_chunks(encoded, max_bytes)):
        offsets = np.cumsum([0] + [len(x) for x in encoded[a:b]]).astype(np.int64)
        blob = np.frombuffer(b"".join(encoded[a:b]), np.uint8)
        path = folder / f"{name}-{k:02d}.npz"
        np.savez(path, blob=blob, offsets=offsets)
        size = path.stat().st_size
        channels = 1 if images.ndim == 3 else images.shape[3]
        entries.append({"file": path.name, "set": name, "first": a, "count": b - a, "bytes": size,
                        "channels": channels})  # fmt: skip
    return entries


def write_packs(data: TrainData, folder: Path, max_bytes: int = 24 << 20) -> dict:
    """Write the packs of `data` into `folder` (created); returns the manifest (also written)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name in SETS:
        files += _write_set(name, getattr(data, name).images.numpy(), folder, max_bytes)
    labels = {k: np.asarray(getattr(data, k)) for k in LABELS}
    split = {f"split_{k}": np.asarray(v, dtype=str) for k, v in data.utk_split.items()}
    np.savez_compressed(folder / "labels.npz", **labels, **split)
    files.append({"file": "labels.npz", "set": "labels", "bytes": (folder / "labels.npz").stat().st_size})
    for f in files:
        f["sha256"] = sha256_file(folder / f["file"])
    manifest = {"format": 1, "files": files}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _checked(folder: Path, manifest: dict) -> None:
    """Every listed file present with its recorded sha256, else one error naming what is wrong."""
    missing = [f["file"] for f in manifest["files"] if not (folder / f["file"]).is_file()]
    if missing:
        raise EmostreamError(f"packs in {folder}: missing {', '.join(missing)}")
    bad = [f["file"] for f in manifest["files"] if sha256_file(folder / f["file"]) != f["sha256"]]
    if bad:
        raise EmostreamError(f"packs in {folder}: damaged (sha256 differs) {', '.join(bad)}")


def read_packs(folder: Path) -> TrainData:
    """The TrainData written by `write_packs` into `folder`, checked against its manifest."""
    try:
        manifest = json.loads((Path(folder) / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise EmostreamError(f"--packs {folder}: no readable manifest.json ({e})") from None
    try:
        return _decoded(Path(folder), manifest)
    except (KeyError, TypeError, ValueError) as e:  # a manifest or label file of another layout
        raise EmostreamError(f"--packs {folder}: not packs written by write_packs ({e!r})") from None


def _decoded(folder: Path, manifest: dict) -> TrainData:
    """Check the files against `manifest`, then decode every set and the labels."""
    _checked(folder, manifest)
    images: dict[str, list[np.ndarray]] = {name: [] for name in SETS}
    for f in sorted((f for f in manifest["files"] if f["set"] in SETS), key=lambda f: f["first"]):
        with np.load(Path(folder) / f["file"]) as z:
            images[f["set"]].append(decode_images(z["blob"], z["offsets"], f["channels"]))
    with np.load(Path(folder) / "labels.npz") as z:
        lab = {k: z[k] for k in z.files}
    src = {name: Source(torch.from_numpy(np.concatenate(v)), SETS[name]) for name, v in images.items()}
    t = torch.from_numpy
    return TrainData(
        fer_train=src["fer_train"], fer_soft=t(lab["fer_soft"]), fer_val=src["fer_val"],
        fer_val_labels=lab["fer_val_labels"], utk_train=src["utk_train"], utk_val=src["utk_val"],
        utk_train_age=t(lab["utk_train_age"]), utk_train_man=t(lab["utk_train_man"]),
        utk_val_age=lab["utk_val_age"], utk_val_man=lab["utk_val_man"],
        utk_split={"train": lab["split_train"].tolist(), "val": lab["split_val"].tolist()},
    )  # fmt: skip
