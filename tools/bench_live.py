"""Live-mode benchmark: glass-to-glass latency p50/p95/max and processed fps with files paced as a camera
delivers them (`emostream live --realtime`), for each input, input rate and output mode; every figure is
the median of --runs runs, all measured in one process on one machine.

    python tools/bench_live.py --runs 5 --max-seconds 15 --rates 30,native \
        ../shared/media/pexels_woman_emotions.mp4 ../shared/media/facenet_crowd_walking_1080p.mp4

Rate "native" paces a file at its own frame rate; a number N paces a copy whose timestamps were rescaled
to N fps (packets remuxed, not re-encoded: same pictures, delivered faster or slower).

Modes: "show" (picture drawn and published, nothing written) and "out" (also faces.jsonl, latency.csv and
annotated.mp4, as `--out DIR` does). "backlog" is the p50 latency of the last third of a run minus that
of the first third: near 0 when latency does not grow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from pipeline.config import AnalyzerConfig
from pipeline.live.run import LiveJob, run_live

METRICS = ("captured_fps", "processed_fps", "dropped_pct", "skipped_pct", "p50", "p95", "max", "backlog")


def retimed_copy(path: str, fps: float, out_dir: Path) -> str:
    """An MPEG-TS copy of `path` whose timestamps are rescaled to `fps` (no re-encoding)."""
    import av

    out = out_dir / f"{Path(path).stem}_{fps:g}fps.ts"
    with av.open(path) as src, av.open(str(out), "w", format="mpegts") as dst:
        vin = src.streams.video[0]
        ratio = float(vin.average_rate) / fps
        vout = dst.add_stream_from_template(vin)
        for packet in src.demux(vin):
            if packet.dts is None:
                continue
            packet.dts = round(packet.dts * ratio)
            packet.pts = None if packet.pts is None else round(packet.pts * ratio)
            packet.stream = vout
            dst.mux(packet)
    return str(out)


def one_run(path: str, mode: str, max_seconds: float, config: AnalyzerConfig, cv_threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out" if mode == "out" else None
        job = LiveJob(
            source=path,
            out_dir=out,
            analyzer=config,
            realtime=True,
            max_seconds=max_seconds,
            cv_threads=cv_threads,
        )
        s = run_live(job)
    lat = s["latency_ms"]
    with_faces = s["frames_inferred"] + s["inference_skipped"]
    return {
        "captured_fps": s["captured_fps"],
        "processed_fps": s["processed_fps"],
        "dropped_pct": 100 * s["frames_dropped"] / max(s["frames_captured"], 1),
        "skipped_pct": 100 * s["inference_skipped"] / max(with_faces, 1),
        "p50": _or_nan(lat["p50"]),  # None when too few frames were shown to say
        "p95": _or_nan(lat["p95"]),
        "max": _or_nan(lat["max"]),
        "backlog": _or_nan(lat["last_third_p50"]) - _or_nan(lat["first_third_p50"]),
        "adds_up": s["frames_captured"] == s["frames_processed"] + s["frames_dropped"],
        "faces_per_frame": s["faces"] / max(s["frames_processed"], 1),
        "source": f"{s['input']['width']}x{s['input']['height']}",
        "native_fps": s["input"]["fps"],
        "load_1m": os.getloadavg()[0],
    }


def _or_nan(v: float | None) -> float:
    return float("nan") if v is None else v


def bench(path: str, name: str, rate: str, mode: str, runs: int, seconds: float, config, cv: str) -> dict:
    cv_threads = None if cv == "auto" else int(cv)
    results = [one_run(path, mode, seconds, config, cv_threads) for _ in range(runs)]
    row = {m: round(statistics.median(r[m] for r in results), 1) for m in METRICS}
    row.update(
        input=name,
        rate=f"{results[0]['native_fps']:.2f} (native)" if rate == "native" else f"{float(rate):g} (retimed)",
        mode=mode,
        cv_threads=cv,
        source=results[0]["source"],
        faces_per_frame=round(statistics.median(r["faces_per_frame"] for r in results), 2),
        adds_up=all(r["adds_up"] for r in results),
        load_1m=round(max(r["load_1m"] for r in results), 1),
        runs=runs,
    )
    return row


def machine() -> str:
    model = ""
    if os.path.exists("/proc/cpuinfo"):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    model = model or platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({model}), {platform.system()}"


def table(rows: list[dict]) -> str:
    head = (
        "| input | size | paced at fps | faces/frame | mode | OpenCV threads | captured fps | "
        "processed fps | dropped % | inference skipped % | latency p50 ms | p95 ms | max ms | backlog ms | "
        "captured = shown + dropped | load (1 min, max) |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        lines.append(
            f"| {r['input']} | {r['source']} | {r['rate']} | {r['faces_per_frame']} | {r['mode']} | "
            f"{r['cv_threads']} | {r['captured_fps']} | "
            f"{r['processed_fps']} | {r['dropped_pct']} | {r['skipped_pct']} | {r['p50']} | {r['p95']} | "
            f"{r['max']} | {r['backlog']} | {'yes' if r['adds_up'] else 'NO'} | {r['load_1m']} |"
        )
    return "\n".join(lines)


def _cv_threads(text: str) -> list[str]:
    """'auto,1,2' -> ['auto', '1', '2']; anything but 'auto' or a positive integer is a usage error."""
    items = text.split(",")
    if not all(i == "auto" or (i.isdigit() and int(i) > 0) for i in items):
        raise argparse.ArgumentTypeError(f"expected 'auto' or positive integers, comma-separated: {text!r}")
    return items


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("inputs", nargs="+")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-seconds", type=float, default=15.0, help="per run (a shorter file ends sooner)")
    p.add_argument("--modes", default="show,out")
    p.add_argument("--rates", default="30,native", help="input rates: 'native' or fps numbers")
    p.add_argument("--detector", default="yunet")
    p.add_argument("--detect-every", type=int, help="detect on every Nth frame (default: the analyzer's)")
    p.add_argument(
        "--cv-threads",
        type=_cv_threads,
        default=["auto"],
        help="OpenCV thread counts to compare, e.g. auto,1,2 (auto: live's default)",
    )
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    config = AnalyzerConfig(detector=args.detector)
    if args.detect_every:
        config = dataclasses.replace(config, detect_every=args.detect_every)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.inputs:
            for rate in args.rates.split(","):
                src = path if rate == "native" else retimed_copy(path, float(rate), Path(tmp))
                for mode in args.modes.split(","):
                    for cv in args.cv_threads:
                        row = bench(src, Path(path).name, rate, mode, args.runs, args.max_seconds, config, cv)
                        rows.append(row)
    print(f"machine: {machine()}; python {platform.python_version()}; runs: {args.runs} (medians)")
    heads = ",".join(config.heads)
    print(f"analyzer: detector {config.detector}, detect every {config.detect_every}, heads {heads}")
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
