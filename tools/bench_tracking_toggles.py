"""What the identity stages cost inside one tree: `run` fps with them on, off, and on again, interleaved.

"Off" is the analyzer without the stages issue #13 added: no cut detection, no minimum face size, no
re-identification, a track id from the first detection, and detectors that return only the faces they
trust (no second-stage candidates, `stages.detect.LOW_SCORE` raised to the detector's own threshold).
"On again" measures the noise of the moment. Ratios are per round against "on".

    python tools/bench_tracking_toggles.py ../shared/media/pexels_woman_emotions.mp4 --rounds 10
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

import pipeline.stages.detect as detect
from pipeline.config import AnalyzerConfig
from pipeline.runtime.offline import OfflineJob, run_job

ON = AnalyzerConfig(detect_every=3)
OFF = dataclasses.replace(ON, cut_detection=False, min_face_px=0, reid_window_s=0, track_min_hits=1)
TRUSTED_ONLY = 0.6  # YuNet's own threshold: no candidates below it


def run_fps(video: str, config: AnalyzerConfig, low_score: float) -> float:
    """One `run` (video written) with the detectors' low score set to `low_score`."""
    detect.LOW_SCORE = low_score
    with tempfile.TemporaryDirectory() as tmp:
        s = run_job(OfflineJob(input=video, out_dir=Path(tmp) / "o", analyzer=config, write_video=True))
    return s["timings"]["end_to_end_fps"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    default_low = detect.LOW_SCORE
    arms = {"on": (ON, default_low), "off": (OFF, TRUSTED_ONLY), "on again": (ON, default_low)}
    print("| video | fps on | off / on, median (rounds) | on again / on, median (rounds) |")
    print("|---|---|---|---|")
    for video in args.videos:
        fps: dict[str, list[float]] = {a: [] for a in arms}
        run_fps(video, ON, default_low)  # warm caches
        for _ in range(args.rounds):
            for arm, (config, low) in arms.items():
                fps[arm].append(run_fps(video, config, low))
        cells = []
        for arm in ("off", "on again"):
            r = [x / y for x, y in zip(fps[arm], fps["on"], strict=True)]
            cells.append(f"{statistics.median(r):.3f} ({min(r):.2f}-{max(r):.2f})")
        print(f"| {Path(video).name} | {statistics.median(fps['on']):.1f} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
