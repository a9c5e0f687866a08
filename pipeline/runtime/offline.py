"""`emostream run`: a video or image in; per-face JSONL, per-track CSV, summary, annotated video, plot out."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.frames import FaceBatch, Frame
from pipeline.io.capture import DEFAULT_MAX_PIXELS, DEFAULT_TIMEOUT_S, open_source
from pipeline.io.outlock import claimed_out_dir
from pipeline.io.sinks import JsonlSink, VideoSink
from pipeline.io.stills import still_output_name, write_still
from pipeline.io.summary import analyzer_facts, machine_facts, planned_plot, write_end_files
from pipeline.runtime.runner import RunStats, run_offline
from pipeline.runtime.signals import signals_deferred
from pipeline.runtime.threads import encoder_threads, job_threads
from pipeline.runtime.timing import StageTimer
from pipeline.stages.shots import with_cuts

EXIT_PARTIAL_INPUT = 3
"""Exit code when the input was only partly readable: what decoded was processed, the rest was lost."""


@dataclasses.dataclass(frozen=True)
class OfflineJob:
    input: str
    out_dir: Path
    analyzer: AnalyzerConfig = dataclasses.field(default_factory=AnalyzerConfig)
    write_video: bool = True  # annotated.mp4, or annotated.jpg/png for a photo
    overwrite: bool = False
    batch_frames: int = 4
    audio: bool = True  # the input's sound in annotated.mp4
    start_s: float | None = None  # process only frames with start_s <= time_s < end_s (input times)
    end_s: float | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS  # a still's pixel budget
    timeout_s: float = DEFAULT_TIMEOUT_S  # opening and reading a stream, FIFO or device


class _Outputs:
    """The writers of one run; `emit` runs on the main thread, `encode` on the encoder thread."""

    def __init__(self, job: OfflineJob, source, timer: StageTimer) -> None:
        from pipeline.stages.render import Renderer

        self.job, self.out, self.source, self.timer = job, job.out_dir, source, timer
        self.jsonl = JsonlSink(job.out_dir / "faces.jsonl")
        self.renderer = Renderer() if job.write_video else None
        self.video: VideoSink | None = None
        self.still: str | None = None  # the annotated picture's file name, once written
        self.audio: dict | None = None  # what became of the input's sound
        self.threads = encoder_threads()

    def emit(self, frame: Frame, batch: FaceBatch) -> None:
        with self.timer("write"):
            self.jsonl.write(batch)

    def encode(self, item: tuple[Frame, FaceBatch]) -> None:
        frame, batch = item
        with self.timer("render"):
            img = self.renderer.annotate(frame.image_bgr, batch)
        with self.timer("encode"):
            if self.source.info.is_still:  # a photo gives a picture at full resolution, not a video
                self.still = still_output_name(self.job.input)
                write_still(self.out / self.still, img)
                return
            if self.video is None:
                path, fps = self.out / "annotated.mp4", self.source.info.fps
                self.video = VideoSink(
                    path, frame.size_wh, fps, audio=self._audio_track(frame.time_s), threads=self.threads
                )
            self.video.write(img, frame.time_s)

    def _audio_track(self, first_time_s: float):
        """The input's sound from the first frame's time on, or None (no sound, --no-audio, or it fails)."""
        from pipeline.io.audio import AudioTrack, probe_audio

        codec = probe_audio(self.job.input) if self.job.audio else None
        self.audio = {"codec": codec, "mode": "off" if not self.job.audio else None}
        if codec is None:
            return None
        try:
            track = AudioTrack(self.job.input, getattr(self.source, "origin_s", 0.0) + first_time_s)
        except Exception as e:  # sound is a bonus: an audio stream PyAV cannot open leaves a silent video
            self.audio["error"] = str(e)
            return None
        self.audio["mode"] = track.mode
        return track

    def close(self) -> None:
        try:
            self.jsonl.close()
        finally:
            if self.video is not None:
                self.video.close()
                if self.video.audio is not None and self.video.audio.error:
                    self.audio["error"] = self.video.audio.error

    def written(self) -> dict:
        """The annotated output's name -> frames written (none with --no-video)."""
        if self.still:
            return {self.still: 1}
        return {"annotated.mp4": self.video.frames} if self.video else {}


def trimmed(frames, start_s: float | None, end_s: float | None):
    """The frames with start_s <= time_s < end_s (either bound may be None); stops reading at end_s."""
    for frame in frames:
        if end_s is not None and frame.time_s >= end_s:
            return
        if start_s is None or frame.time_s >= start_s:
            yield frame


def expected_frames(info, start_s: float | None = None, end_s: float | None = None) -> int | None:
    """How many frames the run will process, for a progress bar's total (None when unknown)."""
    if info.is_still:
        return 1
    if start_s is None and end_s is None and info.frame_count:
        return info.frame_count
    duration = info.duration_s or (info.frame_count / info.fps if info.frame_count and info.fps else None)
    if duration is None or not info.fps:
        return None
    span = min(end_s if end_s is not None else duration, duration) - (start_s or 0.0)
    return max(0, round(span * info.fps))


