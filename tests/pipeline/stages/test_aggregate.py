import math

import numpy as np
import pytest

from pipeline.frames import EMOTIONS, UNTRACKED, FaceBatch
from pipeline.stages.aggregate import (
    Aggregator,
    clip_statistics,
    group_clip_statistics,
    group_frame_statistics,
    l2_normalize,
)
from tests.builders import make_batch

HAPPY, SAD = np.eye(7)[EMOTIONS.index("happy")], np.eye(7)[EMOTIONS.index("sad")]
BOX = [10, 10, 60, 60]


def feed(agg, rows, track_id=1):
    """rows: list of (time_s, emotion (7,) or None); one face of `track_id` per frame."""
    out = []
    for i, (t, emo) in enumerate(rows):
        emotion = None if emo is None else np.asarray(emo)[None]
        out.append(
            agg.update(make_batch([BOX], frame_index=i, time_s=t, track_ids=[track_id], emotion=emotion))
        )
    return out


@pytest.mark.parametrize("times", [[0, 0.033, 0.066, 0.1], [0, 0.01, 0.5, 0.51, 2.0]])
def test_constant_input_stays_constant(times):
    emo = np.array([0.1, 0.05, 0.05, 0.4, 0.2, 0.1, 0.1])
    for b in feed(Aggregator(0.5), [(t, emo) for t in times]):
        np.testing.assert_allclose(b.outputs["emotion_smooth"][0], emo, atol=1e-6)


@pytest.mark.parametrize(
    ("tau_s", "dt_s"),
    [(0.5, 1 / 30), (0.5, 0.5), (0.2, 0.04), (1.0, 0.25), (0.0, 0.1)],  # tau 0: no smoothing
)
def test_step_input_approaches_with_alpha_from_dt_and_tau(tau_s, dt_s):
    out = feed(Aggregator(tau_s), [(0.0, SAD), (dt_s, HAPPY), (2 * dt_s, HAPPY)])
    alpha = 1 - math.exp(-dt_s / tau_s) if tau_s > 0 else 1.0
    np.testing.assert_allclose(out[0].outputs["emotion_smooth"][0], SAD, atol=1e-6)  # first: itself
    np.testing.assert_allclose(out[1].outputs["emotion_smooth"][0], SAD + alpha * (HAPPY - SAD), atol=1e-6)
    expected = SAD + (1 - (1 - alpha) ** 2) * (HAPPY - SAD)
    np.testing.assert_allclose(out[2].outputs["emotion_smooth"][0], expected, atol=1e-6)
    assert out[2].outputs["emotion_smooth"][0].sum() == pytest.approx(1, abs=1e-6)


@pytest.mark.parametrize("split_s", [0.1, 0.05, 0.19])
def test_uneven_steps_smooth_by_time_not_by_frame_count(split_s):
    """VFR: sad, then happy at split_s and at 0.2 s, ends where one step to happy at 0.2 s ends."""
    two = feed(Aggregator(0.5), [(0.0, SAD), (split_s, HAPPY), (0.2, HAPPY)])[-1].outputs["emotion_smooth"]
    one = feed(Aggregator(0.5), [(0.0, SAD), (0.2, HAPPY)])[-1].outputs["emotion_smooth"]
    np.testing.assert_allclose(two, one, atol=1e-6)
    assert two[0] @ HAPPY == pytest.approx(1 - math.exp(-0.2 / 0.5), abs=1e-6)


def test_tracks_are_smoothed_separately_and_untracked_faces_pass_unsmoothed():
    agg = Aggregator(0.5)
    b0 = make_batch(
        [BOX, BOX, BOX], time_s=0.0, track_ids=[1, 2, UNTRACKED], emotion=np.stack([SAD, HAPPY, SAD])
    )
    b1 = make_batch(
        [BOX, BOX, BOX], time_s=0.1, track_ids=[2, 1, UNTRACKED], emotion=np.stack([SAD, SAD, HAPPY])
    )
    agg.update(b0)
    smooth = agg.update(b1).outputs["emotion_smooth"]
    alpha = 1 - math.exp(-0.1 / 0.5)
    np.testing.assert_allclose(smooth[0], HAPPY + alpha * (SAD - HAPPY), atol=1e-6)  # track 2
    np.testing.assert_allclose(smooth[1], SAD, atol=1e-6)  # track 1: constant
    np.testing.assert_allclose(smooth[2], HAPPY, atol=1e-6)  # untracked: no history


