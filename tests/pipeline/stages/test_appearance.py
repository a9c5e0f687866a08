"""Appearance in the tracker with hand-made embeddings: re-identification after a loss or a cut, the veto of
a box-only match onto another face, any embedding width, and state released when the window passes."""

import numpy as np
import pytest

from pipeline.frames import UNTRACKED, FaceBatch
from pipeline.stages.appearance import REID_MIN, SPLIT_BELOW, AppearanceBook, unit
from pipeline.stages.track import ROW_MEMORY, Tracker
from tests.builders import make_batch


def person(seed: int, dim: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


class Clip:
    """Drives a tracker as the analyzer does: update (before inference), then observe (after)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker, self.frame = tracker, 0

    def step(self, faces: list[tuple[list[float], np.ndarray]], dt_s: float = 0.1) -> FaceBatch:
        boxes = [box for box, _ in faces]
        t = self.frame * dt_s
        batch = make_batch(boxes, self.frame, time_s=t) if boxes else FaceBatch.empty(self.frame, t)
        out = self.tracker.update(batch)
        if len(out):  # rows come back in input order; each keeps its own embedding
            rows = [next(e for b, e in faces if np.allclose(b, xy)) for xy in out.xyxy]
            self.tracker.observe(out.with_outputs(embedding=np.stack(rows)))
        self.frame += 1
        return out

    def ids(self, faces, n: int) -> list[list[int]]:
        return [self.step(faces).track_ids.tolist() for _ in range(n)]


A_BOX, B_BOX = [100, 100, 160, 160], [400, 100, 460, 160]


@pytest.mark.parametrize("dim", [16, 614, 1024])
def test_a_person_who_returns_within_the_window_keeps_the_id(dim):
    clip = Clip(Tracker(max_age_s=0.3, reid_window_s=5.0))
    alice = person(1, dim)
    assert clip.ids([(A_BOX, alice)], 4)[-1] == [1]
    clip.ids([], 10)  # gone 1 s: longer than max_age_s, the track ends
    back = clip.ids([(B_BOX, alice + 0.1 * person(9, dim))], 4)  # elsewhere: the boxes cannot tell
    assert back[0] == [UNTRACKED] and back[-1] == [1]
    assert clip.tracker.book.reids == 1


def test_a_different_person_never_inherits_an_id():
    clip = Clip(Tracker(max_age_s=0.3))
    clip.ids([(A_BOX, person(1))], 4)
    clip.ids([], 10)
    assert clip.ids([(A_BOX, person(2))], 8)[-1] == [2]  # same place, another face: a new id
    assert clip.tracker.book.reids == 0


@pytest.mark.parametrize(("same_person", "expected_id"), [(True, 1), (False, 2)])
def test_a_cut_ends_every_track_and_only_appearance_brings_an_id_back(same_person, expected_id):
    clip = Clip(Tracker())
    clip.ids([(A_BOX, person(1))], 4)
    clip.tracker.cut()
    after = clip.ids([(A_BOX, person(1) if same_person else person(2))], 8)
    assert after[0] == [UNTRACKED]  # a new shot's face waits for its embedding, not for the boxes
    assert after[-1] == [expected_id] and clip.tracker.shot == 1


def test_appearance_vetoes_a_box_match_onto_another_face():
    """The same place, another face (a swap the boxes cannot see): the id ends, the face gets a new one."""
    clip = Clip(Tracker())
    clip.ids([(A_BOX, person(1))], 4)
    ids = clip.ids([(A_BOX, person(2))], 6)
    assert ids[0] == [1] and ids[-1] == [2]  # one pass behind (the embedding comes after inference)
    assert clip.tracker.book.vetoes == 1


def test_look_alikes_within_the_margin_give_no_id_back():
    base = person(1)
    clip = Clip(Tracker(max_age_s=0.3))
    clip.ids([(A_BOX, base), (B_BOX, base + 0.05 * person(3))], 4)
    clip.ids([], 10)
    assert 1 not in clip.ids([([250, 100, 310, 160], base + 0.02 * person(4))], 8)[-1]


def test_ended_state_is_released_and_ids_end_for_good_after_the_window():
    tracker = Tracker(max_age_s=0.2, reid_window_s=1.0)
    clip = Clip(tracker)
    for k in range(30):  # 30 people, one after another
        clip.ids([([10 * k, 100, 10 * k + 60, 160], person(100 + k))], 3)
        clip.ids([], 3)
    clip.ids([], 15)
    assert len(tracker.book.gallery) == 0 and len(tracker._tracks) == 0
    assert len(tracker.pop_ended()) == 30 and len(tracker._rows) <= ROW_MEMORY


def test_thresholds_and_unit_vectors():
    assert SPLIT_BELOW < REID_MIN
    assert unit(np.zeros(8)) is None and unit(np.full(8, np.nan)) is None
    np.testing.assert_allclose(np.linalg.norm(unit(person(1))), 1.0)
    book = AppearanceBook(window_s=0.0)
    book.post(0, np.ones((1, 4)))
    assert len(book.drain()) == 1 and book.drain() == []
