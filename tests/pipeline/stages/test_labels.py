"""Label placement geometry on generated layouts: inside the frame, no label on another label, no label
on another face's box when there is room, a leader line only when a label sits away from its box."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.stages.labels import leader_line, place_labels
from pipeline.stages.render import Renderer, text_scale
from tests.builders import make_batch


def overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def inside(rect, wh) -> bool:
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= wh[0] and rect[3] <= wh[1]


def crowd(frame_wh, rows: int, cols: int, face: int, seed: int) -> np.ndarray:
    """Faces on a jittered grid with room between them for a label each (a group photo, a TV panel)."""
    rng = np.random.default_rng(seed)
    cell_w, cell_h = frame_wh[0] / cols, frame_wh[1] / rows
    boxes = []
    for r in range(rows):
        for c in range(cols):
            x = c * cell_w + rng.uniform(0, cell_w - face)
            y = r * cell_h + rng.uniform(0, cell_h - face)
            boxes.append([x, y, x + face, y + face])
    return np.array(boxes)


def check(boxes, sizes, frame_wh, *, others_free=True):
    places = place_labels(boxes, sizes, frame_wh)
    rects = [p.xyxy for p in places]
    for i, r in enumerate(rects):
        assert inside(r, frame_wh), (i, r)
        assert (r[2] - r[0], r[3] - r[1]) == tuple(sizes[i])
        for j, other in enumerate(rects[:i]):
            assert overlap(r, other) == 0, f"labels {j} and {i} overlap"
        if others_free:
            for j, b in enumerate(boxes):
                shrunk = (b[0] + 2, b[1] + 2, b[2] - 2, b[3] - 2)
                assert j == i or overlap(r, shrunk) == 0, f"label {i} covers face {j}"
    return places


@pytest.mark.parametrize(
    ("frame_wh", "face", "label_wh"), [((640, 360), 40, (110, 22)), ((1920, 1080), 120, (260, 40))]
)
@pytest.mark.parametrize("seed", range(5))
def test_crowd_grid_labels_are_inside_apart_and_off_the_faces(frame_wh, face, label_wh, seed):
    boxes = crowd(frame_wh, rows=3, cols=4, face=face, seed=seed)
    check(boxes, [label_wh] * len(boxes), frame_wh)


def test_faces_at_each_edge_keep_their_labels_in_the_frame():
    wh = (640, 360)
    boxes = np.array(
        [[0, 0, 60, 60], [580, 0, 640, 60], [0, 300, 60, 360], [580, 300, 640, 360], [600, 150, 640, 210]]
    )
    places = check(boxes, [(150, 24)] * len(boxes), wh)
    assert places[0].xyxy[1] >= 60  # no room above a face at the top: the label goes below it


def test_side_by_side_faces_get_labels_that_do_not_touch():
    """Two faces closer together than a label is wide: the labels go above and below, or stack."""
    boxes = np.array([[200, 150, 260, 210], [270, 150, 330, 210]])
    places = check(boxes, [(160, 24)] * 2, (640, 360))
    assert not any(p.leader for p in places)


def test_a_label_moved_away_from_its_box_gets_a_leader_line():
    # a row of faces just under the top edge, labels wider than the gaps: some go further away
    boxes = np.array([[x, 10, x + 40, 50] for x in range(10, 600, 60)], float)
    places = check(boxes, [(120, 20)] * len(boxes), (640, 360))
    far = [(p, b) for p, b in zip(places, boxes, strict=True) if p.leader]
    assert far, "ten wide labels under one edge cannot all touch their boxes"
    for p, b in far:
        (sx, sy), (bx, by) = leader_line(p.xyxy, tuple(int(v) for v in b))
        assert p.xyxy[0] <= sx <= p.xyxy[2] and p.xyxy[1] <= sy <= p.xyxy[3]
        assert b[0] <= bx <= b[2] and b[1] <= by <= b[3]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 600), st.integers(0, 330), st.integers(12, 120), st.integers(60, 200)),
        min_size=1,
        max_size=12,
    )
)
def test_any_layout_stays_inside_the_frame(faces):
    """Whatever the boxes (overlapping, off the edge, packed), every label is inside the frame."""
    boxes = np.array([[x, y, x + s, y + s] for x, y, s, _ in faces], float)
    sizes = [(w, 22) for *_, w in faces]
    for p in place_labels(boxes, sizes, (640, 360)):
        assert inside(p.xyxy, (640, 360))


def test_text_grows_with_the_frame():
    small, big = text_scale((640, 360)), text_scale((1920, 1080))
    assert 0.4 <= small[0] < big[0] and big[1] >= small[1]


def test_rendered_labels_leave_the_other_face_untouched():
    """Drawn end to end: the pixels of a face next to another face's label stay as they were."""
    img = np.full((360, 640, 3), 90, np.uint8)
    emo = np.tile(np.eye(7, dtype=np.float32)[3], (2, 1))
    boxes = [[100, 100, 160, 160], [170, 100, 230, 160]]
    out = Renderer().annotate(img, make_batch(boxes, track_ids=[1, 2], emotion=emo))
    for x1, y1, x2, y2 in boxes:
        face = out[y1 + 3 : y2 - 2, x1 + 3 : x2 - 2]
        assert (face == 90).all()
