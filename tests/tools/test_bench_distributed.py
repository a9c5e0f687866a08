"""tools/bench_distributed.py: the clips it cuts from real media and the figures it derives."""

from __future__ import annotations

import av
import pytest

from tools.bench_distributed import against_local, figures, make_videos


def test_clips_are_cut_evenly_from_the_source(media_dir, tmp_path):
    paths = make_videos(str(media_dir / "pyfeat_single_face.mp4"), 2, 1.0, tmp_path)
    assert [p.name for p in paths] == ["v0.mp4", "v1.mp4"]
    for p in paths:
        with av.open(str(p)) as clip:
            assert 28 <= clip.streams.video[0].frames <= 31  # one second at 30 fps


def test_figures_come_from_the_moments_results_arrive():
    local = figures([1.0, 2.0, 3.0, 4.0])  # 1 s to start, then 1 s per video
    assert local == {"wall_s": 4.0, "videos_per_min": 60.0, "first_s": 1.0, "per_video_s": 1.0}
    two = against_local(figures([10.0, 10.6, 11.2, 11.8]), local, workers=2)  # 2 workers: 0.6 s apart
    assert two["vs_local"] == pytest.approx(4 / 11.8)  # videos per minute over the local 60
    assert two["overhead_per_video_s"] == pytest.approx(0.2)  # each worker spends 1.2 s per video
    assert two["start_overhead_s"] == pytest.approx(9.0)
