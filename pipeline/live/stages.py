"""Live stage threads: detect/track and infer/aggregate, and the per-track outputs they share.

Each stateful part of a `FaceAnalyzer` lives on exactly one thread: the detector and tracker on the
detect thread (`analyzer.locate`), the network and aggregator on the infer thread (`analyzer.infer`,
`analyzer.aggregate`). The detect thread sends every tracked frame on to rendering and offers it to the
infer thread through a newest-wins mailbox; the infer thread publishes each track's newest outputs in a
`LatestOutputs`, from which the render stage dresses every frame, inferred or not.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from pipeline.frames import UNTRACKED, FaceBatch, Frame
from pipeline.runtime.mailbox import Mailbox
from pipeline.runtime.runner import END, Failure, put

POLL_S = 0.05
"""How often a waiting stage looks at its abort flag."""


class LatestOutputs:
    """Each track's newest inference outputs (one row per head), shared by the infer and render threads.

    Rows are replaced whole under a lock, so a reader never sees half of an update. Tracks not updated
    for `keep_s` seconds of media time are forgotten (memory stays flat on long runs).
    """

    def __init__(self, keep_s: float = 5.0) -> None:
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self._rows: dict[int, tuple[float, dict[str, np.ndarray]]] = {}

    def publish(self, batch: FaceBatch) -> None:
        """Remember the outputs of every tracked face of an inferred batch."""
        with self._lock:
            for i, tid in enumerate(batch.track_ids.tolist()):
                if tid != UNTRACKED:
                    self._rows[tid] = (batch.time_s, {k: v[i] for k, v in batch.outputs.items()})
            old = [t for t, (ts, _) in self._rows.items() if ts < batch.time_s - self.keep_s]
            for tid in old:
                del self._rows[tid]

    def attach(self, batch: FaceBatch) -> tuple[FaceBatch, FaceBatch]:
        """(faces with known outputs, dressed with them; faces no inference has reached yet)."""
        with self._lock:
            rows = [self._rows.get(t, (0.0, None))[1] for t in batch.track_ids.tolist()]
        known = np.array([r is not None for r in rows], bool)
        keys = set.intersection(*(set(r) for r in rows if r is not None)) if known.any() else set()
        dressed = batch.select(known)
        if keys:
            picked = [r for r in rows if r is not None]
            dressed = dressed.with_outputs(**{k: np.stack([r[k] for r in picked]) for k in sorted(keys)})
        return dressed, batch.select(~known)


class _Worker(threading.Thread):
    """A stage thread that keeps the first error it hits for the main thread to raise."""

    def __init__(self, name: str) -> None:
        super().__init__(name=f"emostream-{name}", daemon=True)
        self.error: BaseException | None = None


class DetectWorker(_Worker):
    """frames mailbox -> `analyzer.locate` -> every frame to `render_q`, newest to the infer mailbox.

    Puts on `render_q` block (back-pressure reaches the frames mailbox, where frames are then dropped
    and counted); `abort` ends the thread without draining. Items on `render_q` are
    (frame, tracked batch, tracked_at_s), then `END` (after a `Failure` if the stage failed).
    """

    def __init__(self, analyzer, frames: Mailbox, infer_box: Mailbox, render_q: queue.Queue, abort) -> None:
        super().__init__("detect")
        self.analyzer, self.frames, self.infer_box = analyzer, frames, infer_box
        self.render_q, self.abort = render_q, abort

    def run(self) -> None:
        try:
            while not self.abort.is_set():
                frame = self.frames.get(timeout=POLL_S)
                if frame is END:
                    break
                if frame is not None:
                    self._step(frame)
        except BaseException as e:  # carried to the main thread
            self.error = e
            put(self.render_q, Failure(e), self.abort)
        finally:
            self.infer_box.close()
            put(self.render_q, END, self.abort)

    def _step(self, frame: Frame) -> None:
        batch = self.analyzer.locate(frame)
        if len(batch):
            self.infer_box.put((frame, batch))
        put(self.render_q, (frame, batch, time.monotonic()), self.abort)


class InferWorker(_Worker):
    """infer mailbox -> crops + network + aggregator -> `LatestOutputs`; counts the frames it inferred."""

    def __init__(self, analyzer, infer_box: Mailbox, latest: LatestOutputs, abort) -> None:
        super().__init__("infer")
        self.analyzer, self.infer_box, self.latest, self.abort = analyzer, infer_box, latest, abort
        self.inferred = 0

    def run(self) -> None:
        try:
            while not self.abort.is_set():
                item = self.infer_box.get(timeout=POLL_S)
                if item is END:
                    break
                if item is not None:
                    self._step(*item)
        except BaseException as e:  # raised by the main thread
            self.error = e

    def _step(self, frame: Frame, batch: FaceBatch) -> None:
        (inferred,) = self.analyzer.infer([frame], [batch])
        self.latest.publish(self.analyzer.aggregate(inferred))
        self.inferred += 1
