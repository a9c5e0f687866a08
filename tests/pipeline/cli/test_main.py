"""The command line as a user meets it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def emostream(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


def _bad_inputs(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 50)
    (tmp_path / "folder.mp4").mkdir()
    return ["empty.mp4", "noise.mp4", "notes.mp4", "folder.mp4", "missing.mp4"]


def test_bad_inputs_exit_2_with_one_line_naming_the_file(tmp_path):
    for name in _bad_inputs(tmp_path):
        r = emostream("run", tmp_path / name, "--out", tmp_path / f"out-{name}", "--no-video")
        assert r.returncode == 2, (name, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr and name in lines[0], (name, r.stderr)


def test_run_on_a_photo_then_refuses_to_mix_runs(media_dir, tmp_path):
    out = tmp_path / "out"
    r = emostream("run", media_dir / "fer_justin_smile.jpg", "--out", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faces"] == 1 and summary["input"]["is_still"]
    again = emostream("run", media_dir / "fer_justin_smile.jpg", "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    photo = media_dir / "fer_justin_smile.jpg"
    big = emostream("run", photo, "--out", out, "--overwrite", "--min-face", "2000")
    assert big.returncode == 0, big.stderr
    tracking = json.loads((out / "summary.json").read_text())["tracking"]
    assert tracking["min_face_px"] == 2000 and tracking["faces_below_min_face"] == 1  # tracked, not inferred


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run", "x.mp4", "--out", "o", "--detect-every", "0"], "--detect-every"),
        (["run", "x.mp4", "--out", "o", "--detector", "nope"], "invalid choice"),
        (["run", "x.mp4", "--out", "o", "--min-face", "-1"], "--min-face"),
        (["models", "verify", "no-such-model"], "no-such-model"),
        # raised in the subcommand modules
        (["live", "--serve", "localhost:x"], "--serve"),
        (["live", "--source", "x.mp4", "--max-seconds", "0"], "--max-seconds"),
        (["bench", "--batches", "eight"], "--batches"),
        (["train", "no_such_folder", "--out", "run", "--epochs", "1"], "FER+ folder not found"),
        (["train", "no_such_folder", "--out", "run", "--jigsaw", "-1"], "--jigsaw is a loss weight"),
        (["train", "no_such_folder", "--out", "run", "--device", "tpu9"], "--device tpu9"),
    ],
)
def test_usage_errors(tmp_path, args, fragment):
    r = emostream(*args, cwd=tmp_path)
    assert r.returncode == 2 and fragment in r.stderr and "Traceback" not in r.stderr


def test_models_list_and_verify_read_the_mirror(models_dir):
    listed = emostream("models", "list", "--models-dir", models_dir)
    assert listed.returncode == 0 and "yunet" in listed.stdout and "mirror" in listed.stdout
    assert listed.stdout.split()[:3] == ["NAME", "TASK", "WHERE"]
    verified = emostream("models", "verify", "yunet", "fer_mini_xception", "--models-dir", models_dir)
    assert verified.returncode == 0 and verified.stdout.count(" ok ") == 2


def test_version_and_user_facing_help():
    from pipeline import __version__

    r = emostream("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"emostream {__version__}"
    top = emostream("--help").stdout
    assert "exit codes" in top and "Heavy modules" not in top and "command line." not in top


def test_a_failed_run_leaves_no_output_folder(tmp_path):
    (tmp_path / "noise.mp4").write_bytes(bytes(range(256)) * 64)
    r = emostream("run", tmp_path / "noise.mp4", "--out", tmp_path / "results" / "x")
    assert r.returncode == 2 and not (tmp_path / "results").exists()
    r = emostream("run", tmp_path / "noise.mp4", "--out", tmp_path / "o", "--start", "2", "--end", "1")
    assert r.returncode == 2 and "--end" in r.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "the following arguments are required: command"),
        (["nope"], "invalid choice: 'nope'"),
        (["run"], "the following arguments are required: input, --out"),
        (["run", "x.mp4", "--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "x.mp4", "--out", "o", "--detect-every", "two"], "invalid int value: 'two'"),
        (["run", "x.mp4", "--out", "o", "--max-pixels", "lots"], "--max-pixels"),
        (["live", "--camera", "0", "--source", "x.mp4"], "not allowed with argument --camera"),
        (["score", "ds"], "required"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, args, fragment):
    """argparse prints 3-8 lines of usage; the promise is one line and exit code 2."""
    r = emostream(*args, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("emostream: error: ") and fragment in lines[0] and "--help" in lines[0]


def test_a_file_name_starting_with_a_dash_gets_the_double_dash_hint_and_works_after_it(media_dir, tmp_path):
    (tmp_path / "-dash.jpg").write_bytes((media_dir / "fer_justin_smile.jpg").read_bytes())
    r = emostream("run", "-dash.jpg", "--out", "out", "--no-video", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "after '--'" in lines[0], r.stderr
    ok = emostream("run", "--out", "out", "--no-video", "--", "-dash.jpg", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["faces"] == 1


def test_max_pixels_reduces_a_jpeg_and_refuses_a_png_over_it(media_dir, tmp_path):
    """fer_justin_smile.jpg is 381x384 (0.15 MP): within 0.01 MP only at 1/4 (96x96)."""
    r = emostream("run", media_dir / "fer_justin_smile.jpg", "--out", tmp_path / "a", "--max-pixels", "0.01M")
    assert r.returncode == 0, r.stderr
    facts = json.loads((tmp_path / "a" / "summary.json").read_text())["input"]
    assert facts["decoded_at_scale"] == 4 and (facts["width"], facts["height"]) == (96, 96)
    png = media_dir / "pyfeat_upside_down_face.png"
    r = emostream("run", png, "--out", tmp_path / "b", "--max-pixels", "10000")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "over the pixel budget of 0.01 MP" in lines[0], r.stderr
