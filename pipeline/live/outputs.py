"""What a live run records: per-frame latency (memory and latency.csv) and the same face outputs as `run`.

`LatencyLog` keeps, for every shown frame, when it was captured, how long tracking and drawing took and
its glass-to-glass latency (shown time minus `Frame.captured_at_s`). `LiveOutputs` writes faces.jsonl,
annotated.mp4 and latency.csv with the `pipeline.io.sinks` writers on its own thread; frames are handed
over with back-pressure, so every shown frame is written and a slow disk slows capture-side (frames are
dropped there, counted) rather than growing a queue.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from array import array
from collections import deque
from pathlib import Path

import numpy as np

from pipeline.errors import OutputError
from pipeline.frames import FaceBatch, Frame
from pipeline.io.sinks import JsonlSink, VideoSink
from pipeline.runtime.runner import END, Consumer, put
from pipeline.runtime.threads import encoder_threads

LATENCY_CSV = "latency.csv"
LATENCY_COLUMNS = ("frame", "time_s", "captured_s", "tracked_ms", "render_ms", "latency_ms")


def percentiles_ms(values_s, prefix: str = "") -> dict[str, float | None]:
    """p50 / p95 / max / mean in milliseconds of seconds `values_s` (None for an empty list)."""
    v = np.asarray(values_s, np.float64) * 1000.0
    if not len(v):
        return {f"{prefix}{k}": None for k in ("p50", "p95", "max", "mean")}
    stats = {"p50": np.percentile(v, 50), "p95": np.percentile(v, 95), "max": v.max(), "mean": v.mean()}
    return {f"{prefix}{k}": round(float(x), 2) for k, x in stats.items()}


class LatencyLog:
    """Per-frame timings of shown frames, and recent figures for a live status display (thread-confined:
    written and read by the render thread, read by the main thread once the run is over)."""

    def __init__(self, t0_s: float, recent: int = 48) -> None:
        self.t0_s = t0_s  # time.monotonic() the run started; captured_s is relative to it
        self.latency_s = array("d")  # 8 bytes a frame: a day at 30 fps is ~20 MB
        self.render_s = array("d")
        self._recent: deque[tuple[float, float]] = deque(maxlen=recent)  # (shown_at, latency)

    def add(self, frame: Frame, tracked_at_s: float, render_s: float, shown_at_s: float) -> tuple:
        """Record one shown frame; returns its latency.csv row."""
        captured = frame.captured_at_s if frame.captured_at_s is not None else shown_at_s
        latency = shown_at_s - captured
        self.latency_s.append(latency)
        self.render_s.append(render_s)
        self._recent.append((shown_at_s, latency))
        ms = lambda s: round(1000 * s, 2)  # noqa: E731
        return (frame.index, round(frame.time_s, 4), round(captured - self.t0_s, 4),
                ms(tracked_at_s - captured), ms(render_s), ms(latency))  # fmt: skip

    def recent(self) -> dict[str, float | None]:
        """Shown fps and latency p50/p95 over the last few frames (for the preview page)."""
        if len(self._recent) < 2:
            return {"fps": None, "latency_p50_ms": None, "latency_p95_ms": None}
        shown, lat = np.array(self._recent).T
        span = shown[-1] - shown[0]
        p = percentiles_ms(lat)
        fps = (len(shown) - 1) / span if span > 0 else None
        return {"fps": fps, "latency_p50_ms": p["p50"], "latency_p95_ms": p["p95"]}

    def summary(self) -> dict[str, float | None]:
        """Latency p50/p95/max/mean, and p50 of the first and last thirds (a growing backlog shows)."""
        third = len(self.latency_s) // 3
        first, last = self.latency_s[:third], self.latency_s[len(self.latency_s) - third :]
        return {
            **percentiles_ms(self.latency_s),
            "first_third_p50": percentiles_ms(first)["p50"],
            "last_third_p50": percentiles_ms(last)["p50"],
        }


class LiveOutputs:
    """faces.jsonl, annotated.mp4 (optional) and latency.csv of one live run, written on their own thread."""

    def __init__(self, out_dir: Path, fps: float, write_video: bool = True, queue_size: int = 4) -> None:
        self.out_dir, self.fps, self.write_video = Path(out_dir), fps, write_video
        self.jsonl = JsonlSink(self.out_dir / "faces.jsonl")
        self.video: VideoSink | None = None
        self._csv_path = self.out_dir / LATENCY_CSV
        with self._named(self._csv_path):
            self._csv = open(self._csv_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in close())
            self._csv.write(",".join(LATENCY_COLUMNS) + "\n")
        self.threads = encoder_threads()
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._writer = Consumer(self._write, self._q, "write")
        self._writer.start()

    def submit(self, frame: Frame, batches: tuple[FaceBatch, ...], image_bgr, row: tuple) -> None:
        """Hand one shown frame to the writer thread (waits while its queue is full)."""
        if self._writer.error is not None:
            raise self._writer.error
        put(self._q, (frame, batches, image_bgr, row), self._stop)

    def _write(self, item) -> None:
        frame, batches, image_bgr, row = item
        for batch in batches:
            self.jsonl.write(batch)
        with self._named(self._csv_path):
            self._csv.write(",".join(str(v) for v in row) + "\n")
            self._csv.flush()
        if self.write_video:
            if self.video is None:
                self.video = VideoSink(
                    self.out_dir / "annotated.mp4", frame.size_wh, self.fps, threads=self.threads
                )
            self.video.write(image_bgr, frame.time_s)

    @staticmethod
    @contextlib.contextmanager
    def _named(path: Path):
        try:
            yield
        except OSError as e:
            raise OutputError(f"{path}: cannot be written ({e.strerror or e})") from None

    def close(self) -> None:
        """Write what was handed over, then close every file (the mp4 is finalised)."""
        put(self._q, END, self._stop)
        self._writer.join()
        self._stop.set()
        try:
            self.jsonl.close()
            with contextlib.suppress(OSError):  # its lines were flushed one by one; a failure was raised then
                self._csv.close()
            if self.video is not None:
                self.video.close()
        finally:
            if self._writer.error is not None:
                raise self._writer.error

    @property
    def counts(self) -> dict[str, int]:
        return {"faces.jsonl": self.jsonl.lines, "annotated.mp4": self.video.frames if self.video else 0}
