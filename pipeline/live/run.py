"""`emostream live`: camera, stream or paced file in; annotated picture out as it happens, never lagging.

Threads: capture -> [newest-wins mailbox] -> detect/track -> every frame -> render/display (this thread)
                                                          \\-> [newest-wins mailbox] -> infer/aggregate
A stage that falls behind makes frames drop (counted) instead of latency grow: the capture mailbox keeps
only the newest frame, the render queue is short and pushes back on tracking, and inference works on the
newest tracked frame while the overlay of the frames in between is carried by tracking and smoothing.
Accounting: frames captured == processed (shown) + dropped, always.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.frames import Frame, SourceInfo
from pipeline.io.capture import DEFAULT_MAX_PIXELS, DEFAULT_TIMEOUT_S
from pipeline.io.outlock import claimed_out_dir
from pipeline.io.urls import redact_urls
from pipeline.live.capture import Backoff, CaptureThread
from pipeline.live.outputs import LatencyLog, LiveOutputs
from pipeline.live.stages import POLL_S, DetectWorker, InferWorker, LatestOutputs
from pipeline.live.summary import build_summary, preview_state
from pipeline.live.window import WindowDisplay, has_display
from pipeline.runtime.mailbox import Mailbox
from pipeline.runtime.runner import END, Failure
from pipeline.runtime.signals import SignalGate, signals_deferred
from pipeline.runtime.threads import job_threads, live_infer_threads


@dataclass(frozen=True)
class LiveJob:
    """One live run. `source` (file or URL) or `camera` (index); outputs only when `out_dir` is set."""

    source: str | None = None
    camera: int | None = None
    out_dir: Path | None = None
    analyzer: AnalyzerConfig = field(default_factory=AnalyzerConfig)
    realtime: bool = False  # pace a file at its own frame rate, as a camera delivers
    max_seconds: float | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S  # opening and reading a network stream, FIFO or device
    max_pixels: int = DEFAULT_MAX_PIXELS  # a still's pixel budget
    serve: tuple[str, int] | None = None  # (host, port) of the preview page; port 0 picks a free one
    serve_token: str | None = None  # the preview's access token (None: random off loopback, none on it)
    serve_hosts: tuple[str, ...] = ()  # Host header names the preview accepts besides its own
    window: bool = False  # OpenCV window (needs a display)
    write_video: bool = True
    overwrite: bool = False
    backoff: Backoff = field(default_factory=Backoff)
    render_queue: int = 2  # tracked frames waiting to be drawn
    cv_threads: int | None = None  # OpenCV threads; None: pipeline.runtime.threads.detector_threads(live)

    @property
    def shown_as(self) -> str:
        """The source as shown and written anywhere: a URL without its credentials."""
        return f"camera:{self.camera}" if self.source is None else redact_urls(str(self.source))


CAPTURE_JOIN_S = 0.3
"""How long the end of a run waits for the capture thread: one stuck in a stalled network read is left
behind (a daemon thread, its source not closed under it) so a stop takes effect within a second."""


def live_analyzer(config: AnalyzerConfig) -> FaceAnalyzer:
    """A FaceAnalyzer for live mode: CPU inference on `live_infer_threads()` unless `config.threads` is set
    (measured on 2 cores, docs/benchmarks.md, Live mode: with inference on its own thread beside detection,
    one thread halves CPU use and cuts p95 latency; the default pool spin-waits and starves the detector)."""
    if config.threads is None:
        config = dataclasses.replace(config, threads=live_infer_threads())
    return FaceAnalyzer(config)


def open_live_source(job: LiveJob):
    """The job's source; a camera when no `source` is given."""
    from pipeline.io.capture import open_source

    if job.source is None:
        return open_source(job.camera if job.camera is not None else 0)
    return open_source(job.source, realtime=job.realtime, timeout_s=job.timeout_s, max_pixels=job.max_pixels)


def warm_up(analyzer: FaceAnalyzer, info: SourceInfo) -> None:
    """Run detector and network once on a blank picture so the first live frame pays no lazy setup.

    Uses the parts directly, never the tracker: tracker state must start from the first real frame.
    """
    blank = np.zeros((max(info.height, 16), max(info.width, 16), 3), np.uint8)
    analyzer.detector.detect(Frame(0, 0.0, blank))
    s = analyzer.net.crop_size
    analyzer.net.infer(np.zeros((1, s, s, 3), np.uint8))


def run_live(
    job: LiveJob,
    analyzer: FaceAnalyzer | None = None,
    on_ready=None,
    stop: threading.Event | None = None,
) -> dict:
    """Run `job` until the source ends, `max_seconds`, a quit key, `stop` or Ctrl-C; returns the summary.

    `analyzer` (optional) is used instead of `live_analyzer(job.analyzer)`, reset first; not closed here.
    `on_ready(preview_url_or_None)` is called once everything is set up, just before capture starts.
    `stop` (optional) ends the run from another thread, like the end of the source.
    """
    claim = claimed_out_dir(job.out_dir, job.overwrite) if job.out_dir is not None else nullcontext()
    with claim as out:
        source = open_live_source(job)
        own, holder = analyzer is None, {}
        try:
            with job_threads(source.info, job.cv_threads, live=True):
                t0 = time.perf_counter()
                if analyzer is None:
                    analyzer = live_analyzer(job.analyzer)
                else:
                    analyzer.reset()  # a reused analyzer: this run's time starts at 0 again
                warm_up(analyzer, source.info)
                setup_s = time.perf_counter() - t0
                with contextlib.ExitStack() as finishing:  # signals held from closing to summary.json
                    run = _run(job, source, analyzer, out, on_ready, stop, finishing, holder)
                    return build_summary(job, run, setup_s, out)
        finally:
            capture = holder.get("capture")
            if capture is None or not capture.is_alive():  # never close a source under a stuck read
                source.close()
            if own and analyzer is not None:
                analyzer.close()


