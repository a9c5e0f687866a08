"""Distributed scaling: the same videos through `run`'s many-input job on the local engine and on Ray with
1 and 2 workers, in one process on one machine, the three interleaved in each round; every figure is the
median of --rounds rounds (docs/distributed.md).

    python tools/bench_distributed.py --rounds 3 --videos 6 --seconds 5 \
        ../shared/media/pexels_woman_emotions.mp4

The videos are cut from SOURCE into a temporary folder (re-encoded H.264, removed at the end; nothing is
kept). Each Ray run starts its own local Ray instance and workers, as `emostream run DIR --engine ray`
does, so its wall time includes that start.

Figures, each from the moments the driver receives each video's result:
- wall_s: from the call to the last result (Ray: starting Ray and its workers included);
- videos_per_min: videos / wall_s * 60;
- first_s: until the first result: the fixed start (models loaded; on Ray also Ray and its workers started);
- per_video_s: (last result - first result) / (videos - 1): what one more video costs once running;
- vs_local: videos_per_min over the local engine's in the same round;
- overhead_per_video_s (Ray): per_video_s times the workers (the time one worker spends per video) minus
  the local engine's per_video_s; start_overhead_s: first_s minus the local engine's;
- ray_init_s: `ray.init()` of a new local instance alone (then shut down), once per round: the part of
  the start that is Ray's own, the rest being worker processes importing the pipeline and loading models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from engines.backends.base import usable_cpus
from pipeline.runtime.batch import expand_inputs, run_batch
from pipeline.runtime.offline import OfflineJob

ENGINES = (("local", 1), ("ray", 1), ("ray", 2))
METRICS = ("wall_s", "videos_per_min", "first_s", "per_video_s", "vs_local", "overhead_per_video_s")


def cut(source: str, start_s: float, end_s: float, dst: Path) -> None:
    """Frames start_s <= t < end_s of `source`, re-encoded to H.264 in `dst`."""
    import av

    with av.open(source) as src, av.open(str(dst), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream("libx264", rate=Fraction(vin.average_rate).limit_denominator(1001))
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.options = {"preset": "veryfast", "crf": "20"}
        for frame in src.decode(vin):
            t = float(frame.pts * vin.time_base)
            if t >= end_s:
                break
            if t >= start_s:
                out.mux(vout.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), "bgr24")))
        out.mux(vout.encode(None))


def make_videos(source: str, count: int, seconds: float, folder: Path) -> list[Path]:
    """`count` clips of `seconds` each, spread evenly over `source` (they may overlap on a short one)."""
    import av

    with av.open(source) as src:
        duration_s = float(src.duration or 0) / 1e6
    step = max(0.0, duration_s - seconds) / max(1, count - 1)
    paths = [folder / f"v{n}.mp4" for n in range(count)]
    for n, path in enumerate(paths):
        cut(source, n * step, n * step + seconds, path)
    return paths


def one_run(folder: Path, out: Path, engine: str, workers: int, write_video: bool) -> dict:
    """Arrival times of every video's result (seconds since the call) for one engine."""
    from pipeline.distributed.engine import LocalEngine

    if engine == "ray":
        from pipeline.distributed.ray_engine import RayEngine

        spread = RayEngine(address="local", workers=workers)
    else:
        spread = LocalEngine()
    items = expand_inputs([str(folder)])
    arrivals: list[float] = []
    t0 = time.perf_counter()
    results = run_batch(
        items,
        out,
        OfflineJob("", out, write_video=write_video),
        spread,
        on_result=lambda r: arrivals.append(time.perf_counter() - t0),
    )
    if [r.status for r in results] != ["done"] * len(items):
        raise SystemExit(f"{engine} x{workers}: not every video was done: {[r.status for r in results]}")
    return figures(arrivals)


def figures(arrivals: list[float]) -> dict:
    n, wall = len(arrivals), arrivals[-1]
    return {
        "wall_s": wall,
        "videos_per_min": n / wall * 60,
        "first_s": arrivals[0],
        "per_video_s": (arrivals[-1] - arrivals[0]) / max(1, n - 1),
    }


def against_local(run: dict, local: dict, workers: int) -> dict:
    return {
        **run,
        "vs_local": run["videos_per_min"] / local["videos_per_min"],
        "overhead_per_video_s": run["per_video_s"] * workers - local["per_video_s"],
        "start_overhead_s": run["first_s"] - local["first_s"],
    }


def ray_init_s() -> float:
    """Seconds `ray.init()` takes to start a new local Ray instance (shut down after, not counted)."""
    import logging

    import ray

    t0 = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    seconds = time.perf_counter() - t0
    ray.shutdown()
    return seconds


def medians(runs: list[dict]) -> dict:
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}


def table(results: dict, videos: int, init_s: float) -> str:
    lines = [
        "| engine | workers | wall s | videos/min | vs local | first result s | s per further video "
        "| Ray overhead per video s | Ray start overhead s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, m in results.items():
        engine, workers = name.split("-")
        extra = (
            f"{m['overhead_per_video_s']:+.2f} | {m['start_overhead_s']:+.2f}" if engine == "ray" else "- | -"
        )
        lines.append(
            f"| {engine} | {workers} | {m['wall_s']:.1f} | {m['videos_per_min']:.1f} | "
            f"{m.get('vs_local', 1.0):.2f} | {m['first_s']:.1f} | {m['per_video_s']:.2f} | {extra} |"
        )
    return "\n".join(lines) + f"\n\n({videos} videos; medians of the rounds; ray.init alone: {init_s:.1f} s)"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="video the clips are cut from")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--videos", type=int, default=6)
    p.add_argument("--seconds", type=float, default=5.0, help="length of each clip")
    p.add_argument("--no-video", action="store_true", help="skip annotated.mp4, as `run --no-video`")
    p.add_argument("--json", type=Path, help="write every run and the medians here")
    args = p.parse_args()
    import ray

    runs: dict[str, list[dict]] = {f"{e}-{w}": [] for e, w in ENGINES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "videos"
        folder.mkdir()
        make_videos(args.source, args.videos, args.seconds, folder)
        one_run(folder, Path(tmp) / "warm-up", "local", 1, not args.no_video)  # model caches filled
        inits = []
        for r in range(args.rounds):
            inits.append(ray_init_s())
            done = {}
            for engine, workers in ENGINES:
                out = Path(tmp) / f"round{r}-{engine}-{workers}"
                done[f"{engine}-{workers}"] = one_run(folder, out, engine, workers, not args.no_video)
            for name, run in done.items():
                workers = int(name.split("-")[1])
                runs[name].append(run if name == "local-1" else against_local(run, done["local-1"], workers))
    results = {name: medians(rs) for name, rs in runs.items()}
    facts = {
        "machine": {"platform": platform.platform(), "cpus": usable_cpus(), "cpu_count": os.cpu_count()},
        "ray": ray.__version__,
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    init_s = statistics.median(inits)
    print(table(results, args.videos, init_s))
    if args.json:
        report = {**facts, "medians": results, "ray_init_s": inits, "runs": runs}
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
