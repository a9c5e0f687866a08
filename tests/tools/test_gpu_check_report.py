"""tools/gpu_check's parsers and combined report, fed with real outputs made here on the CPU: a pytest
run, `emostream bench`, `emostream run` (onnxruntime) and a torch run that cannot start (no CUDA), each
through the same step runner the device run uses."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tools.samples import pytest_cmd
from tools import gpu_check as gc

pytestmark = pytest.mark.slow  # the real outputs take 10-20 s to make on 2 cores

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def work(shared, tmp_path_factory) -> Path:
    """A device run's work folder, made of real CPU outputs by the real step runner (about 15 s)."""
    work, deadline = tmp_path_factory.mktemp("work"), time.time() + 300
    clip, cli = shared / "media" / "pyfeat_single_face.mp4", [sys.executable, "-m", "pipeline.cli"]
    models = ["--models-dir", str(shared / "models")]
    bench = ["bench", "--backend", "onnxruntime", "--batches", "1,2", "--runs", "1"]
    on_cpu = ["--backend", "onnxruntime", "--detector", "yunet", "--no-video"]
    run = {
        name: [*cli, "run", str(clip), "--out", str(work / f"run_{name}_single")]
        for name in ("onnxruntime", "torch")
    }
    steps = {
        "pytest_gpu": pytest_cmd(work / "sample", "-ra", "-m", "not other"),
        "bench_onnxruntime": [*cli, *bench, *models],
        "run_onnxruntime_single": [*run["onnxruntime"], *on_cpu, *models],
        "run_torch_single": [*run["torch"], "--backend", "torch", *models],
        "run_torch_crowd": ["sleep", "30"],
    }
    for name, cmd in steps.items():
        gc.run_step(name, 1 if name == "run_torch_crowd" else 60, cmd, work, work / "gpu_check.log", deadline)
    (work / "env.json").write_text(
        json.dumps({"gpu": {"name": "NVIDIA H200"}, "versions": {"torch": "2.11"}})
    )
    return work


def test_pytest_counts_come_from_the_closing_line(work):
    text = (work / "pytest_gpu.out").read_text()
    got = gc.parse_pytest(text)
    assert {k: got[k] for k in ("passed", "failed", "skipped", "errors", "xfailed", "deselected")} == {
        "passed": 2,
        "failed": 1,
        "skipped": 1,
        "errors": 1,
        "xfailed": 1,
        "deselected": 1,
    }
    assert got["warnings"] >= 1  # the unregistered `other` mark
    assert got["summary"].startswith("1 failed, 2 passed, 1 skipped, 1 deselected, 1 xfailed")
    assert got["seconds"] is not None
    short = got["short_summary"]
    assert any(s.startswith("FAILED") and "test_c" in s for s in short)
    assert any(s.startswith("ERROR") and "test_f" in s for s in short)
    assert any(s.startswith("SKIPPED") and "not here" in s for s in short)


def test_a_pytest_run_cut_off_before_its_closing_line_is_counted_from_its_progress_marks(work):
    lines = (work / "pytest_gpu.out").read_text().splitlines()
    got = gc.parse_pytest(
        "\n".join(lines[: next(i for i, s in enumerate(lines) if "short test summary" in s)])
    )
    assert (got["complete"], got["summary"], got["seconds"]) == (False, None, None)
    counts = {k: got[k] for k in ("passed", "failed", "skipped", "errors", "xfailed", "deselected")}
    assert counts == {"passed": 2, "failed": 1, "skipped": 1, "errors": 1, "xfailed": 1, "deselected": 0}


def test_bench_rows_come_from_the_printed_table(work):
    rows = gc.parse_bench_table((work / "bench_onnxruntime.out").read_text())
    assert [(r["backend"], r["batch"]) for r in rows] == [("onnxruntime", 1), ("onnxruntime", 2)]
    for r in rows:
        assert r["faces_per_s"] > 0 and r["ms_per_batch"] > 0
        assert 97 <= r["pre_pct"] + r["infer_pct"] + r["post_pct"] <= 103


def test_run_figures_come_from_summary_json(work):
    summary = json.loads((work / "run_onnxruntime_single" / "summary.json").read_text())
    got = gc.run_figures(summary)
    assert got["input"] == "pyfeat_single_face.mp4" and got["backend_ran"] == "onnxruntime"
    assert got["fps"] == summary["timings"]["end_to_end_fps"] > 0
    assert got["frames"] == 72 and got["detector"] == "yunet"
    assert {"decode", "detect", "infer"} <= set(got["stage_ms_per_frame"])
    assert got["stage_ms_per_frame"]["infer"] == summary["timings"]["stages"]["infer"]["ms_per_frame"]


def test_the_combined_report_holds_every_step_and_says_what_is_missing(work):
    report = gc.combine(work)
    assert [s["name"] for s in report["steps"]] == [
        "pytest_gpu",
        "bench_onnxruntime",
        "run_onnxruntime_single",
        "run_torch_single",
        "run_torch_crowd",
    ]
    status = {s["name"]: s["status"] for s in report["steps"]}
    assert status["run_torch_single"] == "failed" and status["run_torch_crowd"] == "timeout"
    runs = {r["step"]: r for r in report["runs"]}
    assert runs["run_torch_single"]["error"] == "no summary.json (step failed)"
    assert runs["run_torch_crowd"]["clip"] == gc.CLIPS["crowd"]
    row = next(r for r in report["fps_table"] if r["clip"] == "pyfeat_single_face.mp4")
    assert (
        row["fps"]["onnxruntime"] > 0
        and row["fps"]["torch"] is None
        and row["torch_over_onnxruntime"] is None
    )
    assert report["pytest"]["pytest_gpu"]["failed"] == 1 and len(report["bench"]) == 2
    assert report["env"]["gpu"]["name"] == "NVIDIA H200"


def test_the_report_is_at_most_eight_files_no_deeper_than_two_folders(work, tmp_path):
    out = tmp_path / "out"
    paths = ["--work", str(work), "--out", str(out), "--prepared", str(tmp_path / "none.json")]
    done = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "combine", *paths],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    files = [p for p in out.rglob("*") if p.is_file()]
    assert sorted(p.name for p in files) == ["gpu_check.json", "gpu_check.md"]
    assert len(files) <= 8 and all(len(p.relative_to(out).parts) <= 3 for p in files)
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["schema"] == "emostream-gpu-check/1" and report["prepared"] is None
    md = (out / "gpu_check.md").read_text()
    for heading in ("## Steps", "## Tests", "## Bench (faces/s)", "## Runs (end-to-end)"):
        assert heading in md
    assert "- run_torch_single: no summary.json (step failed)" in md
    assert "| pytest_gpu | 2 | 1 | 1 | 1 | 1 |" in md
    assert "no GPU row measured" in md
