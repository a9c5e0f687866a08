"""LatestOutputs: the newest inference outputs of each track dress every later frame of that track."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frames import EMOTIONS
from pipeline.live.stages import LatestOutputs
from tests.builders import make_batch


def _inferred(track_ids: list[int], time_s: float, seed: int):
    """An inferred batch whose emotion rows are distinct one-hots (row i -> emotion (seed + i) % 7)."""
    n = len(track_ids)
    emotion = np.eye(len(EMOTIONS), dtype=np.float32)[[(seed + i) % len(EMOTIONS) for i in range(n)]]
    boxes = [[10 + 50 * i, 10, 50 + 50 * i, 50] for i in range(n)]
    batch = make_batch(boxes, time_s=time_s, track_ids=track_ids, emotion=emotion)
    return batch.with_outputs(gender=np.full(n, 0.25 + seed / 100, np.float32))


# published: (track ids, media time) in order; query: track ids of a later tracked frame
CASES = [
    ("all known", [([1, 2], 0.0)], [1, 2], [1, 2], []),
    ("new track not inferred yet", [([1], 0.0)], [1, 3], [1], [3]),
    ("newest publication wins", [([1], 0.0), ([1], 0.1)], [1], [1], []),
    ("untracked faces are never carried", [([-1], 0.0)], [-1], [], [-1]),
    ("stale tracks are forgotten", [([1], 0.0), ([2], 10.0)], [1, 2], [2], [1]),
    ("empty frame", [([1], 0.0)], [], [], []),
]


@pytest.mark.parametrize(
    ("name", "published", "query", "known_ids", "unknown_ids"), CASES, ids=[c[0] for c in CASES]
)
def test_attach(name, published, query, known_ids, unknown_ids):
    latest = LatestOutputs(keep_s=5.0)
    newest = {}
    for seed, (ids, t) in enumerate(published):
        batch = _inferred(ids, t, seed)
        latest.publish(batch)
        newest.update(
            {tid: (batch.outputs["emotion"][i], batch.outputs["gender"][i]) for i, tid in enumerate(ids)}
        )
    boxes = [[5 * i, 0, 5 * i + 40, 40] for i in range(len(query))]
    frame_batch = make_batch(boxes, time_s=20.0, track_ids=query)
    known, unknown = latest.attach(frame_batch)
    assert known.track_ids.tolist() == known_ids and unknown.track_ids.tolist() == unknown_ids
    assert not unknown.outputs
    for i, tid in enumerate(known_ids):
        assert np.array_equal(known.outputs["emotion"][i], newest[tid][0])
        assert known.outputs["gender"][i] == newest[tid][1]
    rows = [query.index(t) for t in known_ids]
    assert np.array_equal(known.xyxy, frame_batch.xyxy[rows].reshape(-1, 4))  # boxes: this frame's
