"""Issue 15, live: per-track attribute state has one owner (the infer thread), ended tracks reach it by
message, and a run stops within a second of --max-seconds or a signal whatever its source does."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.config import AnalyzerConfig
from pipeline.live import run as live_run
from pipeline.live.run import LiveJob, live_analyzer, run_live
from tests.live_sources import GeneratedSource, StalledSource, face_tiles


@pytest.fixture(scope="module")
def tiles(media_dir):
    return face_tiles(media_dir)


def test_attribute_refresh_under_a_slow_stage_is_owned_by_the_infer_thread(tiles, monkeypatch):
    """Faces come and go every ~1.5 s while the full net is slowed: the old code forgot tracks from the
    detect thread while the infer thread read them (KeyError, or an id re-added and never removed)."""
    analyzer = live_analyzer(
        AnalyzerConfig(detect_every=1, attributes_every_s=0.2, quality="fast", reid_window_s=0.0)
    )
    refresh = analyzer.refresh
    assert refresh is not None, "the attribute refresh must be on for this test"
    callers, full_infer = set(), refresh.full.infer

    def slow_full(crops):
        time.sleep(0.04)
        return full_infer(crops)

    def forget(ids, _real=refresh.forget):
        callers.add(threading.current_thread().name)
        _real(ids)

    monkeypatch.setattr(refresh.full, "infer", slow_full)
    monkeypatch.setattr(refresh, "forget", forget)
    source = GeneratedSource(tiles, 600, fps=60.0, slots=3, life=60, gap=15)
    source.realtime = True
    monkeypatch.setattr(live_run, "open_live_source", lambda job: source)
    try:
        s = run_live(LiveJob(source="generated"), analyzer=analyzer)
    finally:
        analyzer.close()
    assert s["frames_captured"] == 600 and s["tracks"] >= 10
    assert callers == {"emostream-infer"}
    waiting = {i for _, ids in analyzer._ended for i in ids} | set(analyzer.tracker.ended_ids())
    alive = {t.track_id for t in analyzer.tracker._tracks}  # lost ones included: not ended yet
    assert set(refresh._cache) <= alive | waiting, "an ended track was kept"
    assert refresh.full_rows > 0 and refresh.emotion_rows > 0


def test_max_seconds_ends_the_run_within_a_second_on_a_stalled_source(tiles, monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(live_run, "open_live_source", lambda job: StalledSource(tiles, 20, release))
    try:
        t0 = time.monotonic()
        s = run_live(LiveJob(source="stalled", max_seconds=3.0))
        after_setup = time.monotonic() - t0 - s["timings"]["setup_s"]
    finally:
        release.set()
    assert s["stop_reason"] == "max_seconds" and after_setup < 3.0 + 1.0, after_setup
    assert s["frames_captured"] == 20 and s["no_source_s"] > 2.0


def test_a_stop_request_ends_the_run_within_a_second_on_a_stalled_source(tiles, monkeypatch):
    release, stop = threading.Event(), threading.Event()
    monkeypatch.setattr(live_run, "open_live_source", lambda job: StalledSource(tiles, 20, release))
    timer = threading.Timer(2.0, stop.set)
    try:
        t0 = time.monotonic()
        timer.start()
        s = run_live(LiveJob(source="stalled"), stop=stop)
        took = time.monotonic() - t0
    finally:
        release.set()
        timer.cancel()
    assert s["stop_reason"] == "stopped" and took < 2.0 + 1.0 + s["timings"]["setup_s"], took
