"""How many threads each stage gets, from the CPUs this process may use (`usable_cpus`).

The rules were measured on 2 cores (docs/benchmarks.md) and are kept there exactly; on more cores each
stage grows with the machine instead of leaving most cores idle:

| stage | 2 cores (measured) | n cores |
|---|---|---|
| OpenCV (detector), `run`, 720p and up | 1 (decoding and encoding need the other) | n - 1, at most 8 |
| OpenCV (detector), `run`, smaller | 2 | n, at most 8 |
| OpenCV (detector), `live` | 2 | n // 2 + 1, at most 8 |
| onnxruntime, `live` (beside detection) | 1 | n // 2, at most 8 |
| x264 encoder (annotated.mp4) | 2 | n // 2, 2 to 8 |

OpenCV's thread count is process-wide: `job_threads` sets it for one job and restores it after, so
importing or calling the library leaves the caller's setting as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engines.backends.base import usable_cpus

MAX_STAGE_THREADS = 8
"""Past this a stage gains little (the detector runs at <= 640 px, the net on a few faces per call)."""

LARGE_FRAME_PIXELS = 1280 * 720


def _cpus(cpus: int | None) -> int:
    return max(1, cpus if cpus is not None else usable_cpus())


def detector_threads(width: int, height: int, cpus: int | None = None, *, live: bool = False) -> int:
    """OpenCV threads for the detector on frames of `width` x `height` (see the table above)."""
    n = _cpus(cpus)
    if live:
        return min(MAX_STAGE_THREADS, max(1, n // 2 + 1), n)
    if width * height >= LARGE_FRAME_PIXELS:
        return min(MAX_STAGE_THREADS, max(1, n - 1))
    return min(MAX_STAGE_THREADS, n)


def live_infer_threads(cpus: int | None = None) -> int:
    """onnxruntime threads for live inference, which runs beside detection on its own thread."""
    return min(MAX_STAGE_THREADS, max(1, _cpus(cpus) // 2))


def encoder_threads(cpus: int | None = None) -> int:
    """x264 threads for annotated.mp4 (x264's own default, 1.5 per core, starved the other stages)."""
    return min(MAX_STAGE_THREADS, max(2, _cpus(cpus) // 2))


@contextlib.contextmanager
def job_threads(info, cv_threads: int | None = None, *, live: bool = False) -> Iterator[int]:
    """OpenCV on `cv_threads` (default: `detector_threads` for the source `info`) for the block; the
    previous count is restored after. Yields the count used."""
    import cv2

    threads = cv_threads or detector_threads(info.width, info.height, live=live)
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield threads
    finally:
        cv2.setNumThreads(before)
