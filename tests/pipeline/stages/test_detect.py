"""Detectors on real photos and videos from ../shared, with the real models from the mirror."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from engines.backends.base import usable_cpus
from engines.store.store import ModelStore
from pipeline.frames import UNTRACKED, SourceInfo
from pipeline.io.capture import open_source
from pipeline.stages.detect import DETECTOR_NAMES, DetectorError, create_detector, set_cv_threads
from tests.builders import make_frame

POSED = [
    "pyfeat_surprise_f1.jpg",
    "pyfeat_happy_f15.jpg",
    "pyfeat_angry_f13.jpg",
    "pyfeat_disgust_m7.jpg",
    "pyfeat_single_face_smile.jpg",
    "pyfeat_neutral_man.jpg",
    "fer_justin_smile.jpg",
]
FRONTAL = ["fer_justin_smile.jpg", "pyfeat_single_face_smile.jpg", "pyfeat_neutral_man.jpg"]


@pytest.fixture(scope="module")
def detectors(models_dir):
    made = {name: create_detector(name, ModelStore(models_dir, download=False)) for name in DETECTOR_NAMES}
    yield made
    for detector in made.values():
        detector.close()


def _first_frame(path):
    with open_source(path) as source:
        return next(iter(source))


def _check_batch(batch, frame):
    """Shape and range facts every detector output must satisfy."""
    w, h = frame.size_wh
    assert batch.frame_index == frame.index and batch.time_s == frame.time_s and batch.frame_wh == (w, h)
    assert batch.detected and (batch.track_ids == UNTRACKED).all()
    assert ((batch.scores > 0) & (batch.scores <= 1)).all()
    assert (
        (batch.xyxy >= 0).all() and (batch.xyxy[:, [0, 2]] <= w).all() and (batch.xyxy[:, [1, 3]] <= h).all()
    )
    assert (batch.box_wh > 0).all()
    margin = 0.25 * batch.box_wh[:, None, :]  # landmarks inside their box, or near it on turned heads
    lo, hi = batch.xyxy[:, None, :2] - margin, batch.xyxy[:, None, 2:] + margin
    assert ((batch.landmarks >= lo) & (batch.landmarks <= hi)).all()


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("photo", POSED)
def test_every_detector_finds_the_face_on_posed_photos(detectors, media_dir, name, photo):
    frame = _first_frame(media_dir / photo)
    batch = detectors[name].detect(frame)
    _check_batch(batch, frame)
    assert len(batch) >= 1


@pytest.mark.parametrize(
    ("name", "photo", "count"),
    [
        ("yunet", "pyfeat_multi_face_5.jpg", 5),
        ("blazeface-full", "pyfeat_multi_face_5.jpg", 5),
        ("yunet", "mtcnn_man_small_face.jpg", 1),  # a ~40 px face on a 561 px photo
        ("blazeface-full", "mtcnn_man_small_face.jpg", 1),
    ],
)
def test_face_counts_on_group_and_small_face_photos(detectors, media_dir, name, photo, count):
    frame = _first_frame(media_dir / photo)
    batch = detectors[name].detect(frame)
    _check_batch(batch, frame)
    assert len(batch) == count


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("photo", FRONTAL)
def test_landmark_order_on_frontal_faces(detectors, media_dir, name, photo):
    """Right eye (subject's) first, i.e. image-left; eyes above nose above mouth; corners in eye order."""
    batch = detectors[name].detect(_first_frame(media_dir / photo))
    eye_r, eye_l, nose, mouth_r, mouth_l = batch.landmarks[np.argmax(batch.scores)]
    assert eye_r[0] < nose[0] < eye_l[0] and mouth_r[0] < mouth_l[0]
    assert max(eye_r[1], eye_l[1]) < nose[1] < min(mouth_r[1], mouth_l[1])


@pytest.mark.parametrize(
    ("name", "min_faces"),
    # BlazeFace full range sees the whole frame at 192 px, so these 50-100 px faces are mostly lost
    [("yunet", 2), ("blazeface-full", 1)],
)
def test_crowd_video_has_faces_in_every_frame(detectors, media_dir, name, min_faces):
    with open_source(media_dir / "facenet_crowd_walking_1080p.mp4") as source:
        frames = [f for f, _ in zip(source, range(3), strict=False)]
    for frame in frames:
        batch = detectors[name].detect(frame)
        _check_batch(batch, frame)
        assert len(batch) >= min_faces


def test_reduced_input_maps_back_to_full_resolution(models_dir, media_dir):
    """The same photo at 1x and 2x gives the same faces in each image's own pixels."""
    frame = _first_frame(media_dir / "pyfeat_multi_face_5.jpg")
    big = make_frame(wh=(2 * frame.size_wh[0], 2 * frame.size_wh[1]))
    big.image_bgr[:] = np.kron(frame.image_bgr, np.ones((2, 2, 1), np.uint8))
    detector = create_detector("yunet", ModelStore(models_dir, download=False))
    small_batch, big_batch = detector.detect(frame), detector.detect(big)
    order_s, order_b = np.argsort(small_batch.xyxy[:, 0]), np.argsort(big_batch.xyxy[:, 0])
    face_size = small_batch.box_wh.mean()
    np.testing.assert_allclose(big_batch.xyxy[order_b] / 2, small_batch.xyxy[order_s], atol=0.05 * face_size)
    assert big_batch.frame_wh == big.size_wh


@pytest.mark.parametrize("name", DETECTOR_NAMES)
@pytest.mark.parametrize("wh", [(640, 360), (1920, 1080), (200, 200)])
def test_blank_frame_gives_an_empty_batch(detectors, name, wh):
    frame = make_frame(index=7, time_s=1.25, wh=wh, value=128)
    batch = detectors[name].detect(frame)
    assert len(batch) == 0 and batch.frame_index == 7 and batch.time_s == 1.25 and batch.frame_wh == wh
    assert batch.landmarks.shape == (0, 5, 2)


def test_unknown_detector_lists_valid_names(models_dir):
    with pytest.raises(DetectorError, match=r"unknown detector 'retina'.*yunet, blazeface, blazeface-full"):
        create_detector("retina", ModelStore(models_dir, download=False))


def test_missing_mediapipe_names_the_package(models_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)  # makes `import mediapipe` fail
    with pytest.raises(DetectorError, match=r"need mediapipe.*pip install"):
        create_detector("blazeface", ModelStore(models_dir, download=False))


def test_close_is_idempotent(models_dir):
    for name in DETECTOR_NAMES:
        detector = create_detector(name, ModelStore(models_dir, download=False))
        detector.close()
        detector.close()


@pytest.mark.parametrize(
    ("wh", "expected"),
    [
        ((1920, 1080), "large"),
        ((1280, 720), "large"),
        ((3840, 2160), "large"),
        ((640, 360), "small"),
        ((1280, 719), "small"),
    ],
)
def test_opencv_threads_follow_the_source_size(wh, expected):
    before = cv2.getNumThreads()
    try:
        set_cv_threads(SourceInfo("x", *wh, 30.0))
        cpus = usable_cpus()
        small, large = min(8, cpus), min(8, max(1, cpus - 1))  # 2 cores: 2 and 1, as measured
        assert cv2.getNumThreads() == (small if expected == "small" else large)
    finally:
        cv2.setNumThreads(before)
