"""Writers: JSONL per frame, atomic CSV/JSON, VFR-preserving fragmented MP4, out-dir safety."""

import csv
import json
from types import SimpleNamespace

import av
import numpy as np
import pytest

from pipeline.errors import OutputError
from pipeline.frames import EMOTIONS
from pipeline.io.outlock import prepare_out_dir
from pipeline.io.sinks import (
    JsonlSink,
    VideoSink,
    face_records,
    write_json,
    write_tracks_csv,
)
from tests.builders import make_batch


def _batch_with_outputs(frame_index=0):
    emo = np.eye(7, dtype=np.float32)[[3, 5]] * 0.9 + 0.1 / 7
    return make_batch(
        [[10, 10, 50, 60], [100, 20, 140, 70]], frame_index=frame_index, track_ids=[1, 2]
    ).with_outputs(
        emotion=emo, gender=np.array([0.8, 0.2], np.float32), age=np.array([31.4, 22.0], np.float32)
    )


def test_face_records_name_every_field():
    rows = face_records(_batch_with_outputs(5))
    assert [r["track_id"] for r in rows] == [1, 2]
    assert rows[0]["top_emotion"] == "happy" and rows[1]["top_emotion"] == "surprise"
    assert rows[0]["gender"] == "man" and rows[1]["gender"] == "woman" and rows[0]["age"] == 31.4
    assert set(rows[0]["emotion"]) == set(EMOTIONS) and sum(rows[0]["emotion"].values()) == pytest.approx(
        1, abs=1e-3
    )
    assert rows[0]["frame"] == 5 and rows[0]["xyxy"] == [10, 10, 50, 60]


def test_values_the_net_did_not_give_are_null_and_the_lines_strict_json(tmp_path):
    nan = np.float32("nan")
    batch = make_batch([[10, 10, 50, 60]], track_ids=[1]).with_outputs(
        emotion=np.full((1, 7), nan), emotion_smooth=np.full((1, 7), nan), gender=[nan], age=[nan]
    )
    sink = JsonlSink(tmp_path / "faces.jsonl")
    sink.write(batch)
    sink.close()
    line = (tmp_path / "faces.jsonl").read_text()
    row = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert set(row["emotion"].values()) == {None} and row["age"] is None and row["gender"] is None
    assert "top_emotion" not in row and "top_emotion_smooth" not in row  # argmax of NaN would say "angry"


def test_summary_json_is_strict_json(tmp_path):
    write_json(tmp_path / "s.json", {"p": float("nan"), "a": np.array([1.0, np.inf]), "x": np.float32(2)})
    text = (tmp_path / "s.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) == {
        "p": None,
        "a": [1.0, None],
        "x": 2.0,
    }


def test_jsonl_lines_are_valid_after_each_frame(tmp_path):
    sink = JsonlSink(tmp_path / "faces.jsonl")
    for i in range(3):
        sink.write(_batch_with_outputs(i))
        lines = (tmp_path / "faces.jsonl").read_text().splitlines()  # read while still open: flushed
        assert len(lines) == 2 * (i + 1) and all(json.loads(line) for line in lines)
    sink.close()


def _track_summary(**fields) -> SimpleNamespace:
    """A per-track summary as the aggregator gives one, with `fields` overriding the defaults."""
    defaults = dict(
        track_id=4,
        first_frame=0,
        last_frame=9,
        first_time_s=0.0,
        last_time_s=0.3,
        frames_seen=10,
        mean_emotion=np.full(7, 1 / 7),
        dominant_emotion="happy",
        gender="man",
        mean_gender=0.9,
        mean_age=None,
    )
    return SimpleNamespace(**{**defaults, **fields})


def test_tracks_csv_round_trips(tmp_path):
    write_tracks_csv(tmp_path / "tracks.csv", [_track_summary()])
    rows = list(csv.DictReader((tmp_path / "tracks.csv").read_text().splitlines()))
    assert rows[0]["track_id"] == "4" and rows[0]["frames_seen"] == "10" and rows[0]["mean_age"] == ""
    assert not list(tmp_path.glob("*.tmp"))


def test_tracks_csv_leaves_missing_numbers_empty(tmp_path):
    """A track seen only without emotion has NaN means (numpy float32): empty cells, like missing age."""
    s = _track_summary(
        mean_emotion=np.full(7, np.nan, np.float32),
        dominant_emotion="",
        gender=None,
        mean_gender=np.float32("nan"),
    )
    write_tracks_csv(tmp_path / "tracks.csv", [s])
    row = next(csv.DictReader((tmp_path / "tracks.csv").read_text().splitlines()))
    assert [row[f"mean_{e}"] for e in EMOTIONS] == [""] * 7 and row["mean_p_man"] == ""


@pytest.mark.parametrize("wh", [(64, 48), (63, 47), (1, 1)])
def test_video_keeps_frame_count_and_variable_timing(tmp_path, wh):
    times = [0.0, 0.033, 0.05, 0.2, 0.21, 0.5, 0.51, 0.9]
    sink = VideoSink(tmp_path / "a.mp4", wh, fps=30)
    for i, t in enumerate(times):
        sink.write(np.full((wh[1], wh[0], 3), 20 * i, np.uint8), t)
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        got = [float(f.time) for f in c.decode(video=0)]
    assert got == pytest.approx(times, abs=1e-3)


@pytest.mark.parametrize(
    ("wh", "written_wh"), [((16400, 1200), (16384, 1198)), ((1200, 16400), (1198, 16384))]
)
def test_a_picture_wider_than_h264_allows_is_scaled_to_fit(tmp_path, wh, written_wh):
    """A panorama (16,400 px): libx264 refuses over 16,384 a side; the sink scales, keeping the shape."""
    img = np.zeros((wh[1], wh[0], 3), np.uint8)
    img[:, : wh[0] // 2] = 200  # left half (or top-left block) bright: the scaled picture keeps it in place
    sink = VideoSink(tmp_path / "a.mp4", wh, fps=30)
    sink.write(img, 0.0)
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        (frame,) = list(c.decode(video=0))
    assert (frame.width, frame.height) == written_wh
    got = frame.to_ndarray(format="bgr24")
    assert got[:, : written_wh[0] // 2 - 8].mean() > 190 and got[:, written_wh[0] // 2 + 8 :].mean() < 10


def test_video_truncated_mid_write_still_decodes_its_prefix(tmp_path):
    sink = VideoSink(tmp_path / "a.mp4", (64, 48), fps=30)
    for i in range(150):
        sink.write(np.random.default_rng(i).integers(0, 255, (48, 64, 3), dtype=np.uint8), i / 30)
    sink.close()
    data = (tmp_path / "a.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.7)])  # as if the process died
    n = 0
    with av.open(str(tmp_path / "cut.mp4")) as c:
        try:
            for _ in c.decode(video=0):
                n += 1
        except av.error.InvalidDataError:
            pass  # the torn last fragment; a player stops there too
    assert 60 <= n < 150


def test_out_dir_refuses_to_mix_runs(tmp_path):
    out = prepare_out_dir(tmp_path / "o", overwrite=False)
    (out / "faces.jsonl").write_text("{}\n")
    with pytest.raises(OutputError, match=r"already holds faces\.jsonl"):
        prepare_out_dir(out, overwrite=False)
    prepare_out_dir(out, overwrite=True)
    assert not (out / "faces.jsonl").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        prepare_out_dir(tmp_path / "file", overwrite=False)
