"""The OpenCV window of `emostream live` on a real (virtual) X display: frames are shown and q stops the run;
a window asked for after PyAV was loaded is a clear error instead of a hang."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import pipeline.live.window as live_window
from pipeline.live.window import WindowDisplay, WindowError
from tests.conftest import REPO

XVFB, XDOTOOL = shutil.which("Xvfb"), shutil.which("xdotool")


def test_a_window_after_pyav_is_an_error_not_a_hang(monkeypatch):
    import av  # noqa: F401  (loaded, as in any process that decoded video)

    monkeypatch.setattr(live_window, "_prepared", False)
    with pytest.raises(WindowError, match="prepare_gui"):
        WindowDisplay("emostream test")
    with pytest.raises(WindowError, match="before PyAV"):
        live_window.prepare_gui()


@pytest.fixture
def x_display():
    """A virtual X display (Xvfb) for the duration of one test."""
    if XVFB is None or XDOTOOL is None:
        pytest.skip("window: Xvfb and xdotool are not installed (apt-get install -y xvfb xdotool)")
    # -displayfd: Xvfb picks a free display and writes its number once it accepts connections, so the
    # test neither races the server's start nor collides with another display
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(
        [XVFB, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24"],
        pass_fds=(write_fd,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as ready:
            number = ready.readline().strip()  # "" if Xvfb exited without a display
        assert number.isdigit(), "Xvfb did not start"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_q_in_the_window_stops_the_run(media_dir, tmp_path, x_display):
    out = tmp_path / "out"
    env = {**os.environ, "DISPLAY": x_display}
    video = str(media_dir / "pexels_woman_emotions.mp4")
    cmd = [sys.executable, "-m", "pipeline.cli", "live", "--source", video, "--realtime", "--out", str(out),
           "--max-seconds", "60"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        window = _wait_for_window(env, proc)
        _wait_for_rows(out / "latency.csv", 10, proc)
        subprocess.run([XDOTOOL, "windowfocus", "--sync", window], env=env, check=True, timeout=30)
        subprocess.run([XDOTOOL, "key", "q"], env=env, check=True, timeout=30)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["stop_reason"] == "quit" and s["frames_processed"] >= 10
    assert s["frames_captured"] == s["frames_processed"] + s["frames_dropped"]


def _wait_for_window(env: dict, proc) -> str:
    for _ in range(1200):  # a hang guard, not a timing claim
        found = subprocess.run([XDOTOOL, "search", "--name", "emostream live"], env=env, capture_output=True)
        if found.stdout.strip():
            return found.stdout.split()[0].decode()
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    pytest.fail("the live window never appeared")


def _wait_for_rows(path, n: int, proc) -> None:
    for _ in range(1200):
        if path.exists() and len(path.read_text().splitlines()) > n:
            return
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        time.sleep(0.05)
    pytest.fail(f"{path} never reached {n} rows")
