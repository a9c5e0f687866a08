import dataclasses

import numpy as np
import pytest

from pipeline.frames import UNTRACKED, FaceBatch, Frame
from tests.builders import make_batch


def test_empty_batch_keeps_time():
    b = FaceBatch.empty(12, 0.4, (640, 360))
    assert len(b) == 0 and b.frame_index == 12 and b.time_s == 0.4
    assert b.landmarks.shape == (0, 5, 2) and b.select(np.zeros(0, bool)).frame_index == 12


def test_from_boxes_fills_unknowns():
    b = FaceBatch.from_boxes(0, 0.0, [[0, 0, 10, 20]])
    assert b.scores.tolist() == [1.0] and np.isnan(b.landmarks).all() and b.track_ids.tolist() == [UNTRACKED]
    assert b.box_wh.tolist() == [[10, 20]] and b.centers.tolist() == [[5, 10]]


def test_arrays_are_read_only_and_callers_arrays_untouched():
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    b = FaceBatch.from_boxes(0, 0.0, boxes)
    assert boxes.flags.writeable
    with pytest.raises(ValueError):
        b.xyxy[0, 0] = 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": np.ones(2)}, "scores has 2 rows"),
        ({"landmarks": np.zeros((1, 4, 2))}, "landmarks rows must have shape"),
        ({"track_ids": np.zeros(3)}, "track_ids has 3 rows"),
        ({"xyxy": [[10, 0, 0, 10]]}, "x2 >= x1"),
        ({"outputs": {"emotion": np.zeros((2, 7))}}, "outputs['emotion'] has 2 rows"),
        ({"time_s": float("nan")}, "time_s must be finite"),
        ({"xyxy": [[0, 0, 10, 10, 0.9]]}, "must be \\(N,4\\)"),
        ({"xyxy": [[0, 0, np.inf, 10]]}, "must be finite"),
        ({"track_ids": [1.7]}, "whole numbers"),
        (
            {
                "xyxy": [[0, 0, 10, 10], [5, 5, 9, 9]],
                "scores": [1, 1],
                "landmarks": np.zeros((2, 5, 2)),
                "track_ids": [5, 5],
            },
            "must not repeat",
        ),
    ],
)
def test_validation_rejects_ragged_rows(kwargs, message):
    base = dict(
        frame_index=0,
        time_s=0.0,
        xyxy=[[0, 0, 10, 10]],
        scores=[1.0],
        landmarks=np.zeros((1, 5, 2)),
        track_ids=[1],
    )
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        FaceBatch(**{**base, **kwargs})


def test_select_and_with_outputs_return_new_batches():
    b = make_batch([[0, 0, 10, 10], [20, 20, 40, 40]], track_ids=[3, 4]).with_outputs(
        gender=np.array([0.1, 0.9])
    )
    s = b.select(b.track_ids == 4)
    assert s.track_ids.tolist() == [4] and s.outputs["gender"].tolist() == pytest.approx([0.9])
    assert len(b) == 2 and "gender" in b.outputs


def test_with_outputs_checks_the_new_arrays_and_leaves_the_original_alone():
    b = make_batch([[0, 0, 10, 10], [20, 20, 40, 40]], track_ids=[3, 4])
    with pytest.raises(ValueError, match=r"outputs\['age'\] has 3 rows, boxes have 2"):
        b.with_outputs(age=np.zeros(3))
    age = np.array([30.0, 40.0])
    c = b.with_outputs(age=age)
    age[0] = 99.0  # the caller's array is copied, the batch's is read-only
    assert c.outputs["age"].tolist() == [30.0, 40.0] and not c.outputs["age"].flags.writeable
    assert "age" not in b.outputs and c.xyxy is b.xyxy and c.track_ids.tolist() == [3, 4]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.frame_index = 1


def test_frame_rejects_non_bgr():
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        Frame(0, 0.0, np.zeros((4, 4), np.uint8))


def test_numpy_scalars_become_plain_numbers_for_the_sinks():
    b = FaceBatch.from_boxes(np.int64(3), np.float32(0.5), [[0, 0, 10, 10]])
    assert type(b.frame_index) is int and type(b.time_s) is float
    untracked_twice = make_batch([[0, 0, 10, 10], [20, 20, 30, 30]], track_ids=[UNTRACKED, UNTRACKED])
    assert len(untracked_twice) == 2  # only tracked ids must be unique
