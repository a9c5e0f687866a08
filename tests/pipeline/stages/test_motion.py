import numpy as np
import pytest

from pipeline.stages.motion import Track, predicted_boxes, to_cxcywh, to_xyxy


def _tracks(n: int, seed: int) -> list[Track]:
    rng = np.random.default_rng(seed)
    return [
        Track(
            state=np.r_[rng.uniform(0, 1900, 2), rng.uniform(0.2, 300, 2)],  # sizes under 1 px too
            velocity=rng.normal(0, 200, 4),
            time_s=float(rng.uniform(0, 2)),
            score=0.9,
            landmarks_rel=rng.uniform(-0.5, 0.5, (5, 2)),
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("n", [0, 1, 7])
def test_predicted_boxes_are_the_per_track_predictions_exactly(n):
    tracks, t = _tracks(n, seed=n), 2.37
    xyxy, landmarks = predicted_boxes(tracks, t)
    assert xyxy.shape == (n, 4) and landmarks.shape == (n, 5, 2) and landmarks.dtype == np.float32
    for i, track in enumerate(tracks):  # one track at a time, in the plain per-track arithmetic
        box = to_xyxy(track.state + track.velocity * (t - track.time_s))
        cxcywh = to_cxcywh(box)
        assert np.array_equal(xyxy[i], box)
        assert np.array_equal(
            landmarks[i], (cxcywh[:2] + track.landmarks_rel * cxcywh[2:]).astype(np.float32)
        )
    assert (xyxy[:, 2:] - xyxy[:, :2] >= 1.0 - 1e-9).all()  # a box never collapses below 1 px
