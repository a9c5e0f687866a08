"""Shot boundaries on real clips (the pyfeat .mov cuts from the man to a cartoon and back) and on pictures
built here: motion within a shot is no cut, a change of scene is."""

import json

import cv2
import numpy as np
import pytest

from pipeline.frames import Frame
from pipeline.io.capture import open_source
from pipeline.stages.shots import ShotDetector, tiny_picture, with_cuts
from tests.builders import make_frame


def cut_times(path) -> list[float]:
    detector, times = ShotDetector(), []
    with open_source(path) as src:
        times = [f.time_s for f in src if detector.update(f)]
    assert detector.cuts == len(times)
    return times


@pytest.mark.parametrize(
    ("video", "expected_s"),
    [
        ("pexels_woman_emotions.mp4", []),
        ("facenet_crowd_walking_1080p.mp4", []),  # a moving camera and a crowd: no cut
        ("pyfeat_face_then_noface.mov", [2.4]),  # the man, then the cartoon title
        ("pyfeat_noface_then_face.mov", [3.95, 6.35]),  # the cartoon, the man, the title again
    ],
)
def test_cuts_are_found_where_the_scene_changes_and_nowhere_else(media_dir, video, expected_s):
    np.testing.assert_allclose(cut_times(media_dir / video), expected_s, atol=0.05)


def test_a_panning_picture_is_no_cut_and_a_new_picture_is():
    def scene(seed):  # colour blobs tens of pixels wide
        coarse = np.random.default_rng(seed).integers(0, 255, (12, 48, 3), np.uint8)
        return cv2.resize(coarse, (1400, 360), interpolation=cv2.INTER_CUBIC)

    detector, first, second = ShotDetector(), scene(0), scene(1)
    frames = [first[:, 3 * i : 3 * i + 640] for i in range(60)]  # panning 3 px a frame
    frames += [second[:, 3 * i : 3 * i + 640] for i in range(10)]  # another scene
    cuts = [i for i, img in enumerate(frames) if detector.update(Frame(i, i / 30, np.ascontiguousarray(img)))]
    assert cuts == [60]


def test_tiny_picture_is_small_and_cheap_on_1080p():
    frame = make_frame(0, wh=(1920, 1080), value=7)
    tiny = tiny_picture(frame.image_bgr)
    assert tiny.shape == (18, 32, 3) and int(tiny.max()) == 7


def test_cuts_found_on_the_decode_side_are_the_analyzers_own(media_dir, tmp_path):
    """Offline runs test for cuts where frames are read (`with_cuts`); the flags, the analyzer's count in
    summary.json and the tracks must be what the analyzer's own test gives on the same clip."""
    from pipeline.analyzer import FaceAnalyzer
    from pipeline.config import AnalyzerConfig
    from pipeline.runtime.offline import OfflineJob, run_job

    path = media_dir / "pyfeat_noface_then_face.mov"
    with open_source(path) as src:
        flagged = [f for f in with_cuts(src) if f.cut]
    assert [f.time_s for f in flagged] == cut_times(path)
    summary = run_job(OfflineJob(input=str(path), out_dir=tmp_path / "run", write_video=False))
    analyzer = FaceAnalyzer(AnalyzerConfig())
    with open_source(path) as src:  # frames without flags: the analyzer tests them itself
        own = [b for chunk in _chunks(list(src), 8) for b in analyzer.process(chunk)]
    assert summary["tracking"]["shot_cuts"] == analyzer.tracking_facts()["shot_cuts"] == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "faces.jsonl").read_text().splitlines()]
    assert [r["track_id"] for r in rows] == [int(t) for b in own for t in b.track_ids]


def _chunks(items: list, n: int) -> list[list]:
    return [items[i : i + n] for i in range(0, len(items), n)]
