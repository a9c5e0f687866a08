"""Where datasets are read from and where decoded arrays are cached (never inside the repository)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

CACHE_VERSION = 1


def datasets_dir(explicit: str | Path | None = None) -> Path | None:
    """`explicit`, else $EMOSTREAM_SHARED_DIR/datasets, else None (the caller decides what that means)."""
    if explicit is not None:
        return Path(explicit)
    shared = os.environ.get("EMOSTREAM_SHARED_DIR")
    return Path(shared) / "datasets" if shared else None


def cache_dir() -> Path:
    """~/.cache/emostream-train (created on demand)."""
    d = Path.home() / ".cache" / "emostream-train"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cache_key(folder: Path, n_files: int, *params: object) -> str:
    """A digest of the folder's absolute path, file count, mtime and the decode parameters."""
    st = folder.stat()
    text = f"v{CACHE_VERSION}|{folder.resolve()}|{n_files}|{st.st_mtime_ns}|{params}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_cached(name: str) -> dict[str, np.ndarray] | None:
    """The arrays saved under `name` in the cache, or None when absent or unreadable."""
    path = cache_dir() / f"{name}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError):
        return None


def save_cached(name: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` atomically (temp file + rename) so a killed run never leaves half a cache file."""
    path = cache_dir() / f"{name}.npz"
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
