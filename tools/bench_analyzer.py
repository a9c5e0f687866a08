"""The analyzer alone: ms per frame of `FaceAnalyzer.process` on frames decoded beforehand, one thread.

No decode, writing, rendering or encoding, and no other thread: what the stateful middle of the pipeline
(cut test, detect, track, align, infer, aggregate) costs per frame, for comparing two source trees
(run it with each tree on PYTHONPATH). Medians of --passes passes after a warm-up pass.

    PYTHONPATH=/tmp/before-tree python tools/bench_analyzer.py ../shared/media/pexels_woman_emotions.mp4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source


def ms_per_frame(analyzer: FaceAnalyzer, frames: list, batch_frames: int) -> float:
    """One pass over `frames` from a fresh clip state."""
    analyzer.reset()
    t0 = time.perf_counter()
    for i in range(0, len(frames), batch_frames):
        analyzer.process(frames[i : i + batch_frames])
    return (time.perf_counter() - t0) / len(frames) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--batch-frames", type=int, default=8)
    args = ap.parse_args()
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=args.detect_every))
    print("| video | frames | analyzer ms per frame (median) | passes |\n|---|---|---|---|")
    for video in args.videos:
        with open_source(video) as src:
            frames = list(src)
        ms_per_frame(analyzer, frames, args.batch_frames)  # warm-up
        times = [ms_per_frame(analyzer, frames, args.batch_frames) for _ in range(args.passes)]
        cells = ", ".join(f"{t:.3f}" for t in times)
        print(f"| {video.rsplit('/', 1)[-1]} | {len(frames)} | {statistics.median(times):.3f} | {cells} |")
    analyzer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
