"""The measuring tools behind docs/benchmarks.md and docs/models.md, on the real graph and real clips."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines.multitask import MultiTaskNet, NetConfig
from engines.store.store import ModelStore
from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source
from tools import bench_ab, bench_analyzer, profile_graph

REPO = Path(__file__).resolve().parents[2]


def test_the_graph_profile_names_every_node_and_the_convolutions_dominate(shared):
    net = MultiTaskNet(NetConfig(quality="mtl"), ModelStore(), "onnxruntime", intra_op_threads=1)
    ms, nodes = profile_graph.profile(net.onnx_path, batch=8, runs=3)
    convs = sum(us for (op, _), us in nodes.items() if op == "Conv")
    assert ms > 0 and len({op for op, _ in nodes}) > 5
    assert convs > 0.5 * sum(nodes.values())  # the trunk is what costs (docs/models.md)


def test_the_analyzer_alone_is_timed_per_frame_from_a_fresh_clip(shared):
    with open_source(shared / "media" / "pyfeat_single_face.mp4") as src:
        frames = list(src)[:16]
    analyzer = FaceAnalyzer(AnalyzerConfig())
    try:
        assert bench_analyzer.ms_per_frame(analyzer, frames, 8) > 0
        assert analyzer.tracking_facts()["shot_cuts"] == 0  # reset, then one clip's frames
    finally:
        analyzer.close()


def test_ab_rounds_run_each_tree_in_its_own_process_and_ratios_are_per_round(shared):
    video = str(shared / "media" / "pyfeat_single_face.mp4")
    arms = bench_ab.rounds(REPO, REPO, video, n=1, detect_every=3, quality="mtl")
    assert {a: len(r) for a, r in arms.items()} == {"A": 1, "B": 1, "A2": 1}
    rows = {r["face_rows"] for runs in arms.values() for r in runs}
    assert len(rows) == 1 and rows.pop() > 0  # the same code writes the same faces
    row = bench_ab.summarise(video, arms)
    ratio = row["fps_B_over_A"]["all"][0]
    assert ratio == pytest.approx(arms["B"][0]["fps"] / arms["A"][0]["fps"])
    assert "pyfeat_single_face.mp4" in bench_ab.markdown([row])
