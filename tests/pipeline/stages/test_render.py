import numpy as np

from pipeline.stages.render import Renderer, face_label
from tests.builders import make_batch


def test_annotate_draws_on_a_copy_inside_the_box_region():
    img = np.zeros((200, 300, 3), np.uint8)
    emo = np.zeros((1, 7), np.float32)
    emo[0, 3] = 1.0
    batch = make_batch([[50, 60, 150, 160]], track_ids=[7], emotion=emo).with_outputs(gender=np.array([0.9]))
    out = Renderer().annotate(img, batch)
    assert img.max() == 0, "input must not be drawn on"
    changed = np.argwhere(out.any(axis=2))
    assert changed[:, 1].min() >= 50 - 2 and changed[:, 0].min() >= 0
    assert out[160, 100].any() and out[110, 50].any()  # bottom and left box edges drawn
    assert not out[110, 100].any()  # the face itself left alone


def test_label_names_track_emotion_gender_age():
    emo = np.zeros((1, 7), np.float32)
    emo[0, 5] = 0.8
    b = make_batch([[0, 0, 10, 10]], track_ids=[3], emotion=emo).with_outputs(
        gender=np.array([0.1]), age=np.array([40.4])
    )
    assert face_label(b, 0) == ("#3 surprise 80% woman 40y", "surprise", 0.800000011920929)


def test_empty_batch_returns_same_pixels():
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = Renderer().annotate(img, make_batch(np.zeros((0, 4))))
    assert np.array_equal(out, img) and out is not img


def test_draw_works_in_place_and_matches_annotate():
    img = np.zeros((200, 300, 3), np.uint8)
    batch = make_batch([[50, 60, 150, 160]], track_ids=[7])
    expected = Renderer().annotate(img, batch)
    drawn = Renderer().draw(img, batch)
    assert drawn is img and np.array_equal(img, expected)


def test_a_face_without_outputs_yet_is_drawn_without_an_emotion():
    nan = np.float32("nan")
    batch = make_batch([[50, 60, 150, 160]], track_ids=[2]).with_outputs(
        emotion=np.full((1, 7), nan), gender=np.array([nan]), age=np.array([nan])
    )
    assert face_label(batch, 0) == ("#2", "", 0.0)
    out = Renderer().annotate(np.zeros((200, 300, 3), np.uint8), batch)
    assert out[160, 100].any()  # the box is still drawn