def test_batches_without_emotion_pass_through_and_count_as_seen():
    agg = Aggregator(0.5)
    plain = make_batch([BOX], frame_index=3, time_s=0.1, track_ids=[1])
    assert agg.update(plain) is plain and agg.time_s == 0.1
    empty = FaceBatch.empty(4, 0.2)
    assert agg.update(empty) is empty and agg.time_s == 0.2
    (s,) = agg.track_summaries()
    assert s.frames_seen == 1 and s.dominant_emotion is None and np.isnan(s.mean_emotion).all()
    assert agg.clip_distribution() == {}


def test_nan_emotion_rows_keep_the_previous_smoothing():
    out = feed(Aggregator(0.5), [(0.0, HAPPY), (0.1, np.full(7, np.nan)), (0.2, SAD)])
    np.testing.assert_allclose(out[1].outputs["emotion_smooth"][0], HAPPY, atol=1e-6)
    alpha = 1 - math.exp(-0.2 / 0.5)  # dt counts from the last real observation
    np.testing.assert_allclose(out[2].outputs["emotion_smooth"][0], HAPPY + alpha * (SAD - HAPPY), atol=1e-6)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        # (frame_index, time_s, track ids) -> {track: (first_frame, last_frame, first_t, last_t, frames_seen)}
        (
            [(0, 0.0, [1]), (1, 0.04, [1, 2]), (5, 0.2, [2])],
            {1: (0, 1, 0.0, 0.04, 2), 2: (1, 5, 0.04, 0.2, 2)},
        ),
        ([(3, 0.1, [7, UNTRACKED]), (4, 0.13, [UNTRACKED])], {7: (3, 3, 0.1, 0.1, 1)}),
        ([(0, 0.0, [])], {}),
    ],
)
def test_track_summaries_first_last_and_frames_seen(frames, expected):
    agg = Aggregator()
    for index, t, ids in frames:
        agg.update(make_batch([BOX] * len(ids), frame_index=index, time_s=t, track_ids=ids))
    got = {
        s.track_id: (s.first_frame, s.last_frame, s.first_time_s, s.last_time_s, s.frames_seen)
        for s in agg.track_summaries()
    }
    assert got == expected


def test_summary_means_gender_and_age():
    agg = Aggregator()
    emotions = [HAPPY, HAPPY, SAD]
    genders, ages = [0.9, 0.7, np.nan], [30.0, 34.0, 38.0]
    for i, (e, g, a) in enumerate(zip(emotions, genders, ages, strict=True)):
        batch = make_batch([BOX], frame_index=i, track_ids=[1], emotion=e[None])
        agg.update(batch.with_outputs(gender=np.array([g]), age=np.array([a])))
    (s,) = agg.track_summaries()
    np.testing.assert_allclose(s.mean_emotion, (2 * HAPPY + SAD) / 3)
    assert s.dominant_emotion == "happy" and s.gender == "man" and s.mean_gender == pytest.approx(0.8)
    assert s.mean_age == pytest.approx(34.0) and s.frames_seen == 3


def test_clip_distribution_counts_every_face_frame_and_sums_to_one():
    agg = Aggregator()
    agg.update(make_batch([BOX, BOX], time_s=0.0, track_ids=[1, UNTRACKED], emotion=np.stack([HAPPY, SAD])))
    agg.update(make_batch([BOX], time_s=0.1, track_ids=[1], emotion=HAPPY[None]))
    agg.update(make_batch([BOX], time_s=0.2, track_ids=[1], emotion=np.full((1, 7), np.nan)))  # skipped
    dist = agg.clip_distribution()
    assert list(dist) == list(EMOTIONS) and sum(dist.values()) == pytest.approx(1)
    assert dist["happy"] == pytest.approx(2 / 3) and dist["sad"] == pytest.approx(1 / 3)


