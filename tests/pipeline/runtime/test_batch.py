"""Many inputs: a folder with good, bad and already finished inputs, through the command line."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.distributed.engine import LocalEngine
from pipeline.runtime.batch import BatchInput, expand_inputs, is_batch, run_batch
from pipeline.runtime.offline import OfflineJob
from tests.pipeline.cli.test_main import emostream


def _index(out):
    return {r["input"]: r for r in csv.DictReader((out / "index.csv").read_text().splitlines())}


def _folder(media_dir, root):
    """root/a.jpg, root/sub/b.png (photos: fast), root/sub/bad.mp4 (noise), root/notes.txt (ignored)."""
    (root / "sub").mkdir(parents=True)
    os.symlink(media_dir / "pyfeat_happy_f15.jpg", root / "a.jpg")
    shutil.copy(
        media_dir / "pyfeat_upside_down_face.png", root / "sub" / "b.png"
    )  # a test copy, not committed
    (root / "sub" / "bad.mp4").write_bytes(bytes(range(256)) * 64)
    (root / "notes.md").write_text("not media\n")
    return root


@pytest.mark.slow  # three runs of the command, each loading the models (~30 s on 2 cores)
def test_folder_with_good_bad_and_finished_inputs(media_dir, tmp_path):
    src, out = _folder(media_dir, tmp_path / "in"), tmp_path / "out"
    first = emostream("run", src, "--out", out)
    assert first.returncode == 3, first.stderr
    assert "bad.mp4" in first.stderr and "Traceback" not in first.stderr
    rows = _index(out)
    assert {os.path.basename(k): v["status"] for k, v in rows.items()} == {
        "a.jpg": "done",
        "b.png": "done",
        "bad.mp4": "failed",
    }
    assert (out / "a.jpg" / "annotated.jpg").is_file() and (out / "sub" / "b.png" / "annotated.png").is_file()
    assert not (out / "sub" / "bad.mp4").exists()  # no empty folder for the bad file
    bad = next(v for k, v in rows.items() if k.endswith("bad.mp4"))
    assert "bad.mp4" in bad["error"]
    done = next(v for k, v in rows.items() if k.endswith("a.jpg"))
    assert done["faces"] == "1" and done["frames"] == "1" and float(done["seconds"]) > 0

    # an unfinished run (no marker) is redone, finished ones are skipped
    (out / "sub" / "b.png" / "finished.json").unlink()
    again = emostream("run", src, "--out", out)
    rows = _index(out)
    status = {os.path.basename(k): v["status"] for k, v in rows.items()}
    assert again.returncode == 3 and status == {"a.jpg": "skipped", "b.png": "done", "bad.mp4": "failed"}
    assert (
        rows[next(k for k in rows if k.endswith("a.jpg"))]["faces"] == "1"
    )  # counts kept from the first run
    redo = emostream("run", src, "--out", out, "--overwrite", "--no-video")
    assert {os.path.basename(k): v["status"] for k, v in _index(out).items()}["a.jpg"] == "done", redo.stderr
    marker = json.loads((out / "a.jpg" / "finished.json").read_text())
    assert marker["status"] == "done" and marker["faces"] == 1


def test_globs_lists_and_paths_name_their_inputs(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    for name in ("d/x.mp4", "d/e/y.jpg", "d/.hidden/z.mp4", "d/readme.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.txt").write_text("# clips\nd/x.mp4\n\nd/e/y.jpg\n")
    rel = lambda items: sorted(str(i.rel_out) for i in items)  # noqa: E731
    assert rel(expand_inputs([str(tmp_path / "d")])) == ["e/y.jpg", "x.mp4"]
    assert rel(expand_inputs([str(tmp_path / "d" / "**" / "*.mp4")])) == ["x.mp4"]
    assert rel(expand_inputs([str(tmp_path / "list.txt")])) == ["d/e/y.jpg", "d/x.mp4"]
    one = str(tmp_path / "d" / "x.mp4")
    assert expand_inputs([one]) == [BatchInput(one, Path("x.mp4"))]
    assert is_batch([str(tmp_path / "d")]) and is_batch(["a.mp4", "b.mp4"]) and is_batch(["*.mp4"])
    assert not is_batch([str(tmp_path / "d" / "x.mp4")])


class _RetryingEngine(LocalEngine):
    """Runs every unit twice and yields the second result: what Ray does when a worker dies after the
    unit wrote its finished marker but before its result reached the driver."""

    def map(self, work, tasks):
        state = work.setup()
        try:
            for task in tasks:
                work.run(state, *task)
                yield work.run(state, *task)
        finally:
            work.close(state)


def test_a_unit_retried_after_it_finished_reads_as_done_not_skipped(media_dir, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    os.symlink(media_dir / "pyfeat_happy_f15.jpg", src / "a.jpg")
    out = tmp_path / "out"
    job = OfflineJob(input="", out_dir=out, write_video=False)
    (result,) = run_batch(expand_inputs([str(src)]), out, job, engine=_RetryingEngine())
    assert result.status == "done" and result.faces == 1 and result.seconds > 0
    assert _index(out)[str(src / "a.jpg")]["status"] == "done"
    (again,) = run_batch(expand_inputs([str(src)]), out, job, engine=_RetryingEngine())
    assert again.status == "skipped"  # finished before this run began: skipped, as always
