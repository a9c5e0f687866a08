"""Where the default fused graph spends its time: onnxruntime's own per-node profile, one thread.

Runs the graph a quality exports (default: the default quality) on a batch of random 128x128 crops and
prints the share of each node type and the costliest nodes; what set the trunk's shape in
docs/models.md (time in proportion to each convolution's multiply-adds).

    python tools/profile_graph.py --quality mtl --batch 8 --runs 50
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engines.multitask import MultiTaskNet, NetConfig
from engines.nets.heads import DEFAULT_QUALITY
from engines.store.store import ModelStore


def profile(onnx_path: Path, batch: int, runs: int) -> tuple[float, collections.Counter]:
    """(ms per batch, microseconds per node (op type, name)) over `runs` runs after a warm-up."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {
        session.get_inputs()[0].name: np.random.default_rng(0).integers(
            0, 256, (batch, 128, 128, 3), np.uint8
        )
    }
    for _ in range(5):
        session.run(None, feed)
    t0 = time.perf_counter()
    for _ in range(runs):
        session.run(None, feed)
    ms = (time.perf_counter() - t0) / runs * 1000
    nodes: collections.Counter = collections.Counter()
    for event in json.loads(Path(session.end_profiling()).read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            nodes[(event["args"]["op_name"], event["name"][: -len("_kernel_time")])] += event["dur"]
    return ms, nodes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quality", default=DEFAULT_QUALITY)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    net = MultiTaskNet(NetConfig(quality=args.quality), ModelStore(), "onnxruntime", intra_op_threads=1)
    ms, nodes = profile(net.onnx_path, args.batch, args.runs)
    total = sum(nodes.values())
    by_op: collections.Counter = collections.Counter()
    for (op, _), us in nodes.items():
        by_op[op] += us
    print(f"quality {args.quality}: {ms:.2f} ms per batch of {args.batch}, 1 thread\n")
    print("| op | share |\n|---|---|")
    print("\n".join(f"| {op} | {us / total:.1%} |" for op, us in by_op.most_common()))
    print("\n| node | op | share |\n|---|---|---|")
    print("\n".join(f"| {n} | {op} | {us / total:.1%} |" for (op, n), us in nodes.most_common(args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
