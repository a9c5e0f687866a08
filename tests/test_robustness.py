"""Every input of the bad-input corpus through `emostream run` as a user would run it (issues 7, 16).

Unusable -> exit 2 and one line naming the file; partly readable -> exit 3, outputs valid, loss reported;
odd but valid -> exit 0. Hostile ones (issue 16) also within bounded memory and time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import pytest

from tests import badinputs as B


def emostream(*args, as_nobody: bool = False):
    cmd = [sys.executable, "-m", "pipeline.cli", *map(str, args)]
    env = dict(os.environ)
    if as_nobody:  # root reads anything: drop to an unprivileged user so permissions mean something
        if not shutil.which("setpriv"):
            pytest.skip("running as root and setpriv is missing: cannot test a permission error")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        env["HOME"] = "/tmp"
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)


@pytest.fixture
def folder():
    """A folder the unprivileged user can reach too (pytest's own tmp root is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="emostream-bad-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("name", list(B.UNUSABLE))
def test_unusable_input_exits_2_with_one_line(folder, media_dir, name):
    path = B.build(B.UNUSABLE, name, folder, media_dir)
    r = emostream(
        "run", path, "--out", folder / "out", as_nobody=name == "unreadable.mp4" and os.geteuid() == 0
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and "Traceback" not in r.stderr and path.name in lines[0]


@pytest.mark.parametrize("name", list(B.PARTIAL))
def test_partly_readable_input_keeps_what_decodes(folder, media_dir, name):
    path = B.build(B.PARTIAL, name, folder, media_dir)
    out = folder / "out"
    r = emostream("run", path, "--out", out)
    assert r.returncode == 3, r.stderr
    assert "only partly readable" in r.stderr and "Traceback" not in r.stderr
    summary = json.loads((out / "summary.json").read_text())
    n = summary["frames_processed"]
    assert 0 < n < 472 and summary["input"]["decode_errors"] >= 1
    assert "of 472" in summary["input"]["last_error"]
    rows = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    assert len(rows) == summary["faces"] and max(r_["frame"] for r_ in rows) == n - 1
    with av.open(str(out / "annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == n


@pytest.mark.parametrize("name", list(B.ODD))
def test_odd_but_valid_input_just_works(folder, media_dir, name):
    path = B.build(B.ODD, name, folder, media_dir)
    out = folder / "out"
    r = emostream("run", path, "--out", out)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] >= 1
    if summary["input"]["is_still"]:  # a photo gives a picture at full resolution, not a video
        assert not (out / "annotated.mp4").exists()
        annotated = next(k for k in summary["outputs"] if k.startswith("annotated"))
        picture = cv2.imread(str(out / annotated))
        assert picture.shape[:2] == (summary["input"]["height"], summary["input"]["width"])
    else:
        with av.open(str(out / "annotated.mp4")) as c:
            assert sum(1 for _ in c.decode(video=0)) == summary["frames_processed"]
    if name in {"still-image-as.mp4", "8k.png", "grayscale.png", "16-bit.png", "panorama-16400x1200.jpg"}:
        assert summary["faces"] == 1


@pytest.mark.parametrize(
    ("name", "fragment", "frames"),
    [
        ("corrupt-run-mid.mp4", "damaged packets", range(400 - 100 - 24, 300)),
        ("trailing-garbage.ts", "trailing garbage", range(48, 49)),
    ],
)
def test_damage_mid_file_or_after_the_video_keeps_the_good_part_and_exits_3(
    folder, media_dir, name, fragment, frames
):
    path = B.build(B.DAMAGED, name, folder, media_dir)
    out = folder / "out"
    r = emostream("run", path, "--out", out)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 3 and len(lines) == 1 and fragment in lines[0] and path.name in lines[0], r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] in frames and fragment in summary["input"]["last_error"]
    with av.open(str(out / "annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == summary["frames_processed"]


def test_a_huge_image_is_refused_from_its_header_in_bounded_memory(folder, media_dir):
    """40000x40000 (1.6 gigapixels, 200 KB): OpenCV alone needs 4.8 GB or raises; the header says no first."""
    path = B.build(B.UNUSABLE, "huge-40000x40000.png", folder, media_dir)
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(path), "--out", str(folder / "out")]
    code, stderr, peak_mb = B.run_measured(cmd, timeout_s=300)
    assert code == 2 and "over the pixel budget of 100 MP" in stderr and "Traceback" not in stderr
    assert peak_mb < 400, f"peak {peak_mb:.0f} MB"


def test_a_fifo_nobody_writes_to_and_a_server_that_never_answers_are_timeouts(folder):
    fifo = folder / "camera.fifo"
    os.mkfifo(fifo)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"rtsp://admin:s3cret@127.0.0.1:{listener.getsockname()[1]}/live"
        for source, fragment in ((fifo, "FIFO gave no data within 1 s"), (url, "no answer within 1 s")):
            t0 = time.monotonic()
            r = emostream("run", source, "--out", folder / "out", "--timeout", "1")
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1 and fragment in lines[0], r.stderr
            assert "timed out" in lines[0] and "s3cret" not in lines[0] and time.monotonic() - t0 < 60


def _live(path, out, as_nobody=False):
    return emostream(
        "live", "--source", path, "--max-seconds", "8", "--no-window", "--out", out, as_nobody=as_nobody
    )


@pytest.mark.parametrize(
    ("kind", "name", "code"),
    [(B.UNUSABLE, n, 2) for n in B.UNUSABLE]
    + [(B.DAMAGED, n, 3) for n in B.DAMAGED]
    + [
        (B.PARTIAL, "truncated-30pct.mp4", 3),
        (B.ODD, "1x1.png", 0),
        (B.ODD, "resolution-change.ts", 0),
        (B.ODD, "16-bit.png", 0),
        (B.ODD, "panorama-16400x1200.jpg", 0),  # annotated.mp4 scaled to what libx264 opens
    ],
)
def test_live_source_gives_the_same_word_as_run(folder, media_dir, kind, name, code):
    path = B.build(kind, name, folder, media_dir)
    r = _live(path, folder / "out", as_nobody=name == "unreadable.mp4" and os.geteuid() == 0)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if code:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and path.name in lines[0]
    if code != 2:
        summary = json.loads((folder / "out" / "summary.json").read_text())
        rows = (folder / "out" / "faces.jsonl").read_text().splitlines()
        assert all(json.loads(line) for line in rows)
        assert summary["frames_captured"] == summary["frames_processed"] + summary["frames_dropped"]


def _score(dataset, out, *extra):
    """Zero-shot scoring of a dataset's val split (no training: only reading the clips is tested)."""
    return emostream(*B.score_args(dataset, out), *extra)


def _dataset_with(folder, media_dir, bad_name):
    """AFEW layout: one good clip and one clip from the bad-input corpus in the eval split."""
    happy = folder / "ds" / "val" / "Happy"
    happy.mkdir(parents=True)
    shutil.copy(media_dir / "pyfeat_single_face.mp4", happy / "good.mp4")
    for kind in (B.UNUSABLE, B.PARTIAL):
        if bad_name in kind:
            src = B.build(kind, bad_name, folder, media_dir)
            shutil.copy(src, happy / "bad.mp4")
    return folder / "ds"


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("random-bytes.mp4", "could not be read"),
        ("audio-only.mp4", "could not be read"),
        ("truncated-30pct.mp4", "only partly readable"),
    ],
)
def test_score_reports_bad_clips_and_scores_the_rest(folder, media_dir, name, fragment):
    ds = _dataset_with(folder, media_dir, name)
    r = _score(ds, folder / "out", "--detect-every", "3")
    assert r.returncode == 3, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "bad.mp4" in lines[0]
    predictions = (folder / "out" / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 3  # header + both clips: the bad one still gets a (fallback) prediction


@pytest.mark.parametrize("dataset", ["missing-folder", "a-file.mp4", "empty-folder"])
def test_score_on_an_unusable_dataset_exits_2(folder, dataset):
    path = folder / dataset
    if dataset == "a-file.mp4":
        path.write_bytes(b"x")
    elif dataset == "empty-folder":
        path.mkdir()
    r = _score(path, folder / "out")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
