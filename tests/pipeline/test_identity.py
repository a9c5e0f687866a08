"""Identity end to end (`emostream run` on real faces): no track crosses a hard cut between two people, a
person back after a gap longer than max_age_s keeps the id by appearance, one-person clips keep one track,
low-score faces continue tracks, small faces are tracked but not inferred."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source
from tools.tracking_figures import build_cut_clip, build_gap_clip, identity_figures, run_clip


@pytest.fixture(scope="module")
def built(media_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("identity")
    return {
        "cut": (work / "cut.mp4", build_cut_clip(media_dir, work / "cut.mp4")),
        "gap": (work / "gap.mp4", build_gap_clip(media_dir, work / "gap.mp4")),
    }


@pytest.mark.parametrize("quality", ["fast", "mtl"])
def test_no_track_spans_a_hard_cut_between_two_people(built, quality):
    """The man starts where the woman's face was: box-only tracking gave him her id (one track, 2 people)."""
    path, cut_s = built["cut"]
    rows = run_clip(path, quality=quality)
    before = {r["track_id"] for r in rows if r["time_s"] < cut_s and r["track_id"] >= 0}
    after = {r["track_id"] for r in rows if r["time_s"] >= cut_s and r["track_id"] >= 0}
    assert before and after and not before & after
    assert identity_figures(rows, cut_s)["ids_across_cut"] == 0


@pytest.mark.parametrize(("window_s", "same_id"), [(5.0, True), (0.0, False)])
def test_the_same_person_back_after_a_gap_keeps_the_id_with_reidentification(built, window_s, same_id):
    """With the fused net (quality fast), whose embedding tells people apart (docs/tracking.md)."""
    path, (gap_start_s, gap_end_s) = built["gap"]
    rows = run_clip(path, quality="fast", reid_window_s=window_s)
    first = {r["track_id"] for r in rows if r["time_s"] < gap_start_s}
    second = {r["track_id"] for r in rows if r["time_s"] >= gap_end_s + 0.5 and r["track_id"] >= 0}
    assert len(second) == 1 and (second <= first) == same_id


@pytest.mark.parametrize(
    "video", ["pexels_woman_emotions.mp4", "pyfeat_single_face.mp4", "pyfeat_face_then_noface.mov"]
)
def test_one_person_clips_keep_one_track_over_nine_tenths_of_their_faces(media_dir, video):
    figures = identity_figures(run_clip(media_dir / video))
    assert figures["main_share"] >= 0.9 and figures["jumps"] == 0


@pytest.mark.parametrize(("quality", "window_s"), [("fast", 5.0), ("mtl", 0.0)])
def test_appearance_is_on_only_for_nets_whose_embedding_tells_people_apart(quality, window_s):
    analyzer = FaceAnalyzer(AnalyzerConfig(quality=quality))
    assert analyzer.tracker.book.window_s == window_s
    analyzer.close()


def test_low_score_faces_continue_confirmed_tracks_on_the_crowd(media_dir):
    """The detectors used to drop faces under 0.6 before the tracker: now they reach its second stage."""
    with open_source(media_dir / "facenet_crowd_walking_1080p.mp4") as src:
        frames = list(src)
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=3))
    assert analyzer.detector.low_score < analyzer.detector.high_score == 0.6
    rows = [b for i in range(0, len(frames), 4) for b in analyzer.process(frames[i : i + 4]) if b.detected]
    low = np.concatenate([b.track_ids[b.scores < 0.6] for b in rows])
    assert len(low) >= 10 and (low >= 1).all()  # each continues a confirmed track
    analyzer.close()


def test_faces_under_min_face_are_tracked_and_drawn_but_not_inferred(media_dir):
    with open_source(media_dir / "pyfeat_single_face.mp4") as src:
        frames = [f for f, _ in zip(src, range(8), strict=False)]
    analyzer = FaceAnalyzer(AnalyzerConfig(min_face_px=400))  # the man's face is ~150 px: "too small"
    batches = analyzer.process(frames[:4]) + analyzer.process(frames[4:])
    assert all(len(b) == 1 and b.track_ids[0] == 1 for b in batches)
    assert all(np.isnan(b.outputs["emotion"]).all() for b in batches)
    assert analyzer.tracking_facts()["faces_below_min_face"] == 8
    analyzer.close()
