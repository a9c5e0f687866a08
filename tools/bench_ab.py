"""Before/after throughput of `emostream run` for two source trees, with the noise measured in the same run.

Each round runs, in fresh subprocesses and in this order, BEFORE, AFTER, then BEFORE again (A, B, A'):
the A'/A ratio is what the same code shows against itself under the machine's load at that moment, so a
B/A ratio inside the A'/A spread is "within noise". Every run reports wall-clock fps and CPU time per
frame (all threads of the child, `time.process_time`, the run only: models are loaded and warmed
before the clock starts), and the face-rows written, so a change that processes more faces shows as such.

    python tools/bench_ab.py --before /tmp/before-tree --after . --rounds 5 --detect-every 3 \\
        ../shared/media/pexels_woman_emotions.mp4 ../shared/media/facenet_crowd_walking_1080p.mp4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from pipeline.config import AnalyzerConfig
from pipeline.runtime.offline import OfflineJob, run_job
video, detect_every, quality = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = AnalyzerConfig(detect_every=detect_every, quality=quality)
def once():
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        wall, cpu = time.perf_counter(), time.process_time()
        s = run_job(OfflineJob(input=video, out_dir=out, analyzer=config, write_video=True))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows = sum(1 for _ in (out / "faces.jsonl").open())
    return {"frames": s["frames_processed"], "wall_s": wall, "cpu_s": cpu, "face_rows": rows}
once()  # warm: graph export and caches outside the timed run
print("RESULT " + json.dumps(once()))
"""


def run_tree(tree: Path, video: str, detect_every: int, quality: str) -> dict:
    """One timed `run` of `video` with the code of `tree` (its own PYTHONPATH, a fresh process, and its
    own derived-model cache: two trees may export different graphs under the same cache key)."""
    cache = Path(os.environ.get("EMOSTREAM_CACHE_DIR", Path.home() / ".cache" / "emostream"))
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "GLOG_minloglevel": "2"}
    env["EMOSTREAM_CACHE_DIR"] = str(cache / "bench_ab" / str(tree.resolve()).strip("/").replace("/", "_"))
    cmd = [sys.executable, "-c", CHILD, video, str(detect_every), quality]
    done = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=False)
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not line:
        raise SystemExit(f"{tree}: run failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    r = json.loads(line[-1][7:])
    return {**r, "fps": r["frames"] / r["wall_s"], "cpu_ms_per_frame": 1000 * r["cpu_s"] / r["frames"]}


def rounds(before: Path, after: Path, video: str, n: int, detect_every: int, quality: str) -> dict:
    """n rounds of A, B, A' on one video."""
    arms: dict[str, list[dict]] = {"A": [], "B": [], "A2": []}
    for i in range(n):
        for arm, tree in (("A", before), ("B", after), ("A2", before)):
            arms[arm].append(run_tree(tree, video, detect_every, quality))
        done = ", ".join(f"{a} {r[-1]['fps']:.1f} fps" for a, r in arms.items())
        print(f"  round {i + 1}/{n}: {done}", file=sys.stderr)
    return arms


def summarise(video: str, arms: dict[str, list[dict]]) -> dict:
    """Medians of each arm and per-round ratios B/A and A'/A, for wall fps and CPU ms per frame."""
    out: dict = {"video": Path(video).name}
    for key in ("fps", "cpu_ms_per_frame", "face_rows"):
        out[key] = {a: statistics.median(r[key] for r in runs) for a, runs in arms.items()}
    for key in ("fps", "cpu_ms_per_frame"):
        for arm in ("B", "A2"):
            ratios = [b[key] / a[key] for a, b in zip(arms["A"], arms[arm], strict=True)]
            out[f"{key}_{arm}_over_A"] = {"median": statistics.median(ratios), "all": ratios}
    out["runs"] = arms
    return out


def markdown(rows: list[dict]) -> str:
    head = (
        "| video | face-rows before / after | fps before (A) / after (B) / before again (A') | fps B/A "
        "(A'/A) | CPU ms per frame A / B / A' | CPU B/A (A'/A) |\n|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        f, c = r["fps"], r["cpu_ms_per_frame"]
        lines.append(
            f"| {r['video']} | {r['face_rows']['A']:.0f} / {r['face_rows']['B']:.0f} | "
            f"{f['A']:.1f} / {f['B']:.1f} / {f['A2']:.1f} | {_ratio(r, 'fps')} | "
            f"{c['A']:.1f} / {c['B']:.1f} / {c['A2']:.1f} | {_ratio(r, 'cpu_ms_per_frame')} |"
        )
    return "\n".join(lines)


def _ratio(r: dict, key: str) -> str:
    b, a2 = r[f"{key}_B_over_A"], r[f"{key}_A2_over_A"]
    spread = f"{min(a2['all']):.2f}-{max(a2['all']):.2f}"
    return f"{b['median']:.3f} ({a2['median']:.3f}, rounds {spread})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--before", type=Path, required=True, help="source tree of the code before")
    ap.add_argument("--after", type=Path, required=True, help="source tree of the code after")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--detect-every", type=int, default=3)
    ap.add_argument("--quality", default="mtl")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    args = ap.parse_args()
    rows = []
    for video in args.videos:
        print(f"{Path(video).name}:", file=sys.stderr)
        arms = rounds(args.before, args.after, video, args.rounds, args.detect_every, args.quality)
        rows.append(summarise(video, arms))
    print(f"load average at the end: {os.getloadavg()[0]:.1f}; rounds: {args.rounds}")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
