"""`emostream run`: a video or image in; per-face JSONL, per-track CSV, summary, annotated video, plot out."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.frames import FaceBatch, Frame
from pipeline.io.outlock import claimed_out_dir
from pipeline.io.sinks import JsonlSink, VideoSink
from pipeline.io.summary import analyzer_facts, machine_facts, timeline_due, write_end_files
from pipeline.runtime.runner import RunStats, run_offline
from pipeline.runtime.signals import signals_deferred
from pipeline.runtime.threads import encoder_threads, job_threads
from pipeline.runtime.timing import StageTimer

EXIT_PARTIAL_INPUT = 3
"""Exit code when the input was only partly readable: what decoded was processed, the rest was lost."""


@dataclasses.dataclass(frozen=True)
class OfflineJob:
    input: str
    out_dir: Path
    analyzer: AnalyzerConfig = dataclasses.field(default_factory=AnalyzerConfig)
    write_video: bool = True
    overwrite: bool = False
    batch_frames: int = 4


class _Outputs:
    """The writers of one run; `emit` runs on the main thread, `encode` on the encoder thread."""

    def __init__(self, job: OfflineJob, fps: float, timer: StageTimer) -> None:
        from pipeline.stages.render import Renderer

        self.out, self.fps, self.timer = job.out_dir, fps, timer
        self.jsonl = JsonlSink(job.out_dir / "faces.jsonl")
        self.renderer = Renderer() if job.write_video else None
        self.video: VideoSink | None = None
        self.threads = encoder_threads()

    def emit(self, frame: Frame, batch: FaceBatch) -> None:
        with self.timer("write"):
            self.jsonl.write(batch)

    def encode(self, item: tuple[Frame, FaceBatch]) -> None:
        frame, batch = item
        with self.timer("render"):
            img = self.renderer.annotate(frame.image_bgr, batch)
        with self.timer("encode"):
            if self.video is None:
                self.video = VideoSink(
                    self.out / "annotated.mp4", frame.size_wh, self.fps, threads=self.threads
                )
            self.video.write(img, frame.time_s)

    def close(self) -> None:
        try:
            self.jsonl.close()
        finally:
            if self.video is not None:
                self.video.close()


def run_job(job: OfflineJob, on_frame: Callable[[Frame, FaceBatch], None] | None = None) -> dict:
    """Process `job.input` into `job.out_dir`; returns the summary (also written as summary.json).

    The folder is locked for the whole job (a second run into it is refused); the end-of-run files are
    written with Ctrl-C/SIGTERM held back, so an interrupt then costs nothing already processed.
    """
    from pipeline.io.capture import open_source

    with claimed_out_dir(job.out_dir, job.overwrite) as out:
        timer = StageTimer()
        source = open_source(job.input)
        analyzer = outputs = None
        try:
            with job_threads(source.info):
                t0 = time.perf_counter()
                analyzer = FaceAnalyzer(job.analyzer, timer=timer)
                setup_s = time.perf_counter() - t0
                outputs = _Outputs(dataclasses.replace(job, out_dir=out), source.info.fps, timer)

                def emit(frame: Frame, batch: FaceBatch) -> None:
                    outputs.emit(frame, batch)
                    if on_frame:
                        on_frame(frame, batch)

                stats = run_offline(
                    source,
                    analyzer.process,
                    emit,
                    outputs.encode if job.write_video else None,
                    batch_frames=job.batch_frames,
                    timer=timer,
                )
        except BaseException:
            _close(outputs, source, analyzer)
            raise
        with signals_deferred():
            _close(outputs, source, analyzer)
            return _finish(job, out, source, analyzer, stats, setup_s, outputs)


def _close(outputs: _Outputs | None, source, analyzer: FaceAnalyzer | None) -> None:
    """Close the writers (the mp4 is finalised), the source and the analyzer, each even if another fails."""
    try:
        if outputs is not None:
            outputs.close()
    finally:
        try:
            source.close()
        finally:
            if analyzer is not None:
                analyzer.close()  # detector and backend: _finish still reads the aggregator and net facts


def _finish(job, out: Path, source, analyzer: FaceAnalyzer, stats: RunStats, setup_s: float, outputs) -> dict:
    """tracks.csv, summary.json and timeline.png, in that order, once the frames are done (or interrupted)."""
    tracks = analyzer.aggregator.track_summaries()
    summary = {
        "input": {
            **dataclasses.asdict(source.info),
            "frames_read": getattr(source, "frames_read", stats.frames),
            "decode_errors": getattr(source, "decode_errors", 0),
            "last_error": getattr(source, "last_error", None),
        },
        **analyzer_facts(analyzer),
        "frames_processed": stats.frames,
        "faces": stats.faces,
        "tracks": len(tracks),
        "interrupted": stats.interrupted,
        "clip_emotion": analyzer.aggregator.clip_distribution(),
        "timings": {
            "setup_s": round(setup_s, 3),
            "wall_s": round(stats.wall_s, 3),
            "end_to_end_fps": round(stats.fps, 2),
            "stages": stats.timings,
        },
        "outputs": {
            "faces.jsonl": outputs.jsonl.lines,
            "tracks.csv": len(tracks),
            "annotated.mp4": outputs.video.frames if outputs.video else 0,
            "timeline.png": timeline_due(tracks),
        },
        "machine": machine_facts(),
    }
    write_end_files(out, tracks, job.input, summary)
    return summary
