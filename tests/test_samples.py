"""The example programs run as a user would run them."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_iterate_faces_prints_emotion_changes(media_dir):
    r = subprocess.run(
        [sys.executable, REPO / "samples/iterate_faces.py", media_dir / "pyfeat_single_face.mp4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "track 1:" in r.stdout and "happy" in r.stdout


def test_process_file_writes_outputs(media_dir, tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            REPO / "samples/process_file.py",
            media_dir / "pyfeat_single_face.mp4",
            tmp_path / "out",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "72 frames" in r.stdout and (tmp_path / "out" / "annotated.mp4").exists()
