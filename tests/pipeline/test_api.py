"""`read_run`: a run's faces.jsonl and tracks.csv as pandas tables, checked against the JSONL it reads."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from pipeline.api import MissingExtraError, read_run
from pipeline.frames import EMOTIONS
from pipeline.io.sinks import JsonlSink, write_tracks_csv
from tests.builders import make_batch
from tests.pipeline.io.test_sinks import _track_summary

pd = pytest.importorskip("pandas")


def _write_run(out):
    sink = JsonlSink(out / "faces.jsonl")
    rng = np.random.default_rng(0)
    for i in range(4):
        emo = rng.dirichlet(np.ones(7), size=2).astype(np.float32)
        if i == 3:
            emo[1] = np.nan  # a face the net has not seen yet
        batch = make_batch(
            [[10, 10, 50, 60], [100, 20, 140, 70]], frame_index=i, track_ids=[1, 2], emotion=emo
        )
        sink.write(batch.with_outputs(gender=np.array([0.8, 0.3], np.float32)))
    sink.close()
    with open(out / "faces.jsonl", "a") as f:
        f.write('{"frame": 4, "time_s"')  # the torn line of a killed run
    write_tracks_csv(out / "tracks.csv", [_track_summary(track_id=1), _track_summary(track_id=2)])


def test_faces_table_has_a_row_per_face_and_a_column_per_emotion(tmp_path):
    _write_run(tmp_path)
    faces, tracks = read_run(tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()[:-1]]
    assert len(faces) == len(rows) == 8
    assert list(faces.columns[:16]) == [
        "frame",
        "time_s",
        "track_id",
        "x1",
        "y1",
        "x2",
        "y2",
        "score",
        "detected",
        *EMOTIONS,
    ]
    for (_, got), want in zip(faces.iterrows(), rows, strict=True):
        assert [got["x1"], got["y1"], got["x2"], got["y2"]] == want["xyxy"]
        probs = [np.nan if want["emotion"][e] is None else want["emotion"][e] for e in EMOTIONS]
        assert np.allclose(got[list(EMOTIONS)].to_numpy(float), probs, equal_nan=True)
        assert got["top_emotion"] == want.get("top_emotion", np.nan) or (
            pd.isna(got["top_emotion"]) and "top_emotion" not in want
        )
        assert got["gender"] == want["gender"]
    named = faces.dropna(subset=["top_emotion"])
    assert (named[list(EMOTIONS)].idxmax(axis=1) == named["top_emotion"]).all()
    assert list(tracks["track_id"]) == [1, 2] and "dominant_emotion" in tracks.columns


def test_without_pandas_one_line_names_the_extra(tmp_path, monkeypatch):
    _write_run(tmp_path)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r"emostream\[pandas\]") as e:
        read_run(tmp_path)
    assert "\n" not in str(e.value)
