"""Shot boundaries on real clips (the pyfeat .mov cuts from the man to a cartoon and back) and on pictures
built here: motion within a shot is no cut, a change of scene is."""

import cv2
import numpy as np
import pytest

from pipeline.frames import Frame
from pipeline.io.capture import open_source
from pipeline.stages.shots import ShotDetector, tiny_picture
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