def _run(job: LiveJob, source, analyzer, out: Path | None, on_ready, stop, finishing, holder) -> LiveRun:
    """Open the displays and writers, run, and close them (outputs stay valid on any exit)."""
    outputs = preview = window = None
    try:
        if job.serve is not None:
            from pipeline.live.preview import PreviewServer

            preview = PreviewServer(*job.serve, token=job.serve_token, allow_hosts=job.serve_hosts)
        if out is not None:
            outputs = LiveOutputs(out, source.info.fps, job.write_video)
        window = WindowDisplay(f"emostream live - {job.shown_as}") if job.window else None
        if on_ready:
            on_ready(preview.url if preview else None)
        run = LiveRun(job, source, analyzer, outputs, preview, window, stop)
        holder["capture"] = run.capture
        run.run()
        return run
    finally:
        finishing.enter_context(signals_deferred())
        with contextlib.ExitStack() as closing:  # each closes even if another raises; outputs last
            for part in (outputs, preview, window):
                if part is not None:
                    closing.callback(part.close)


class LiveRun:
    """The threads of one live run; `run()` renders and displays on the calling thread."""

    def __init__(self, job: LiveJob, source, analyzer, outputs, preview, window, stop=None) -> None:
        from pipeline.stages.render import Renderer

        self.job, self.source, self.analyzer = job, source, analyzer
        self.outputs, self.preview, self.window = outputs, preview, window
        self.renderer = Renderer()
        self.frames: Mailbox = Mailbox()
        self.infer_box: Mailbox = Mailbox()
        self.render_q: queue.Queue = queue.Queue(maxsize=job.render_queue)
        self.stop, self.abort = threading.Event(), threading.Event()
        self.external_stop = stop
        self.latest = LatestOutputs()
        reopen = (lambda: open_live_source(job)) if source.info.is_live else None
        self.capture = CaptureThread(source, self.frames, self.stop, reopen, backoff=job.backoff)
        self.detect = DetectWorker(analyzer, self.frames, self.infer_box, self.render_q, self.abort)
        self.infer = InferWorker(analyzer, self.infer_box, self.latest, self.abort)
        self.t0 = time.monotonic()
        self.log = LatencyLog(self.t0)
        self.gate = SignalGate()
        self.shown = self.faces = 0
        self.stop_reason, self.interrupted, self.wall_s = "end", False, 0.0

    def run(self) -> None:
        """Start the threads and draw until the end; Ctrl-C drains what is in flight, twice aborts."""
        self.t0 = self.log.t0_s = time.monotonic()
        for t in (self.capture, self.detect, self.infer):
            t.start()
        try:
            with self.gate:
                try:
                    self._loop()
                except KeyboardInterrupt:
                    self.interrupted, self.stop_reason = True, "interrupted"
                    self._request_stop()
                    try:
                        self._loop()
                    except KeyboardInterrupt:
                        self.abort.set()
        finally:
            self._request_stop()
            self.abort.set()
            for t in (self.detect, self.infer):
                t.join(timeout=5)
            self.capture.join(timeout=CAPTURE_JOIN_S)  # a read stuck on a stalled source is left behind
            self.wall_s = time.monotonic() - self.t0
        for t in (self.capture, self.detect, self.infer):
            if t.error is not None:
                raise t.error

    def _request_stop(self, reason: str | None = None) -> None:
        if reason and not self.stop.is_set():
            self.stop_reason = reason
        self.stop.set()
        self.frames.close()  # the capture thread may sit in a blocking read: end the hand-off now

    def _loop(self) -> None:
        while True:
            limit = self.job.max_seconds
            if limit is not None and time.monotonic() - self.t0 >= limit:
                self._request_stop("max_seconds")
            if self.external_stop is not None and self.external_stop.is_set():
                self._request_stop("stopped")
            try:
                item = self.render_q.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if self.infer.error is not None:
                raise self.infer.error
            if item is END:
                return
            if isinstance(item, Failure):
                raise item.error
            self._show(*item)

    def _show(self, frame: Frame, batch, tracked_at_s: float) -> None:
        """Dress the tracked faces with their newest outputs, draw, display, log, write."""
        known, unknown = self.latest.attach(batch)
        t = time.perf_counter()
        image = self.renderer.annotate(frame.image_bgr, known)
        if len(unknown):
            self.renderer.draw(image, unknown)  # onto the copy annotate just made
        render_s = time.perf_counter() - t
        if self.preview is not None:
            self.preview.publish(image, preview_state(self, frame, known, unknown))
        if self.window is not None and not self.window.show(image):
            self._request_stop("quit")
        with self.gate.held():  # handed to the writer and counted, or neither: a signal waits for both
            row = self.log.add(frame, tracked_at_s, render_s, time.monotonic())
            if self.outputs is not None:
                self.outputs.submit(frame, (known, unknown), image, row)
            self.shown += 1
            self.faces += len(batch)


__all__ = ["Backoff", "LiveJob", "LiveRun", "has_display", "live_analyzer", "run_live"]
