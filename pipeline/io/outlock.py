"""One run per output folder: an exclusive lock held from before the earlier outputs are checked until the
last file is written.

Two runs writing the same `--out` at once would interleave their faces.jsonl lines, truncate each other's
mp4 and leave a summary of one of them, and both would exit 0. The lock is `flock` on `.emostream.lock`
inside the folder (released by the kernel when the process dies, so a crashed run never blocks the next);
the file holds the owner's pid and command for the refusal message and is removed when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import OutputError

LOCK_NAME = ".emostream.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not guarded there
    fcntl = None


OUTPUT_NAMES = (
    *("faces.jsonl", "tracks.csv", "summary.json", "annotated.mp4", "timeline.png", "latency.csv"),
    *("annotated.jpg", "annotated.png", "emotions.png", "finished.json"),
)
"""Every file a run may write (photos get annotated.jpg/png and emotions.png; finished.json is the
batch's marker that an input's outputs are complete)."""


def prepare_out_dir(
    out_dir: Path, overwrite: bool, outputs: tuple[str, ...] = OUTPUT_NAMES, remove_earlier: bool = True
) -> Path:
    """Create `out_dir`; refuse to mix with an earlier run's `outputs` unless `overwrite`. With
    `remove_earlier` (run, live: a run may not write every file) the earlier ones go now; without it
    (score: each output is renamed over the earlier one) nothing is deleted."""
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"--out {out_dir}: exists and is not a folder")
        earlier = [n for n in outputs if (out_dir / n).exists()]
    except OSError as e:
        raise OutputError(f"--out {out_dir}: cannot be used ({e.strerror})") from None
    if earlier and not overwrite:
        raise OutputError(
            f"--out {out_dir} already holds {', '.join(earlier)} from an earlier run; "
            "choose another folder or pass --overwrite"
        )
    for name in earlier if remove_earlier else ():
        (out_dir / name).unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out_dir}: cannot create the folder ({e.strerror})") from None
    return out_dir


class OutDirLock:
    """An exclusive, non-blocking lock on folder `out_dir` (which must exist); `release()` ends it."""

    def __init__(self, out_dir: Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None
        if fcntl is None:
            return
        while True:  # the holder may unlink the file between our open and our lock: lock the file in place
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise OutputError(f"--out {out_dir}: cannot be used ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = _read_owner(fd)
                os.close(fd)
                raise OutputError(
                    f"--out {out_dir} is in use by another emostream run ({owner}); "
                    "wait for it to end or choose another folder"
                ) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            self.path.unlink()  # still under the lock: a waiting run then locks a fresh file
        os.close(fd)


def _read_owner(fd: int) -> str:
    try:
        text = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0] if text else "pid unknown"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@contextlib.contextmanager
def claimed_out_dir(
    out_dir: Path, overwrite: bool, outputs: tuple[str, ...] = OUTPUT_NAMES, remove_earlier: bool = True
) -> Iterator[Path]:
    """`prepare_out_dir` under the folder's lock, held until the block ends; a folder another run holds is
    refused with one line naming it and that run's pid."""
    out_dir = Path(out_dir)
    try:
        if out_dir.exists() and not out_dir.is_dir():
            raise OutputError(f"--out {out_dir}: exists and is not a folder")
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out_dir}: cannot create the folder ({e.strerror})") from None
    lock = OutDirLock(out_dir)
    try:
        yield prepare_out_dir(out_dir, overwrite, outputs, remove_earlier)
    finally:
        lock.release()
