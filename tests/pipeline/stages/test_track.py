import dataclasses

import cv2
import numpy as np
import pytest

from pipeline.frames import UNTRACKED, FaceBatch
from pipeline.stages.track import Tracker, iou_matrix
from tests.builders import make_batch


def box_at(x, y, side=60.0):
    return [x, y, x + side, y + side]


def run(tracker, frames):
    """frames: list of (time_s, boxes[, scores]); returns the tracker's output batches."""
    out = []
    for i, (t, boxes, *scores) in enumerate(frames):
        batch = make_batch(boxes, frame_index=i, time_s=t) if boxes else FaceBatch.empty(i, t, (640, 360))
        if scores and boxes:
            batch = dataclasses.replace(batch, scores=np.asarray(scores[0], np.float32))
        out.append(tracker.update(batch))
    return out


def id_near(batch, xy, tol=5.0):
    """The id of the face whose box corner is at xy (None if no such face)."""
    hits = [i for i, b in zip(batch.track_ids, batch.xyxy, strict=True) if np.abs(b[:2] - xy).max() < tol]
    return hits[0] if hits else None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # degenerate boxes: no division by zero
    ],
)
def test_iou_matrix(a, b, expected):
    assert iou_matrix(np.array([a]), np.array([b]))[0, 0] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("speed_px", "dy", "fps"),
    [(20, 10, 30), (30, 0, 30), (12, 25, 25), (25, 5, 60)],
)
def test_crossing_faces_keep_their_ids(speed_px, dy, fps):
    """Two faces walk through each other; motion prediction keeps each id on its own face."""
    n = int(500 / speed_px)
    frames = [
        (i / fps, [box_at(40 + speed_px * i, 100), box_at(540 - speed_px * i, 100 + dy)]) for i in range(n)
    ]
    out = run(Tracker(), frames)
    ids_a = {id_near(b, (40 + speed_px * i, 100)) for i, b in enumerate(out)}
    ids_b = {id_near(b, (540 - speed_px * i, 100 + dy)) for i, b in enumerate(out)}
    assert len(ids_a) == 1 and len(ids_b) == 1 and ids_a != ids_b and UNTRACKED not in ids_a | ids_b


@pytest.mark.parametrize(
    ("gap_frames", "fps", "speed_px", "max_age_s"),
    [(5, 30, 8, 1.0), (20, 30, 4, 1.0), (3, 10, 10, 0.5), (10, 25, 0, 0.5)],
)
def test_short_dropout_keeps_the_id(gap_frames, fps, speed_px, max_age_s):
    """A face undetected for less than max_age_s comes back with its old id, even while moving."""
    seen = [i for i in range(40) if not 10 <= i < 10 + gap_frames]
    frames = [(i / fps, [box_at(50 + speed_px * i, 80)] if i in seen else []) for i in range(40)]
    tracker = Tracker(max_age_s=max_age_s)
    out = run(tracker, frames)
    ids = {int(out[i].track_ids[0]) for i in seen}
    assert ids == {1} and tracker.pop_ended() == []


@pytest.mark.parametrize(("gap_s", "max_age_s"), [(1.5, 1.0), (0.6, 0.5), (3.0, 2.0)])
def test_long_absence_ends_the_track_and_a_new_face_gets_a_new_id(gap_s, max_age_s):
    tracker = Tracker(max_age_s=max_age_s)
    first = run(tracker, [(i / 30, [box_at(100, 100)]) for i in range(5)])
    assert first[-1].track_ids.tolist() == [1]
    last_seen_s = 4 / 30
    run(tracker, [(last_seen_s + max_age_s - 0.01, [])])
    assert tracker.pop_ended() == []
    t_back = last_seen_s + gap_s
    later = run(tracker, [(t_back, [box_at(100, 100)]), (t_back + 0.04, [box_at(100, 100)])])
    assert tracker.pop_ended() == [1]
    assert later[0].track_ids.tolist() == [UNTRACKED]  # mid-stream face: tentative for one detection
    assert later[1].track_ids.tolist() == [2]  # ids are never reused


@pytest.mark.parametrize(
    ("times_s", "ended_after"),
    [
        ([0.0, 0.033, 0.9, 1.0], None),  # last detection at 0.033: 0.967 s <= 1.0 s: still alive
        ([0.0, 0.033, 0.5, 1.2], 3),  # one long VFR step: 1.167 s > 1.0 s ends it at the 4th frame
        ([0.0, 0.5, 0.51, 1.52], 3),
        ([0.0, 0.01, 1.02, 1.03], 3),  # matched at 0.01: 1.02 is its chance to match, and it missed
    ],
)
def test_time_based_aging_with_uneven_steps(times_s, ended_after):
    """Detections in the first two frames only; aging follows time_s, not the frame count."""
    tracker = Tracker(max_age_s=1.0)
    ended_at = None
    for i, t in enumerate(times_s):
        run(tracker, [(t, [box_at(100, 100)] if i < 2 else [])])
        if tracker.ended_ids() and ended_at is None:
            ended_at = i
    assert ended_at == ended_after