def run_job(
    job: OfflineJob,
    on_frame: Callable[[Frame, FaceBatch], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
    analyzer: FaceAnalyzer | None = None,
) -> dict:
    """Process `job.input` into `job.out_dir`; returns the summary (also written as summary.json).

    The input is opened before the output folder is made, and a folder this run made is removed again
    when the run fails before writing anything into it. The folder is locked for the whole job (a second
    run into it is refused); the end-of-run files are written with Ctrl-C/SIGTERM held back, so an
    interrupt then costs nothing already processed. `on_start(expected frames or None)` is called once
    the models are loaded, just before the first frame. `analyzer` (optional: a worker's, models loaded
    once for many jobs) is used instead of building one from `job.analyzer`, reset first, not closed here.
    """
    _check_trim(job)
    # a bad input fails here, before any folder is made
    source = open_source(job.input, max_pixels=job.max_pixels, timeout_s=job.timeout_s)
    made = not Path(job.out_dir).exists()
    try:
        with claimed_out_dir(job.out_dir, job.overwrite) as out:
            return _run(job, source, out, on_frame, on_start, analyzer)
    except BaseException:
        with contextlib.suppress(Exception):
            source.close()  # closed already if the run started; not if the folder was refused
        if made:
            with contextlib.suppress(OSError):
                Path(job.out_dir).rmdir()  # only when empty: whatever was written stays
        raise


def _check_trim(job: OfflineJob) -> None:
    from pipeline.errors import InputError

    if job.start_s is not None and job.start_s < 0:
        raise InputError(f"--start must be >= 0 seconds, got {job.start_s}")
    if job.start_s is not None and job.end_s is not None and job.end_s <= job.start_s:
        raise InputError(f"--end ({job.end_s}) must be after --start ({job.start_s})")


def _run(job: OfflineJob, source, out: Path, on_frame, on_start, lent: FaceAnalyzer | None) -> dict:
    timer = StageTimer()
    analyzer = outputs = None
    try:
        with job_threads(source.info):
            t0 = time.perf_counter()
            analyzer = _analyzer(job, timer, lent)
            setup_s = time.perf_counter() - t0
            outputs = _Outputs(dataclasses.replace(job, out_dir=out), source, timer)

            def emit(frame: Frame, batch: FaceBatch) -> None:
                outputs.emit(frame, batch)
                if on_frame:
                    on_frame(frame, batch)

            start_s, end_s = (None, None) if source.info.is_still else (job.start_s, job.end_s)
            if on_start:
                on_start(expected_frames(source.info, start_s, end_s))
            frames = trimmed(source, start_s, end_s)
            if analyzer.shots is not None:  # the cut test runs on the decode thread
                frames = with_cuts(frames, timer)
            stats = run_offline(
                frames,
                analyzer.process,
                emit,
                outputs.encode if job.write_video else None,
                batch_frames=job.batch_frames,
                timer=timer,
            )
    except BaseException:
        _close(outputs, source, None if lent else analyzer)
        raise
    with signals_deferred():
        _close(outputs, source, None if lent else analyzer)
        return _finish(job, out, source, analyzer, stats, setup_s, outputs)


def _analyzer(job: OfflineJob, timer: StageTimer, lent: FaceAnalyzer | None) -> FaceAnalyzer:
    """A new analyzer for this job, or the lent one reset (no track or count carries over) and timed here."""
    if lent is None:
        return FaceAnalyzer(job.analyzer, timer=timer)
    lent.reset()
    lent.timer = timer
    return lent


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
    """tracks.csv, summary.json and the plot (timeline.png, or emotions.png for a photo), in that order,
    once the frames are done (or interrupted)."""
    tracks = analyzer.aggregator.track_summaries()
    still = source.info.is_still
    plot = planned_plot(tracks, still)
    summary = {
        "input": {
            **dataclasses.asdict(source.info),
            "frames_read": getattr(source, "frames_read", stats.frames),
            "decode_errors": getattr(source, "decode_errors", 0),
            "last_error": getattr(source, "last_error", None),
            "start_s": job.start_s,
            "end_s": job.end_s,
            "packets_skipped": getattr(source, "packets_skipped", 0),
            "decoded_at_scale": getattr(source, "scale", 1),
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
        "audio": outputs.audio,
        "plot": plot,
        "outputs": {
            "faces.jsonl": outputs.jsonl.lines,
            "tracks.csv": len(tracks),
            **outputs.written(),
            **({plot["file"]: True} if plot["file"] else {}),
        },
        "machine": machine_facts(),
    }
    write_end_files(out, tracks, source.info.path, summary, still=still)  # a URL without its password
    return summary
