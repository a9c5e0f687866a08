"""Long runs: 20,000+ real frames through `run` keep resident memory flat and leave no thread behind.

The long input is an ffconcat list of one real clip repeated (FFmpeg joins them with continuous timestamps),
so nothing large is generated or committed. Figures are written to the test's log for docs/robustness.md.
"""

from __future__ import annotations

import json
import os
import threading

import psutil
import pytest

from pipeline.analyzer import AnalyzerConfig
from pipeline.offline import OfflineJob, run_job

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
