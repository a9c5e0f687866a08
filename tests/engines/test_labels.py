"""Label decoding: pure functions over the net's arrays."""

from __future__ import annotations

import numpy as np
import pytest

from engines.labels import emotion_dict, fer_columns, gender_label, top_emotion
from engines.store.registry import FER2013_EMOTIONS, get_spec


@pytest.mark.parametrize(
    ("probs", "indices", "names", "top"),
    [
        ([[0.1, 0, 0, 0.7, 0.1, 0.1, 0]], [3], ["happy"], [0.7]),
        ([[0.9, 0.1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0.4, 0.6]], [0, 6], ["angry", "neutral"], [0.9, 0.6]),
        ([[0, 0, 0, 0, 0, 1.0, 0]], [5], ["surprise"], [1.0]),
        (np.zeros((0, 7)), [], [], []),
    ],
)
def test_top_emotion(probs, indices, names, top):
    got_indices, got_names, got_top = top_emotion(np.asarray(probs, np.float32))
    assert got_indices.tolist() == indices and got_names == names
    np.testing.assert_allclose(got_top, top)


@pytest.mark.parametrize(
    ("p_man", "labels"),
    [([0.9, 0.1], ["man", "woman"]), ([0.5, 0.49], ["man", "woman"]), ([], [])],
)
def test_gender_label(p_man, labels):
    assert gender_label(np.asarray(p_man, np.float32)) == labels


def test_emotion_dict_names_every_emotion_in_order():
    row = np.arange(7, dtype=np.float32) / 21
    d = emotion_dict(row)
    assert list(d) == list(FER2013_EMOTIONS)
    assert d["neutral"] == pytest.approx(6 / 21) and all(isinstance(v, float) for v in d.values())


def test_emotion_dict_refuses_a_row_of_the_wrong_length():
    with pytest.raises(ValueError, match="7 values, got 2"):
        emotion_dict(np.array([0.5, 0.5]))


@pytest.mark.parametrize(
    ("classes", "columns", "rest"),
    [
        (get_spec("hsemotion_enet_b0_8").classes, [0, 2, 3, 4, 6, 7, 5], ["contempt"]),
        (FER2013_EMOTIONS, [0, 1, 2, 3, 4, 5, 6], []),
        (
            ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear"),
            [4, 5, 6, 1, 3, 2, 0],
            [],
        ),
    ],
)
def test_fer_columns_find_each_fer2013_emotion_and_the_classes_left_over(classes, columns, rest):
    assert fer_columns(classes) == (columns, rest)


def test_fer_columns_name_a_missing_emotion():
    with pytest.raises(ValueError, match="no column for fear"):
        fer_columns(("anger", "disgust", "happiness", "sadness", "surprise", "neutral", "contempt"))