@pytest.mark.parametrize(("every", "speed_xy"), [(2, (6, 0)), (3, (5, 3)), (5, (-4, 2)), (4, (0, 0))])
def test_detect_every_n_predicts_along_the_motion(every, speed_xy):
    """Frames between detections get predicted boxes and landmarks with the same ids, moving with the face."""
    tracker = Tracker()
    speed = np.array(speed_xy, float)
    for i in range(40):
        truth = np.array([200.0, 150.0]) + speed * i
        if i % every == 0:
            out = tracker.update(make_batch([box_at(*truth)], frame_index=i))
            assert out.detected
        else:
            out = tracker.predict(i, i / 30, (640, 360))
            assert not out.detected and len(out) == 1
            if i < every:  # one detection so far: no velocity yet
                continue
            np.testing.assert_allclose(out.xyxy[0], box_at(*truth), atol=1.0)
            np.testing.assert_allclose(out.landmarks[0], make_batch([box_at(*truth)]).landmarks[0], atol=1.0)
        assert out.track_ids.tolist() == [1]
    assert tracker.pop_ended() == []


def test_predict_leaves_out_lost_and_tentative_tracks_and_boxes_off_frame():
    tracker = Tracker()
    tracker.update(make_batch([box_at(100, 100)], frame_index=0))
    tracker.update(make_batch([box_at(100, 100), box_at(400, 100)], frame_index=1))  # 2nd face: tentative
    assert tracker.predict(2, 2 / 30, (640, 360)).track_ids.tolist() == [1]
    tracker.update(make_batch([box_at(300, 200)], frame_index=3))  # face 1 missed: lost
    assert len(tracker.predict(4, 4 / 30, (640, 360))) == 0
    fast = Tracker()
    run(fast, [(0.0, [box_at(500, 100)]), (0.05, [box_at(530, 100)])])  # 600 px/s to the right
    assert len(fast.predict(2, 0.1, (640, 360))) == 1 and len(fast.predict(3, 0.3, (640, 360))) == 0


@pytest.mark.parametrize("n_faces", [1, 3, 5])
def test_single_frame_input_gets_ids_at_once(n_faces):
    """A photo (one update on a fresh tracker) gets ids without waiting for a second frame."""
    out = Tracker().update(make_batch([box_at(10 + 100 * i, 50) for i in range(n_faces)]))
    assert sorted(out.track_ids.tolist()) == list(range(1, n_faces + 1))


@pytest.mark.parametrize(
    ("scores", "expected_ids"),
    [
        ([0.9, 0.9, 0.3, 0.3], [[1], [1], [1], [1]]),  # low-score detections continue a track
        ([0.3, 0.3, 0.9, 0.9], [[], [], [], []]),  # but never start one: later dets join the stream
        ([0.9, 0.05, 0.9], [[1], [], [1]]),  # below low_score: ignored
    ],
)
def test_low_score_detections(scores, expected_ids):
    first_high = next((i for i, s in enumerate(scores) if s >= 0.5), None)
    out = run(Tracker(), [(i / 30, [box_at(100, 100)], [s]) for i, s in enumerate(scores)])
    got = [b.track_ids.tolist() for b in out]
    if first_high is not None and first_high > 0:  # a mid-stream face: tentative for one detection
        expected_ids = [[], [], [UNTRACKED], [1]]
    assert got == expected_ids


def test_empty_batch_keeps_frame_facts_and_finish_ends_all():
    tracker = Tracker()
    run(tracker, [(0.0, [box_at(0, 0), box_at(200, 0)])])
    out = tracker.update(FaceBatch.empty(7, 0.5, (640, 360)))
    assert (len(out), out.frame_index, out.time_s, out.frame_wh) == (0, 7, 0.5, (640, 360))
    assert tracker.pop_ended() == [] and sorted(tracker.finish()) == [1, 2] and tracker.active_ids == []


def _video_frames(path, max_frames, width=480):
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= max_frames:
                return
            img = frame.to_ndarray(format="bgr24")
            scale = width / img.shape[1]
            yield (
                i,
                float(frame.time),
                cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA),
            )


