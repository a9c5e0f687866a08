"""Every input of the bad-input corpus through `emostream run` as a user would run it (issue 7).

Unusable -> exit 2 and one line naming the file; partly readable -> exit 3, outputs valid, loss reported;
odd but valid -> exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import av
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
    with av.open(str(out / "annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == summary["frames_processed"]
    if name in {"still-image-as.mp4", "8k.png", "grayscale.png", "16-bit.png"}:
        assert summary["faces"] == 1
