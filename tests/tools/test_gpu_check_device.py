"""tools/gpu_check `device` on a machine without CUDA (it must stop at once, in one line), and the step
runner every device step goes through: its own time limit, a hung step recorded, the next step still run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools import gpu_check as gc

REPO = Path(__file__).resolve().parents[2]
NO_CUDA = "gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing measured"


def _cuda_here() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def _device(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`bash tools/gpu_check.sh device ARGS` with this interpreter as the device's python3."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "GPU_CHECK_PYTHON": sys.executable,
    }
    return subprocess.run(
        ["bash", "tools/gpu_check.sh", "device", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        env=base | env,
    )


@pytest.mark.skipif(_cuda_here(), reason="this machine has CUDA: the no-CUDA exit cannot happen here")
def test_device_mode_without_cuda_stops_at_once_in_one_line(tmp_path):
    t0 = time.monotonic()
    done = _device(str(tmp_path / "out"))
    assert time.monotonic() - t0 < 30
    assert (done.returncode, done.stderr.splitlines(), done.stdout) == (2, [NO_CUDA], "")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["gpu_check.log"]
    assert (tmp_path / "out" / "gpu_check.log").read_text().splitlines() == [NO_CUDA]


def test_device_mode_without_torch_says_why_in_one_line(tmp_path):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no torch on this machine')\n")
    done = _device(OUT=str(tmp_path / "out"), PYTHONPATH=str(tmp_path / "fake"))
    assert done.returncode == 2
    why = "torch does not import: ImportError: no torch on this machine"
    assert done.stderr.splitlines() == [f"gpu_check: no CUDA device ({why}); nothing measured"]


def test_device_mode_needs_somewhere_to_write():
    done = _device()
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "gpu_check: device mode needs $OUT or an output folder argument; nothing measured"
    ]


def test_an_unknown_mode_prints_the_usage():
    done = subprocess.run(
        ["bash", "tools/gpu_check.sh"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2 and done.stderr.startswith("usage: bash tools/gpu_check.sh prepare")


def test_preflight_names_the_carried_files_it_lacks(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gc, "cuda_status", lambda: (True, "CUDA device 0: a GPU"))
    assert gc.preflight(tmp_path / "log", repo=tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gpu_check: carried files missing (.gpu/models/face_detection_yunet_2023mar.onnx, ")
    assert ".gpu/media/pexels_woman_emotions.mp4, .whl/av-*.whl)" in err
    assert err.endswith('carry [".whl", ".gpu"]; nothing measured')
    assert (tmp_path / "log").read_text().splitlines() == ["gpu_check: CUDA device 0: a GPU", err]


def test_preflight_warns_of_a_stale_carried_folder_and_still_measures(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gc, "cuda_status", lambda: (True, "CUDA device 0: a GPU"))
    needed = [f".gpu/models/{m}" for m in gc.RUN_MODELS] + [f".gpu/media/{c}" for c in gc.CLIPS.values()]
    for rel in needed:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / "av-1.0-x.whl").write_bytes(b"x")
    assert gc.preflight(tmp_path / "log", repo=tmp_path) == 0
    warning = capsys.readouterr().out.strip().splitlines()[-1]
    assert warning.startswith(f"gpu_check: warning: .gpu lacks test models ({gc.TEST_MODELS[0]}, ")
    assert "run prepare again" in warning


def _records(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines()]


def test_a_hung_step_is_recorded_and_the_next_step_still_runs(tmp_path, capsys):
    log, deadline = tmp_path / "log", time.time() + 300
    t0 = time.monotonic()
    hung = gc.run_step("hang", 1, ["sleep", "60"], tmp_path, log, deadline)
    assert time.monotonic() - t0 < 10
    after = gc.run_step("after", 30, [sys.executable, "-c", "print('still here')"], tmp_path, log, deadline)
    assert (hung["status"], hung["rc"], after["status"]) == ("timeout", 124, "ok")
    assert [r["name"] for r in _records(tmp_path)] == ["hang", "after"]
    out = capsys.readouterr().out
    assert "gpu_check: [hang] TIMED OUT (limit 1 s)" in out and "gpu_check: [after] ok" in out
    assert "still here" in log.read_text() and (tmp_path / "after.out").read_text() == "still here\n"


def test_a_failing_step_shows_its_exit_code_and_the_end_of_its_output(tmp_path, capsys):
    cmd = [sys.executable, "-c", "import sys; print('\\n'.join(map(str, range(30)))); sys.exit(3)"]
    record = gc.run_step("fails", 30, cmd, tmp_path, None, time.time() + 300)
    assert (record["status"], record["rc"]) == ("failed", 3)
    out = capsys.readouterr().out
    assert "gpu_check: [fails] FAILED (rc 3)" in out
    assert "    29" in out and "    10" in out and "    9\n" not in out  # the last 20 lines


def test_a_missing_program_is_a_failed_step(tmp_path):
    record = gc.run_step("nothing", 30, ["no-such-program-here"], tmp_path, None, time.time() + 300)
    assert (record["status"], record["rc"]) == ("failed", 127)


def test_steps_past_the_budget_are_skipped_not_run(tmp_path):
    marker = tmp_path / "ran"
    record = gc.run_step("late", 60, ["touch", str(marker)], tmp_path, None, time.time() + 5)
    assert record["status"] == "skipped" and not marker.exists()


def test_a_step_limit_is_cut_to_what_the_budget_has_left(tmp_path):
    record = gc.run_step("short", 600, ["true"], tmp_path, None, time.time() + 40)
    assert record["status"] == "ok" and record["limit_s"] <= 30


def test_the_step_command_line_takes_everything_after_the_double_dash(tmp_path, monkeypatch):
    monkeypatch.setenv("GPU_CHECK_WORK", str(tmp_path))
    monkeypatch.delenv("GPU_CHECK_LOG", raising=False)
    assert gc.main(["step", "echo", "30", "--tail", "1", "--", "echo", "--tail", "x"]) == 0
    assert (tmp_path / "echo.out").read_text() == "--tail x\n"


def test_env_facts_name_the_versions(tmp_path):
    done = subprocess.run(
        [sys.executable, "tools/gpu_check.py", "env", "--out", str(tmp_path / "env.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads((tmp_path / "env.json").read_text())
    import torch

    assert facts["versions"]["torch"] == torch.__version__
    assert facts["gpu"]["available"] == torch.cuda.is_available()
    assert "CPUExecutionProvider" in facts["onnxruntime_providers"]
