"""Per-track attribute refresh on real video: emotions unchanged, gender/age from the track's last refresh."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.io.capture import open_source


@pytest.fixture(scope="module")
def frames(media_dir):
    with open_source(media_dir / "pyfeat_single_face.mp4") as src:
        return list(src)  # 72 frames, 2.4 s


def _run(frames, every_s):
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=1, attributes_every_s=every_s, quality="fast"))
    out = [b for i in range(0, len(frames), 4) for b in analyzer.process(frames[i : i + 4])]
    return analyzer, out


def test_refresh_matches_the_full_graph_on_emotion_and_holds_attributes(frames):
    full_analyzer, full = _run(frames, 0.0)
    analyzer, refreshed = _run(frames, 1.0)
    assert full_analyzer.refresh is None and analyzer.refresh is not None
    assert [len(b) for b in refreshed] == [len(b) for b in full]
    for a, b in zip(refreshed, full, strict=True):
        np.testing.assert_allclose(a.outputs["emotion"], b.outputs["emotion"], atol=1e-4)
        assert "age" in a.outputs and "gender" in a.outputs
    ages = np.array([b.outputs["age"][0] for b in refreshed if len(b)])
    times = np.array([b.time_s for b in refreshed if len(b)])
    # 2.4 s of one face: its attributes are computed at ~0, ~1 and ~2 s (plus its untracked first sighting)
    assert 3 <= analyzer.refresh.full_rows <= 5 and analyzer.refresh.emotion_rows >= 60
    embedded = sum(int(np.isfinite(b.outputs["embedding"]).all(1).sum()) for b in refreshed)
    assert embedded == analyzer.refresh.full_rows  # the appearance's input: full-graph rows only, NaN else
    changes = times[1:][np.diff(ages) != 0]
    assert len(changes) <= 3 and np.all(np.diff(changes) >= 0.99)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (AnalyzerConfig(heads=("emotion",)), None),
        (AnalyzerConfig(attributes_every_s=0.0), None),
        (AnalyzerConfig(quality="fast"), "AttributeRefresh"),
        (AnalyzerConfig(), None),  # the multi-task net: one trunk, an emotion-only graph would cost as much
    ],
)
def test_refresh_only_where_it_applies(config, expected):
    analyzer = FaceAnalyzer(config)
    assert (type(analyzer.refresh).__name__ if analyzer.refresh else None) == expected
    analyzer.close()


def test_reset_forgets_attributes_so_a_new_clip_gets_its_own(frames):
    analyzer, _ = _run(frames, 1.0)
    analyzer.reset()
    before = analyzer.refresh.full_rows
    analyzer.process(frames[:4])  # the new clip's track 1 is not the old clip's track 1
    assert analyzer.refresh.full_rows > before


def test_ended_tracks_leave_the_attribute_cache(media_dir):
    with open_source(media_dir / "facenet_crowd_walking_1080p.mp4") as src:
        clip = list(src)
    analyzer = FaceAnalyzer(AnalyzerConfig(detect_every=3, reid_window_s=0.5, quality="fast"))
    for i in range(0, len(clip), 4):
        analyzer.process(clip[i : i + 4])
    # an id ends for good once its re-identification window has passed
    alive = {t.track_id for t in analyzer.tracker._tracks} | set(analyzer.tracker.book.gallery)
    assert len(analyzer.aggregator.track_summaries()) > len(alive)  # people left: some tracks ended
    assert set(analyzer.refresh._cache) <= alive
    analyzer.close()
