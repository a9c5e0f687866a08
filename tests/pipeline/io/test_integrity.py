"""Issue 15 at the writer level: one run per folder, whole JSONL frames on a full disk, errors naming the
file, the summary written before (and despite) the plot, and a timeline reader with bounded memory."""

from __future__ import annotations

import errno
import json
import os
import types

import numpy as np
import pytest

from engines.files import write_atomic
from pipeline.errors import OutputError
from pipeline.frames import EMOTIONS
from pipeline.io import plots, sinks, summary
from pipeline.io.outlock import LOCK_NAME, OutDirLock, claimed_out_dir
from pipeline.io.sinks import JsonlSink
from tests.builders import make_batch


def _batch(frame_index, n=2):
    emo = np.full((n, 7), 1 / 7, np.float32)
    boxes = [[10 + 50 * i, 10, 50 + 50 * i, 60] for i in range(n)]
    return make_batch(boxes, frame_index=frame_index, track_ids=list(range(1, n + 1))).with_outputs(
        emotion=emo
    )


def test_a_second_claim_on_a_folder_is_refused_naming_it_and_the_holder(tmp_path):
    with claimed_out_dir(tmp_path / "out", overwrite=False) as out:
        (out / "faces.jsonl").write_text("")
        with pytest.raises(OutputError) as err, claimed_out_dir(tmp_path / "out", overwrite=True):
            pass
        message = str(err.value)
        assert str(tmp_path / "out") in message and f"pid {os.getpid()}" in message and "\n" not in message
        assert (out / "faces.jsonl").exists(), "the refused run must not remove the holder's files"
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    with claimed_out_dir(tmp_path / "out", overwrite=True):  # free again once released
        pass


def test_a_lock_file_left_by_a_dead_run_does_not_block(tmp_path):
    (tmp_path / LOCK_NAME).write_text("pid 1: emostream run x\n")  # flock died with its process
    OutDirLock(tmp_path).release()


class _FullDisk:
    """os.write that takes `room` more bytes, then fails with ENOSPC (a partial write first)."""

    def __init__(self, room: int) -> None:
        self.room, self.real = room, os.write

    def __call__(self, fd, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.real(fd, bytes(data[: self.room]))
        self.room -= n
        return n


def test_a_full_disk_never_leaves_a_torn_line_and_the_error_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "faces.jsonl"
    sink = JsonlSink(path)
    sink.write(_batch(0))
    whole = path.stat().st_size
    monkeypatch.setattr(sinks.os, "write", _FullDisk(room=whole // 2 + 7))
    with pytest.raises(OutputError) as err:
        sink.write(_batch(1))
    sink.close()
    assert str(path) in str(err.value) and "No space left" in str(err.value)
    lines = path.read_text().splitlines()
    assert path.stat().st_size == whole and len(lines) == 2 == sink.lines
    assert all(json.loads(line)["frame"] == 0 for line in lines)


def test_an_atomic_write_on_a_full_disk_names_the_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", full)
    with pytest.raises(OSError) as err:
        write_atomic(tmp_path / "tracks.csv", "track_id\n")
    assert err.value.filename == str(tmp_path / "tracks.csv")
    assert os.listdir(tmp_path) == []


def _track(tid, emotion=True):
    mean = np.full(7, 1 / 7) if emotion else np.full(7, np.nan)
    return types.SimpleNamespace(
        track_id=tid, first_frame=0, last_frame=3, first_time_s=0.0, last_time_s=0.1, frames_seen=4,
        mean_emotion=mean, dominant_emotion="happy" if emotion else None, gender=None, mean_gender=None,
        mean_age=None,
    )  # fmt: skip


def test_a_plot_that_cannot_be_written_does_not_stop_the_summary(tmp_path, monkeypatch):
    sink = JsonlSink(tmp_path / "faces.jsonl")
    for i in range(3):
        sink.write(_batch(i))
    sink.close()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "plot_timeline", no_space)
    s = {"frames_processed": 3, "outputs": {"timeline.png": True}}
    with pytest.raises(OutputError, match=r"timeline\.png: cannot be written"):
        summary.write_end_files(tmp_path, [_track(1), _track(2)], "clip.mp4", s)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["frames_processed"] == 3 and written["outputs"]["timeline.png"] is False
    assert "No space left" in written["outputs"]["timeline_error"]
    assert (tmp_path / "tracks.csv").read_text().count("\n") == 3
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name]


def test_the_summary_is_on_disk_before_the_plot_starts(tmp_path, monkeypatch):
    JsonlSink(tmp_path / "faces.jsonl").close()
    seen = []
    monkeypatch.setattr(
        plots, "plot_timeline", lambda *a, **k: seen.append((tmp_path / "summary.json").exists())
    )
    summary.write_end_files(tmp_path, [], "x", {"outputs": {"timeline.png": False}})
    assert seen == [True]


def test_the_timeline_reader_thins_while_reading(tmp_path, monkeypatch):
    """Only the kept points are ever parsed: memory follows max_points x max_tracks, not the file."""
    path = tmp_path / "faces.jsonl"
    sink = JsonlSink(path)
    for i in range(3000):
        sink.write(_batch(i, n=3 if i < 100 else 2))
    sink.close()
    parsed = []
    real = json.loads
    monkeypatch.setattr(plots.json, "loads", lambda s: parsed.append(1) or real(s))
    series = plots.read_track_series(path, max_tracks=2, max_points=500)
    assert sorted(series) == [1, 2]
    assert all(len(t) == 500 and p.shape == (500, len(EMOTIONS)) for t, p in series.values())
    assert len(parsed) == 1000  # 500 per kept track; the other 6,100 rows were never parsed
    t, _ = series[1]
    assert t[0] == 0.0 and np.all(np.diff(t) > 0)
