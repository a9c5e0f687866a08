"""The `Source` base class every frame source builds on: iterate once into `Frame`s, pace to their
times if `realtime`, `close()` from any thread. Concrete sources: `pipeline.io.capture` (images, and
`open_source`), `pipeline.io.video_source` (files and streams), `pipeline.io.camera` (cameras)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np

from pipeline.frames import Frame, SourceInfo

DEFAULT_FPS = 30.0  # assumed when a stream declares no rate (only used to time frames without pts)


class Source:
    """An iterable of `Frame`s with `.info`; iterate once, then `close()` (or use `with`)."""

    info: SourceInfo

    def __init__(self, info: SourceInfo, realtime: bool = False) -> None:
        self.info = info
        self.realtime = realtime
        self.frames_read = 0  # frames delivered so far
        self.decode_errors = 0  # packets or reads that failed (a broken tail counts here)
        self.last_error = ""  # the last decode problem, for the caller's report
        self._iterator: Iterator[Frame] | None = None
        self._closed = False
        self._lock = threading.Lock()  # one decode step at a time; close() from any thread waits for it

    def __iter__(self) -> Iterator[Frame]:
        if self._iterator is None:
            self._iterator = self._paced()
        return self._iterator

    def _paced(self) -> Iterator[Frame]:
        """Wrap the raw (time_s, image) pairs into Frames, sleeping to their times if `realtime`."""
        start: float | None = None
        for time_s, image_bgr in self._images():
            if self.realtime:
                now = time.monotonic()
                start = now - time_s if start is None else start
                if (delay := start + time_s - now) > 0:
                    time.sleep(delay)
            frame = Frame(self.frames_read, time_s, image_bgr, self.info, captured_at_s=time.monotonic())
            self.frames_read += 1
            yield frame

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        raise NotImplementedError

    def _next_image(self, step):
        """Run one decode/read step unless the source was closed (then None)."""
        with self._lock:
            return None if self._closed else step()

    def close(self) -> None:
        """Release the file, stream or device (safe to call twice, from any thread)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        """Free what the source holds (called once, under the lock)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
