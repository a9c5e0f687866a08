"""Issue 15 end to end: two runs on one folder, a signal while the end-of-run files are written, a full
disk, an unusable cache folder, a live source that stays away, and a library import that changes nothing.

Each drives the real `emostream` command (or the library in a fresh interpreter) on real media.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading

import av
import pytest

from pipeline.cli import main as cli
from pipeline.live import run as live_run
from tests.conftest import REPO
from tests.live_sources import StalledSource, face_tiles

SEED = 20261215
SHORT = "pyfeat_single_face.mp4"  # 72 frames
MEDIUM = "pexels_woman_emotions.mp4"  # 472 frames


def _emostream(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        **kw,
    )


def _decoded_frames(path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def _assert_consistent(out, summary, frames=None) -> None:
    """faces.jsonl, summary.json, tracks.csv and annotated.mp4 describe the same frames."""
    rows = [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]
    n = summary["frames_processed"]
    assert frames is None or n == frames
    assert len(rows) == summary["faces"] == summary["outputs"]["faces.jsonl"]
    assert not rows or max(r["frame"] for r in rows) <= n - 1
    assert _decoded_frames(out / "annotated.mp4") == n == summary["outputs"]["annotated.mp4"]
    assert (out / "tracks.csv").read_text().count("\n") == summary["tracks"] + 1
    assert (out / "timeline.png").exists() == summary["outputs"]["timeline.png"]
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name], "a temporary file was left behind"


def test_two_runs_into_one_folder_one_is_refused_with_one_line(media_dir, tmp_path):
    out = tmp_path / "out"
    procs = [_emostream("run", media_dir / MEDIUM, "--out", out) for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err) for p, _, err in results]
    winner = next(p for p, _, _ in results if p.returncode == 0)
    (refused,) = [err for p, _, err in results if p.returncode == 2]
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused
    # the owner's pid is named once its lock file holds it ("pid unknown" if read in the instant before)
    named = f"pid {winner.pid}" in lines[0] or "pid unknown" in lines[0]
    assert str(out) in lines[0] and named and "in use by another" in lines[0]
    _assert_consistent(out, json.loads((out / "summary.json").read_text()), frames=472)


_FINALISE = textwrap.dedent(
    """
    import os, random, sys, threading
    from pipeline.cli.main import main
    from pipeline.io import summary

    seed, signum, src, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    real = summary.write_tracks_csv

    def tracks_csv(*args):  # the frames are done: signal at a random point of what follows
        delay = random.Random(seed).uniform(0.0, 0.6)
        threading.Timer(delay, os.kill, (os.getpid(), signum)).start()
        return real(*args)

    summary.write_tracks_csv = tracks_csv
    sys.exit(main(["run", src, "--out", out]))
    """
)


@pytest.mark.parametrize("trial", range(4))
def test_a_signal_while_the_end_files_are_written_loses_nothing(media_dir, tmp_path, trial):
    sig = [signal.SIGINT, signal.SIGTERM][trial % 2]
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", _FINALISE, str(SEED + trial), str(int(sig)), str(media_dir / SHORT), str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode in (0, 130), proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is False  # every frame was done before the signal
    _assert_consistent(out, summary, frames=72)


@contextlib.contextmanager
def _small_disk(path, size="3m"):
    """A tmpfs of `size` at `path` (we run as root in CI); skipped where mounting is not allowed (the
    writers' ENOSPC handling is also tested without a mount, in tests/pipeline/io/test_integrity.py)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()[:120]}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize(
    ("mode", "size"), [("run", "3m"), ("run --no-video", "48k"), ("live", "1m"), ("live --no-video", "48k")]
)
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_whole_lines(media_dir, tmp_path, mode, size):
    """With --no-video faces.jsonl is what fills the disk: the old code tore its last line and said only
    "No space left on device"."""
    with _small_disk(tmp_path / "disk", size) as disk:
        out = disk / "out"
        live = ["live", "--source", media_dir / MEDIUM, "--realtime", "--no-window", "--max-seconds", "60"]
        args = ["run", media_dir / MEDIUM] if mode.startswith("run") else live
        proc = _emostream(*args, *mode.split()[1:], "--out", out)
        _, stderr = proc.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2, stderr
        assert "Traceback" not in stderr and len(lines) == 1
        assert str(out) in lines[0] and "No space left on device" in lines[0], lines[0]
        if "--no-video" in mode:
            assert "faces.jsonl" in lines[0] or "latency.csv" in lines[0], lines[0]
        text = (out / "faces.jsonl").read_text()
        assert not text or text.endswith("\n"), "the last line is torn"
        for line in text.splitlines():
            json.loads(line)
        assert not [p.name for p in out.iterdir() if ".tmp" in p.name], list(out.iterdir())


def test_an_unusable_cache_folder_is_one_warning_and_the_run_goes_on(media_dir, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should be")
    env = {**os.environ, "EMOSTREAM_CACHE_DIR": str(blocker)}
    proc = _emostream("run", media_dir / "pyfeat_happy_f15.jpg", "--out", tmp_path / "out", env=env)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("emostream: warning:")]
    assert len(warnings) == 1 and str(blocker) in warnings[0] and "cache folder" in warnings[0], stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["faces"] == 1


_IMPORT = textwrap.dedent(
    """
    import sys, threading
    import cv2, matplotlib
    cv2.setNumThreads(3)
    matplotlib.use("svg")
    hooks = len(getattr(threading, "_threading_atexits", []))
    import pipeline.api, pipeline.io.plots, pipeline.live.run, pipeline.runtime.offline
    import pipeline.stages.detect
    assert cv2.getNumThreads() == 3, ("import", cv2.getNumThreads())
    assert matplotlib.get_backend() == "svg", ("import", matplotlib.get_backend())
    assert len(getattr(threading, "_threading_atexits", [])) == hooks, "a shutdown hook at import"
    from pipeline.runtime.offline import OfflineJob, run_job
    s = run_job(OfflineJob(input=sys.argv[1], out_dir=sys.argv[2]))
    assert s["outputs"]["timeline.png"]
    assert cv2.getNumThreads() == 3, ("run", cv2.getNumThreads())
    assert matplotlib.get_backend() == "svg", ("run", matplotlib.get_backend())
    """
)


def test_importing_and_using_the_library_keeps_the_process_settings(media_dir, tmp_path):
    subprocess.run(
        [sys.executable, "-c", _IMPORT, str(media_dir / SHORT), str(tmp_path / "out")],
        check=True,
        cwd=REPO,
        timeout=300,
    )


def test_live_says_how_long_it_had_no_source_and_exits_3(media_dir, monkeypatch, capsys):
    release = threading.Event()
    source = StalledSource(face_tiles(media_dir), frames_before=15, release=release)
    monkeypatch.setattr(live_run, "open_live_source", lambda job: source)
    try:
        code = cli.main(["live", "--source", "stalled", "--max-seconds", "5", "--no-window"])
    finally:
        release.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    err = capsys.readouterr().err
    assert code == 3, err
    (line,) = [x for x in err.splitlines() if "warning" in x]
    assert "stalled: no frames for" in line and "of 5." in line
