"""The one way this project writes a file that others read: to a temporary name beside it, then renamed.

A crash, a full disk or Ctrl-C leaves the old file or none, never half a file, and the temporary file
is removed on any failure; the error then names the file that was being written, not the temporary one.
Files are made 0644 (mkstemp makes 0600; caches and outputs are shared).
Used by every output, cache entry, exported graph, engine and download (pipeline/ imports it too).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "", fsync: bool = False) -> Iterator[Path]:
    """A fresh temporary path beside `path` to write to; renamed over `path` when the block ends
    without an exception (synced to disk first when `fsync`), removed otherwise. `suffix` keeps an
    extension that a writer reads the format from (".png" for matplotlib)."""
    path = Path(path)
    with _named(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=f".tmp{suffix}")
        os.close(fd)
    tmp = Path(name)
    try:
        with _named(path):
            yield tmp
            if fsync:
                _fsync(tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_atomic(path: str | os.PathLike, data: str | bytes, *, fsync: bool = False) -> None:
    """Write all of `data` (text as UTF-8) to `path` atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(raw)


@contextlib.contextmanager
def _named(path: Path) -> Iterator[None]:
    """An OSError on the temporary file (a full disk) re-raised naming the file it was for."""
    try:
        yield
    except OSError as e:
        if e.filename is None or Path(e.filename).name.startswith(f".{path.name}-"):
            raise OSError(e.errno, e.strerror or str(e), str(path)) from None
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
