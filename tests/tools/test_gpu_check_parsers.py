"""tools/gpu_check's parsers on small inputs: pytest's quiet closing line, bench labels and number
formats, the batch-32 target verdict, the fps table of runs that failed."""

from __future__ import annotations

import subprocess

from tests.tools.samples import pytest_cmd
from tools import gpu_check as gc


def test_pytest_quiet_output_parses_the_same(tmp_path):
    done = subprocess.run(pytest_cmd(tmp_path, "-q"), capture_output=True, text=True, timeout=60)
    got = gc.parse_pytest(done.stdout)
    assert (got["passed"], got["failed"], got["errors"], got["xfailed"]) == (3, 1, 1, 1)
    assert not done.stdout.splitlines()[-1].startswith("=")  # -q: a bare closing line


def test_a_quiet_run_killed_midway_counts_what_its_progress_lines_show():
    text = "........................................................................ [ 19%]\n"
    text += "..F.s..x\nsome test's own output: 3 passed in 1s? no\n"
    got = gc.parse_pytest(text)
    assert (got["passed"], got["failed"], got["skipped"], got["xfailed"]) == (77, 1, 1, 1)
    assert not got["complete"]
    assert gc.parse_pytest("no tests ran in 0.01s")["summary"] == "no tests ran in 0.01s"


def test_bench_labels_and_thousands_separators_are_kept():
    text = "noise\n| backend | batch | faces/s | ms/batch | pre % | infer % | post % |\n|---|---:|\n"
    text += "| torch fp16 graphs | 32 | 12,345 | 2.59 | 40 | 59 | 1 |\n| not | a | row |\n"
    assert gc.parse_bench_table(text) == [
        {
            "backend": "torch fp16 graphs",
            "batch": 32,
            "faces_per_s": 12345.0,
            "ms_per_batch": 2.59,
            "pre_pct": 40.0,
            "infer_pct": 59.0,
            "post_pct": 1.0,
        }
    ]


def test_the_target_line_judges_the_best_gpu_row_at_batch_32():
    rows = [
        {"backend": "onnxruntime", "batch": 32, "faces_per_s": 9000.0},
        {"backend": "torch fp16", "batch": 32, "faces_per_s": 4000.0},
        {"backend": "torch fp16 graphs", "batch": 32, "faces_per_s": 6500.0},
        {"backend": "torch fp16", "batch": 128, "faces_per_s": 20000.0},
    ]
    assert gc.target_line(rows).endswith(": met (torch fp16 graphs: 6,500).")
    assert "NOT met (torch fp16: 4,000)" in gc.target_line(rows[:2])


def test_the_fps_table_keeps_a_clip_whose_gpu_run_failed():
    runs = [
        {
            "clip_key": "crowd",
            "clip": "crowd.mp4",
            "backend": "torch",
            "error": "no summary.json (step timeout)",
        },
        {
            "clip_key": "crowd",
            "clip": "crowd_1080p.mp4",
            "backend": "onnxruntime",
            "fps": 50.0,
            "frames": 105,
        },
        {"clip_key": "pexels", "clip": "p.mp4", "backend": "torch", "fps": 400.0, "frames": 1000},
        {"clip_key": "pexels", "clip": "p.mp4", "backend": "onnxruntime", "fps": 250.0, "frames": 1000},
    ]
    assert gc.fps_table(runs) == [
        {"clip": "crowd_1080p.mp4", "frames": 105, "fps": {"torch": None, "onnxruntime": 50.0}}
        | {"torch_over_onnxruntime": None},
        {"clip": "p.mp4", "frames": 1000, "fps": {"torch": 400.0, "onnxruntime": 250.0}}
        | {"torch_over_onnxruntime": 1.6},
    ]