def test_wrong_emotion_width_is_refused():
    batch = make_batch([BOX], track_ids=[1]).with_outputs(emotion=np.full((1, 8), 1 / 8))
    with pytest.raises(ValueError, match=r"expected \(N,7\)"):
        Aggregator().update(batch)


@pytest.mark.parametrize(
    ("features", "expected", "count"),
    [
        ([[1, 2], [3, 4]], [2, 3, 1, 1, 1, 2, 3, 4], 2),
        ([[1, 2], [np.nan, 9], [3, 4]], [2, 3, 1, 1, 1, 2, 3, 4], 2),  # NaN rows ignored
        ([[5.0]], [5, 0, 5, 5], 1),
        (np.zeros((0, 2)), [0] * 8, 0),  # empty clip: zeros, count 0
        ([[np.nan, np.nan]], [0] * 8, 0),
    ],
)
def test_clip_statistics(features, expected, count):
    stats, n = clip_statistics(np.asarray(features, float), return_count=True)
    np.testing.assert_allclose(stats, expected)
    assert n == count and clip_statistics(np.asarray(features, float)).shape == (len(expected),)


@pytest.mark.parametrize(
    ("v", "expected"),
    [([3, 4], [0.6, 0.8]), ([0, 0], [0, 0]), ([[1, 0], [0, 2]], [[1, 0], [0, 1]])],
)
def test_l2_normalize(v, expected):
    np.testing.assert_allclose(l2_normalize(np.asarray(v, float)), expected)


@pytest.mark.parametrize(
    ("frames", "expected_frames", "expected_clip"),
    [
        # frame stats: [mean | std] over faces; clip: [mean over frames | std over frames] of those
        (
            [[[1, 2], [3, 4]], [[5, 6]]],
            [[2, 3, 1, 1], [5, 6, 0, 0]],
            [3.5, 4.5, 0.5, 0.5, 1.5, 1.5, 0.5, 0.5],
        ),
        (
            [[[1, 2], [3, 4]], np.zeros((0, 2)), [[1, 2], [3, 4]]],
            [[2, 3, 1, 1]] * 2,
            [2, 3, 1, 1, 0, 0, 0, 0],
        ),
        ([np.zeros((0, 2)), [[np.nan, 1]]], np.zeros((0, 4)), [0] * 8),  # no valid face anywhere
    ],
)
def test_group_statistics(frames, expected_frames, expected_clip):
    frames = [np.asarray(f, float) for f in frames]
    np.testing.assert_allclose(group_frame_statistics(frames), np.asarray(expected_frames).reshape(-1, 4))
    stats, n = group_clip_statistics(frames, return_count=True)
    np.testing.assert_allclose(stats, expected_clip)
    assert n == len(expected_frames)


def test_group_statistics_need_a_feature_size():
    with pytest.raises(ValueError, match="pass dim"):
        group_frame_statistics([])
    assert group_clip_statistics([], dim=3).shape == (12,)


def test_retired_tracks_release_their_state_and_still_summarise_exactly():
    """Issue 15: the aggregator kept every track ever seen; retired ones now go to a spill file."""
    live, kept = Aggregator(0.5), Aggregator(0.5)
    for tid in range(1, 301):
        for agg in (live, kept):
            feed(agg, [(0.0, HAPPY), (0.1, SAD), (0.2, None)], track_id=tid)
        live.retire([tid])
    assert live.live_tracks == 0 and live.retired == 300 and kept.live_tracks == 300
    a, b = live.track_summaries(), kept.track_summaries()
    assert [t.track_id for t in a] == list(range(1, 301))
    for x, y in zip(a, b, strict=True):
        assert (x.first_frame, x.last_frame, x.frames_seen, x.dominant_emotion) == (
            y.first_frame, y.last_frame, y.frames_seen, y.dominant_emotion
        )  # fmt: skip
        np.testing.assert_array_equal(x.mean_emotion, y.mean_emotion)
    live.retire([7, 99999])  # already retired, never seen: nothing happens
    assert len(live.track_summaries()) == 300
    live.close()
