"""Offline throughput benchmark: decode-only fps, `emostream run` end-to-end fps, per-stage ms, and a naive
baseline (same models, detection on every frame, one face per inference call, no threads), all measured in
one process on one machine. Each figure is the median of --runs runs.

    python tools/bench.py --runs 3 ../shared/media/pexels_woman_emotions.mp4 \
        ../shared/media/facenet_crowd_walking_1080p.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source
from pipeline.runtime.offline import OfflineJob, run_job


def decode_fps(path: str) -> float:
    t0, n = time.perf_counter(), 0
    with open_source(path) as src:
        for _ in src:
            n += 1
    return n / (time.perf_counter() - t0)


def run_fps(path: str, config: AnalyzerConfig, write_video: bool = True) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        s = run_job(
            OfflineJob(input=path, out_dir=Path(tmp) / "out", analyzer=config, write_video=write_video)
        )
    return {
        "fps": s["timings"]["end_to_end_fps"],
        "frames": s["frames_processed"],
        "stages": {k: v["ms_per_frame"] for k, v in s["timings"]["stages"].items()},
    }


def naive_fps(path: str, config: AnalyzerConfig) -> float:
    """Everything on one thread, detection every frame, one network call per face, video written."""
    from pipeline.io.sinks import VideoSink
    from pipeline.stages.align import crop_faces
    from pipeline.stages.render import Renderer

    analyzer = FaceAnalyzer(config)
    renderer, n = Renderer(), 0
    with tempfile.TemporaryDirectory() as tmp, open_source(path) as src:
        video = None
        t0 = time.perf_counter()
        for frame in src:
            batch = analyzer.tracker.update(analyzer.detector.detect(frame))
            outs = [
                analyzer.net.infer(
                    crop_faces(
                        frame.image_bgr, batch.select([i]), analyzer.net.crop_size, analyzer.net.crop_scale
                    )
                )
                for i in range(len(batch))
            ]
            if outs:
                batch = batch.with_outputs(**{k: _concat([o[k] for o in outs]) for k in outs[0]})
            batch = analyzer.aggregator.update(batch)
            video = video or VideoSink(Path(tmp) / "n.mp4", frame.size_wh, src.info.fps)
            video.write(renderer.annotate(frame.image_bgr, batch), frame.time_s)
            n += 1
        if video is not None:
            video.close()
        elapsed = time.perf_counter() - t0
    analyzer.close()
    return n / elapsed


def _concat(arrays):
    import numpy as np

    return np.concatenate(arrays)


def bench_video(path: str, runs: int, config: AnalyzerConfig) -> dict:
    dec, full, naive = [], [], []
    for _ in range(runs):  # interleaved: a change in machine load falls on both sides of the ratio
        dec.append(decode_fps(path))
        full.append(run_fps(path, config))
        naive.append(naive_fps(path, config))
    with open_source(path) as src:
        info = src.info
    med_full = statistics.median(r["fps"] for r in full)
    med_naive = statistics.median(naive)
    stages = {k: statistics.median(r["stages"].get(k, 0.0) for r in full) for k in full[0]["stages"]}
    return {
        "video": Path(path).name,
        "wh": [info.width, info.height],
        "source_fps": round(info.fps, 2),
        "frames": full[0]["frames"],
        "decode_fps": round(statistics.median(dec), 1),
        "run_fps": round(med_full, 1),
        "realtime_factor": round(med_full / info.fps, 2),
        "naive_fps": round(med_naive, 1),
        "speedup_vs_naive": round(med_full / med_naive, 2),
        "stage_ms_per_frame": {k: round(v, 2) for k, v in stages.items()},
        "runs": {"decode_fps": dec, "run_fps": [r["fps"] for r in full], "naive_fps": naive},
    }


def compare_qualities(path: str, runs: int, configs: dict[str, AnalyzerConfig]) -> list[dict]:
    """End-to-end `run` fps of each quality on one video, interleaved round by round (same load for all)."""
    fps: dict[str, list[float]] = {q: [] for q in configs}
    for _ in range(runs):
        for q, config in configs.items():
            fps[q].append(run_fps(path, config)["fps"])
    base = statistics.median(fps[list(configs)[-1]])
    return [
        {"video": Path(path).name, "quality": q, "run_fps": round(statistics.median(f), 1),
         "vs_last": round(statistics.median(f) / base, 2), "runs": f}
        for q, f in fps.items()
    ]  # fmt: skip


def markdown(results: list[dict]) -> str:
    lines = [
        "| video | size | frames | decode fps | run fps (video written) | x real time | naive fps | "
        "speed-up vs naive |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['video']} | {r['wh'][0]}x{r['wh'][1]} | {r['frames']} | {r['decode_fps']} | "
            f"{r['run_fps']} | {r['realtime_factor']} | {r['naive_fps']} | {r['speedup_vs_naive']} |"
        )
    stages = sorted({k for r in results for k in r["stage_ms_per_frame"]})
    lines += [
        "",
        "Per-stage ms per frame (median; decode and render/encode overlap the main thread):",
        "",
        "| video | " + " | ".join(stages) + " |",
        "|---|" + "---|" * len(stages),
    ]
    for r in results:
        lines.append(
            f"| {r['video']} | " + " | ".join(str(r["stage_ms_per_frame"].get(s, "")) for s in stages) + " |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--detect-every", type=int, default=1)
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    ap.add_argument(
        "--qualities", help="compare run fps of these qualities instead (e.g. mtl,fast: last = base)"
    )
    args = ap.parse_args()
    os.environ.setdefault("GLOG_minloglevel", "2")
    config = AnalyzerConfig(detect_every=args.detect_every)
    if args.qualities:
        configs = {
            q: AnalyzerConfig(detect_every=args.detect_every, quality=q) for q in args.qualities.split(",")
        }
        rows = [r for v in args.videos for r in compare_qualities(v, args.runs, configs)]
        print(
            "| video | quality | run fps (video written) | vs " + list(configs)[-1] + " |\n|---|---|---|---|"
        )
        print("\n".join(f"| {r['video']} | {r['quality']} | {r['run_fps']} | {r['vs_last']} |" for r in rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        return 0
    results = [bench_video(v, args.runs, config) for v in args.videos]
    cpu = platform.processor() or platform.machine()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, {cpu}; runs per figure: {args.runs}")
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