def _yunet_batch(detector, index, time_s, img):
    detector.setInputSize((img.shape[1], img.shape[0]))
    rows = detector.detect(img)[1]
    rows = np.zeros((0, 15), np.float32) if rows is None else rows
    return FaceBatch(
        frame_index=index,
        time_s=time_s,
        xyxy=np.c_[rows[:, :2], rows[:, :2] + rows[:, 2:4]],
        scores=rows[:, 14],
        landmarks=rows[:, 4:14].reshape(-1, 5, 2),
        track_ids=np.full(len(rows), UNTRACKED),
        frame_wh=(img.shape[1], img.shape[0]),
    )


@pytest.mark.parametrize(
    ("video", "every", "ends_while_streaming"),
    [("pyfeat_single_face.mp4", 1, False), ("pyfeat_face_then_noface.mov", 3, True)],
)
def test_real_video_one_face_one_id(video, every, ends_while_streaming, media_dir, models_dir):
    """YuNet on a one-person clip: every face row carries the same id; when the man leaves, his track ends."""
    yunet = cv2.FaceDetectorYN.create(str(models_dir / "face_detection_yunet_2023mar.onnx"), "", (320, 320))
    tracker, ids, ended_at_s = Tracker(), set(), None
    for i, t, img in _video_frames(media_dir / video, 120):
        if i % every:
            out = tracker.predict(i, t, (img.shape[1], img.shape[0]))
        else:
            out = tracker.update(_yunet_batch(yunet, i, t, img))
        ids |= set(out.track_ids.tolist())
        if ended_at_s is None and tracker.ended_ids():
            ended_at_s = t
    assert ids == {1}
    assert (ended_at_s is not None) == ends_while_streaming


def test_a_track_lives_through_detection_passes_further_apart_than_max_age():
    """Low fps, or a live detector slower than max_age_s: a still face keeps its id at every pass."""
    out = run(Tracker(max_age_s=1.0), [(1.2 * k, [box_at(100, 100)]) for k in range(6)])
    assert [b.track_ids.tolist() for b in out] == [[1]] * 6


def test_a_track_ends_only_after_it_missed_a_pass():
    tracker = Tracker(max_age_s=1.0)
    out = run(tracker, [(0.0, [box_at(100, 100)]), (2.0, []), (2.1, [box_at(100, 100)])])
    assert tracker.pop_ended() == [1] and out[2].track_ids.tolist() == [UNTRACKED]


def test_near_duplicate_timestamps_do_not_turn_jitter_into_speed():
    tracker = Tracker()
    run(tracker, [(0.0, [box_at(100, 100)]), (0.001, [box_at(102, 100)])])  # VFR: 1 ms apart, 2 px jitter
    predicted = tracker.predict(2, 0.1, (640, 360))
    assert abs(predicted.xyxy[0, 0] - 102) < 20  # 2000 px/s would put it 200 px away


def _confirmed_pair(tracker, scores=(0.9, 0.9)):
    """Two still faces side by side (A at x 0-100, B at x 100-200), confirmed over two frames."""
    boxes = [[0, 0, 100, 100], [100, 0, 200, 100]]
    run(tracker, [(0.0, boxes, list(scores)), (1 / 30, boxes, list(scores))])


@pytest.mark.parametrize(
    ("score", "a_xyxy", "b_xyxy"),
    [
        # stage 1 (iou_min 0.3): IoU(A,a)=0.43 is the only pair inside the gate, but A-b (0.29) + B-a (0.25)
        # has the larger IoU sum: assigning first, then dropping both, left A without its detection
        (0.9, [40, 0, 140, 100], [-55, 0, 45, 100]),
        # stage 2 (low scores, low_iou_min 0.5): IoU(A,a)=0.54 against A-b (0.45) + B-a (0.18)
        (0.3, [30, 0, 130, 100], [-38, 0, 62, 100]),
    ],
)
def test_gating_before_assignment_keeps_the_feasible_pair(score, a_xyxy, b_xyxy):
    tracker = Tracker()
    _confirmed_pair(tracker)
    out = run(tracker, [(2 / 30, [a_xyxy, b_xyxy], [score, score])])[0]
    assert id_near(out, a_xyxy[:2]) == 1  # face A continues on a (the old code: a new face, or dropped)


def test_low_score_detections_only_continue_confirmed_tracks():
    """Between low and high score a face may continue a confirmed track, never a tentative or a new one."""
    tracker = Tracker()
    run(tracker, [(0.0, [box_at(100, 100)], [0.9])])  # first pass: confirmed at once (id 1)
    run(tracker, [(0.1, [box_at(100, 100), box_at(400, 100)], [0.9, 0.9])])  # the second face: tentative
    out = run(tracker, [(0.2, [box_at(100, 100), box_at(400, 100)], [0.3, 0.3])])[0]
    assert out.track_ids.tolist() == [1]  # the tentative face's low-score detection is dropped
