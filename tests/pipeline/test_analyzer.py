"""FaceAnalyzer's scheduling on real video: detect-every-N, coarse detection of large faces, full scans."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source
from pipeline.stages.schedule import FULL_SCAN_EVERY_S
from pipeline.stages.track import iou_matrix


@pytest.fixture(scope="module")
def woman_frames(media_dir):
    with open_source(media_dir / "pexels_woman_emotions.mp4") as src:
        return [f for f, _ in zip(src, range(96), strict=False)]


def _spy(analyzer):
    calls, detect = [], analyzer.detector.detect

    def spy(frame, max_side=None):
        calls.append((frame.time_s, max_side))
        return detect(frame, max_side=max_side)

    analyzer.detector.detect = spy
    return calls


@pytest.mark.parametrize(("coarse", "every"), [(True, 3), (True, 1), (False, 3)])
def test_large_faces_are_detected_coarsely_with_regular_full_scans(woman_frames, coarse, every):
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=every, coarse_detection=coarse))
    calls = _spy(analyzer)
    batches = analyzer.process(woman_frames)
    assert len(calls) == -(-len(woman_frames) // every)
    assert all(len(b) == 1 for b in batches)
    full = [t for t, side in calls if side is None]
    assert full[0] == calls[0][0], "the first detection is always full size"
    if not coarse:
        assert len(full) == len(calls)
        return
    assert sum(side is not None for _, side in calls) > len(calls) / 2
    assert max(np.diff(full)) <= FULL_SCAN_EVERY_S + every / 23.98 + 1e-6
    analyzer.close()


def test_coarse_boxes_agree_with_full_size_boxes(woman_frames):
    analyzer = FaceAnalyzer(AnalyzerConfig())
    for frame in woman_frames[::12]:
        full = analyzer.detector.detect(frame)
        coarse = analyzer.detector.detect(frame, max_side=160)
        assert len(full) == len(coarse) == 1
        assert iou_matrix(full.xyxy, coarse.xyxy)[0, 0] > 0.8
        eye_gap = np.linalg.norm(full.landmarks[0, 0] - full.landmarks[0, 1])
        assert np.abs(full.landmarks - coarse.landmarks).max() < 0.25 * eye_gap
    analyzer.close()


def test_no_tracks_means_full_size_detection(media_dir):
    with open_source(media_dir / "pyfeat_noface_then_face.mov") as src:
        frames = [f for f, _ in zip(src, range(30), strict=False)]  # the cartoon: no face yet
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=1))
    calls = _spy(analyzer)
    analyzer.process(frames)
    assert all(side is None for _, side in calls)
    analyzer.close()
