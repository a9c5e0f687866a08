"""Property tests (hypothesis): box geometry, alignment, tracker ids, aggregation with NaN or empty input."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pipeline.frames import FaceBatch
from pipeline.stages.aggregate import Aggregator, clip_statistics, group_clip_statistics
from pipeline.stages.align import crop_faces, similarity_matrices, template_in_crop
from pipeline.stages.track import Tracker, iou_matrix
from tests.builders import make_batch

coords = st.floats(0, 2000, allow_nan=False, width=32)


@st.composite
def boxes(draw, max_n=8):
    n = draw(st.integers(0, max_n))
    xy = draw(arrays(np.float32, (n, 2), elements=coords))
    wh = draw(arrays(np.float32, (n, 2), elements=st.floats(1, 500, width=32)))
    return np.concatenate([xy, xy + wh], axis=1)


@given(boxes(), boxes())
def test_iou_is_bounded_and_symmetric(a, b):
    m = iou_matrix(a, b)
    assert m.shape == (len(a), len(b))
    assert np.all((m >= -1e-6) & (m <= 1 + 1e-6))
    assert np.allclose(m, iou_matrix(b, a).T, atol=1e-6)
    if len(a):
        assert np.allclose(np.diag(iou_matrix(a, a)), 1, atol=1e-5)


@given(boxes(), st.data())
def test_select_keeps_rows_aligned(xyxy, data):
    n = len(xyxy)
    batch = FaceBatch.from_boxes(3, 0.1, xyxy).with_outputs(tag=np.arange(n, dtype=np.float32))
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    sub = batch.select(mask)
    assert len(sub) == mask.sum() and sub.frame_index == 3
    assert np.array_equal(sub.xyxy, xyxy[mask].astype(np.float32))
    assert np.array_equal(sub.outputs["tag"], np.flatnonzero(mask).astype(np.float32))


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    angle=st.floats(-60, 60),
    scale=st.floats(0.3, 4.0),
    shift=st.tuples(st.floats(-200, 200), st.floats(-200, 200)),
)
def test_similarity_maps_transformed_template_back_onto_it(angle, scale, shift):
    size, crop_scale = 128, 2.0
    template = template_in_crop(size, crop_scale)
    t = np.deg2rad(angle)
    rot = scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    landmarks = (template @ rot.T + np.array(shift) + 300)[None].astype(np.float32)
    m = similarity_matrices(landmarks, size, crop_scale)[0]
    mapped = landmarks[0] @ m[:, :2].T + m[:, 2]
    assert np.allclose(mapped, template, atol=1e-2)


@settings(deadline=None, max_examples=30)
@given(boxes(max_n=4), st.booleans())
def test_crops_have_fixed_shape_whatever_the_boxes(xyxy, with_landmarks):
    img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    batch = make_batch(xyxy) if with_landmarks else FaceBatch.from_boxes(0, 0.0, xyxy)
    crops = crop_faces(img, batch, size=64, scale=2.0)
    assert crops.shape == (len(xyxy), 64, 64, 3) and crops.dtype == np.uint8


@settings(deadline=None, max_examples=40)
@given(
    seen=st.lists(st.booleans(), min_size=20, max_size=80).filter(lambda s: s[0] and s[1]),
    speed=st.floats(-6, 6),
)
def test_one_face_keeps_one_id_through_short_dropouts(seen, speed):
    """A face missing for fewer frames than max_age keeps its id, whatever the dropout pattern."""
    tracker = Tracker(max_age_s=1.0)
    fps, ids = 30.0, set()
    for i, visible in enumerate(seen):
        x = 100 + speed * i
        boxes_ = [[x, 100, x + 80, 190]] if visible else np.zeros((0, 4))
        out = tracker.update(make_batch(boxes_, frame_index=i, time_s=i / fps))
        ids.update(int(t) for t in out.track_ids if t >= 0)
    longest_gap = max(len(g) for g in "".join("x" if v else " " for v in seen).split("x"))
    if longest_gap < 0.9 * fps:
        assert len(ids) == 1


@given(
    arrays(np.float64, st.tuples(st.integers(0, 30), st.integers(1, 5)), elements=st.floats(-1e3, 1e3)),
    st.data(),
)
def test_clip_statistics_ignore_nan_rows(x, data):
    nan_rows = np.array(data.draw(st.lists(st.booleans(), min_size=len(x), max_size=len(x))), bool)
    with_nan = x.copy()
    with_nan[nan_rows] = np.nan
    got = clip_statistics(with_nan)
    valid = x[~nan_rows]
    assert got.shape == (4 * x.shape[1],) and np.isfinite(got).all()
    if len(valid):
        want = np.concatenate([valid.mean(0), valid.std(0), valid.min(0), valid.max(0)])
        assert np.allclose(got, want, rtol=1e-6, atol=1e-6)


@given(
    st.lists(
        arrays(np.float64, st.tuples(st.integers(0, 4), st.just(3)), elements=st.floats(0, 1)), max_size=10
    )
)
def test_group_statistics_are_finite_for_any_face_counts(frames):
    got = group_clip_statistics(frames, dim=3)
    assert got.shape == (12,) and np.isfinite(got).all()


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0.001, 0.5)), min_size=1, max_size=40), st.data())
def test_smoothed_emotions_stay_probability_vectors(steps, data):
    agg, t = Aggregator(smoothing_s=0.3), 0.0
    for i, (n, dt) in enumerate(steps):
        t += dt
        raw = data.draw(arrays(np.float32, (n, 7), elements=st.floats(0, 1, width=32)))
        raw = (raw + 1e-3) / (raw + 1e-3).sum(1, keepdims=True)
        out = agg.update(
            make_batch(
                [[10 * k, 0, 10 * k + 8, 8] for k in range(n)],
                frame_index=i,
                time_s=t,
                track_ids=list(range(1, n + 1)),
                emotion=raw,
            )
        )
        if n:
            sm = out.outputs["emotion_smooth"]
            assert np.allclose(sm.sum(1), 1, atol=1e-4) and (sm >= -1e-6).all()
    dist = agg.clip_distribution()
    assert dist == {} or abs(sum(dist.values()) - 1) < 1e-6
