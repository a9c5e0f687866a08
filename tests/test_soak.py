"""Long runs: 20,000+ real frames through `run` keep resident memory flat and leave no thread behind.

The long input is an ffconcat list of one real clip repeated (FFmpeg joins them with continuous timestamps),
so nothing large is generated or committed. Figures are written to the test's log for docs/robustness.md.
"""

from __future__ import annotations

import json
import os
import threading
import time

import psutil
import pytest

from pipeline.config import AnalyzerConfig
from pipeline.runtime.offline import OfflineJob, run_job

CLIP_FRAMES = 72  # pyfeat_single_face.mp4
LOOPS = 278  # 20,016 frames
WARMUP_FRAMES = 2000
GROWTH_LIMIT_MB = 50


def looped_clip(media_dir, folder, loops=LOOPS):
    (folder / "clip.mp4").symlink_to(media_dir / "pyfeat_single_face.mp4")
    lines = ["ffconcat version 1.0", *["file clip.mp4"] * loops]
    path = folder / "long.ffconcat"
    path.write_text("\n".join(lines) + "\n")
    return path


def emostream_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("emostream-")]


@pytest.mark.slow
def test_run_memory_stays_flat_over_20000_frames(media_dir, tmp_path):
    src = looped_clip(media_dir, tmp_path)
    proc, samples = psutil.Process(os.getpid()), []

    def on_frame(frame, batch):
        if frame.index % 500 == 0:
            samples.append((frame.index, proc.memory_info().rss / 2**20))

    job = OfflineJob(input=str(src), out_dir=tmp_path / "out", analyzer=AnalyzerConfig(detect_every=2))
    summary = run_job(job, on_frame=on_frame)
    assert summary["frames_processed"] == CLIP_FRAMES * LOOPS
    after_warmup = [mb for i, mb in samples if i >= WARMUP_FRAMES]
    growth = max(after_warmup) - after_warmup[0]
    print(
        f"\nsoak run: {summary['frames_processed']} frames, rss at warm-up {after_warmup[0]:.0f} MB, "
        f"max {max(after_warmup):.0f} MB, growth {growth:.1f} MB, fps {summary['timings']['end_to_end_fps']}"
    )
    (tmp_path.parent / "soak_run.json").write_text(json.dumps({"samples": samples, "growth_mb": growth}))
    assert growth < GROWTH_LIMIT_MB, samples
    assert emostream_threads() == []


@pytest.mark.slow
def test_live_memory_stays_flat_over_20000_captured_frames(media_dir, tmp_path):
    """Unpaced, the capture thread outruns the stages, so most frames are dropped: that is the point."""
    from pipeline.live.run import LiveJob, run_live

    src = looped_clip(media_dir, tmp_path)
    proc, samples, done = psutil.Process(os.getpid()), [], threading.Event()

    def sample():
        t0 = time.monotonic()
        while not done.wait(0.5):
            samples.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    job = LiveJob(
        source=str(src), out_dir=tmp_path / "out", analyzer=AnalyzerConfig(detect_every=2), window=False
    )
    summary = run_live(job, on_ready=lambda url: sampler.start())
    done.set()
    sampler.join()
    assert summary["frames_captured"] == CLIP_FRAMES * LOOPS
    assert summary["frames_captured"] == summary["frames_processed"] + summary["frames_dropped"]
    warm = [mb for t, mb in samples if t >= 10.0] or [mb for _, mb in samples[len(samples) // 5 :]]
    growth = max(warm) - warm[0]
    print(
        f"\nsoak live: {summary['frames_captured']} captured, {summary['frames_processed']} shown, rss after "
        f"warm-up {warm[0]:.0f} MB, max {max(warm):.0f} MB, growth {growth:.1f} MB"
    )
    assert growth < GROWTH_LIMIT_MB, samples
    assert emostream_threads() == []


SOAK_FRAMES = 50_000
SOAK_FPS = 500.0  # generated frames paced at 500 fps: ~100 s, the stages keep up with a share of them


@pytest.mark.slow
def test_live_memory_stays_flat_over_50000_generated_frames_with_hundreds_of_tracks(
    media_dir, tmp_path, monkeypatch
):
    """Issue 15: faces appear and leave all the time (a new track every ~0.4 s), through the real live
    pipeline with the attribute refresh on; ended tracks' state must be released (the aggregator kept
    every track ever seen) and resident memory stay flat."""
    from pipeline.live import run as live_run
    from pipeline.live.run import LiveJob, run_live
    from tests.live_sources import GeneratedSource, face_tiles

    source = GeneratedSource(face_tiles(media_dir), SOAK_FRAMES, fps=SOAK_FPS, slots=3, life=500, gap=100)
    source.realtime = True
    monkeypatch.setattr(live_run, "open_live_source", lambda job: source)
    proc, samples, done = psutil.Process(os.getpid()), [], threading.Event()

    def sample():
        t0 = time.monotonic()
        while not done.wait(0.5):
            samples.append((time.monotonic() - t0, proc.memory_info().rss / 2**20))

    sampler = threading.Thread(target=sample, daemon=True)
    job = LiveJob(source="generated", out_dir=tmp_path / "out", analyzer=AnalyzerConfig(detect_every=2))
    summary = run_live(job, on_ready=lambda url: sampler.start())
    done.set()
    sampler.join()
    assert summary["frames_captured"] == SOAK_FRAMES
    assert summary["frames_captured"] == summary["frames_processed"] + summary["frames_dropped"]
    assert summary["tracks"] >= 150, summary["tracks"]
    streaming_s = summary["timings"]["wall_s"]  # after it, the end-of-run files (matplotlib loads once)
    warm = [mb for t, mb in samples if 20.0 <= t <= streaming_s]
    growth = max(warm) - warm[0]
    print(
        f"\nsoak live (generated): {summary['frames_captured']} captured, "
        f"{summary['frames_processed']} shown, {summary['tracks']} tracks, "
        f"rss after warm-up {warm[0]:.0f} MB, max {max(warm):.0f} MB, growth {growth:.1f} MB"
    )
    (tmp_path.parent / "soak_live_generated.json").write_text(
        json.dumps({"samples": samples, "growth_mb": growth, "tracks": summary["tracks"]})
    )
    assert growth < GROWTH_LIMIT_MB, samples
    rows = (tmp_path / "out" / "tracks.csv").read_text().splitlines()
    assert len(rows) == summary["tracks"] + 1
    assert emostream_threads() == []
