"""End to end on real media: `run_job` outputs exist, parse and agree with each other (issue 2 acceptance)."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict

import av
import numpy as np
import pytest

from pipeline.config import AnalyzerConfig
from pipeline.frames import EMOTIONS
from pipeline.runtime.offline import OfflineJob, run_job


def _run(src, out, **kw):
    video = kw.pop("write_video", True)
    return run_job(OfflineJob(input=str(src), out_dir=out, analyzer=AnalyzerConfig(**kw), write_video=video))


def _jsonl(out):
    return [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def single_face(media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "out"
    return _run(media_dir / "pyfeat_single_face.mp4", out), out


@pytest.mark.parametrize(
    ("photo", "expected"),
    [
        ("pyfeat_happy_f15.jpg", "happy"),
        ("pyfeat_surprise_f1.jpg", "surprise"),
        ("fer_justin_smile.jpg", "happy"),
    ],
)
def test_top_emotion_on_labelled_photos(media_dir, tmp_path, photo, expected):
    summary = _run(media_dir / photo, tmp_path / "out")
    rows = _jsonl(tmp_path / "out")
    assert len(rows) == 1 and rows[0]["top_emotion"] == expected
    assert max(summary["clip_emotion"], key=summary["clip_emotion"].get) == expected


def test_run_uses_the_bundled_multitask_net_by_default(media_dir, tmp_path):
    summary = _run(media_dir / "pyfeat_neutral_man.jpg", tmp_path / "out", write_video=False)
    assert summary["quality"] == "mtl" and [m["name"] for m in summary["models"]] == ["emostream_mtl"]
    row = _jsonl(tmp_path / "out")[0]
    assert row["gender"] == "man" and 15 < row["age"] < 70 and "contempt" in row


def test_five_faces_on_group_photo(media_dir, tmp_path):
    summary = _run(media_dir / "pyfeat_multi_face_5.jpg", tmp_path / "out", write_video=False)
    rows = _jsonl(tmp_path / "out")
    assert len(rows) == 5 == summary["faces"] and len({r["track_id"] for r in rows}) == 5


def test_single_face_video_has_one_dominant_track(single_face):
    summary, out = single_face
    rows = _jsonl(out)
    frames_with_face = {r["frame"] for r in rows}
    per_track = Counter(r["track_id"] for r in rows)
    track, n = per_track.most_common(1)[0]
    assert track >= 0 and n >= 0.9 * len(frames_with_face)
    assert len(frames_with_face) >= 0.9 * summary["frames_processed"]


def test_annotated_video_has_input_frame_count_and_times(single_face, media_dir):
    summary, out = single_face
    with av.open(str(media_dir / "pyfeat_single_face.mp4")) as c:
        src_times = [float(f.time) for f in c.decode(video=0)]
    with av.open(str(out / "annotated.mp4")) as c:
        out_times = [float(f.time) for f in c.decode(video=0)]
    assert (
        len(out_times) == len(src_times) == summary["frames_processed"] == summary["outputs"]["annotated.mp4"]
    )
    assert np.allclose(np.array(out_times) - out_times[0], np.array(src_times) - src_times[0], atol=2e-3)


def test_outputs_agree_with_each_other(single_face):
    summary, out = single_face
    rows = _jsonl(out)
    assert summary["faces"] == len(rows) == summary["outputs"]["faces.jsonl"]
    tracks = {int(r["track_id"]): r for r in csv.DictReader((out / "tracks.csv").read_text().splitlines())}
    assert len(tracks) == summary["tracks"]
    by_track = defaultdict(list)
    for r in rows:
        by_track[r["track_id"]].append(r)
    for tid, t in tracks.items():
        mine = by_track[tid]
        assert int(t["frames_seen"]) == len(mine)
        assert int(t["first_frame"]) == mine[0]["frame"] and int(t["last_frame"]) == mine[-1]["frame"]
        mean = np.mean([[r["emotion"][e] for e in EMOTIONS] for r in mine], axis=0)
        assert np.allclose([float(t[f"mean_{e}"]) for e in EMOTIONS], mean, atol=2e-3)
        assert t["dominant_emotion"] == EMOTIONS[int(np.argmax(mean))]
    clip = np.mean([[r["emotion"][e] for e in EMOTIONS] for r in rows], axis=0)
    assert np.allclose([summary["clip_emotion"][e] for e in EMOTIONS], clip, atol=2e-3)
    assert summary["models"] and all(len(m["sha256"]) == 64 for m in summary["models"])
    assert (out / "timeline.png").stat().st_size > 1000


def test_face_appearing_mid_stream_gets_a_track(media_dir, tmp_path):
    summary = _run(
        media_dir / "pyfeat_noface_then_face.mov", tmp_path / "out", write_video=False, detect_every=2
    )
    rows = _jsonl(tmp_path / "out")
    assert summary["frames_processed"] == 169
    first = min(r["frame"] for r in rows if r["track_id"] >= 0)
    assert first > 20, "the first part of this clip is a cartoon with no face"
    assert Counter(r["track_id"] for r in rows).most_common(1)[0][1] >= 30


def test_annotated_video_keeps_the_input_sound_in_sync(single_face, media_dir):
    """pyfeat_single_face.mp4 has MP3 sound: copied as it is, starting and ending with the picture."""
    summary, out = single_face
    assert summary["audio"]["mode"] == "copy"
    with av.open(str(out / "annotated.mp4")) as c:
        video = [float(f.time) for f in c.decode(video=0)]
    with av.open(str(out / "annotated.mp4")) as c:
        audio = list(c.decode(audio=0))
    frame_s = 1 / summary["input"]["fps"]
    end = float(audio[-1].time) + audio[-1].samples / audio[-1].sample_rate
    assert float(audio[0].time) == pytest.approx(video[0], abs=frame_s)
    assert end == pytest.approx(video[-1] + frame_s, abs=frame_s)


def test_a_photo_gives_a_picture_and_bars_not_a_video(media_dir, tmp_path):
    import cv2

    summary = _run(media_dir / "pyfeat_multi_face_5.jpg", tmp_path / "out")
    out = tmp_path / "out"
    assert not (out / "annotated.mp4").exists() and not (out / "timeline.png").exists()
    picture = cv2.imread(str(out / "annotated.jpg"))
    original = cv2.imread(str(media_dir / "pyfeat_multi_face_5.jpg"))
    assert picture.shape == original.shape  # full resolution
    assert summary["plot"]["file"] == "emotions.png" and summary["plot"]["faces"] == 5
    assert (out / "emotions.png").stat().st_size > 1000 and summary["outputs"]["annotated.jpg"] == 1


def test_start_and_end_trim_the_input_and_its_sound(media_dir, tmp_path):
    src = media_dir / "pyfeat_single_face.mp4"
    job = OfflineJob(input=str(src), out_dir=tmp_path / "out", start_s=1.0, end_s=2.0)
    summary = run_job(job)
    rows = _jsonl(tmp_path / "out")
    assert summary["frames_processed"] == 30 and all(1.0 <= r["time_s"] < 2.0 for r in rows)
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as c:
        video = [float(f.time) for f in c.decode(video=0)]
    with av.open(str(tmp_path / "out" / "annotated.mp4")) as c:
        audio = list(c.decode(audio=0))
    end = float(audio[-1].time) + audio[-1].samples / audio[-1].sample_rate
    assert len(video) == 30 and video[0] == 0 and end == pytest.approx(1.0, abs=1 / 30)


def test_no_audio_and_no_folder_left_by_a_failed_run(media_dir, tmp_path):
    src = media_dir / "pyfeat_single_face.mp4"
    summary = run_job(OfflineJob(input=str(src), out_dir=tmp_path / "a", audio=False, end_s=0.3))
    with av.open(str(tmp_path / "a" / "annotated.mp4")) as c:
        assert not c.streams.audio and summary["audio"]["mode"] == "off"
    (tmp_path / "noise.mp4").write_bytes(bytes(range(256)) * 64)
    with pytest.raises(Exception, match=r"noise\.mp4"):
        run_job(OfflineJob(input=str(tmp_path / "noise.mp4"), out_dir=tmp_path / "b" / "c"))
    assert not (tmp_path / "b").exists()
