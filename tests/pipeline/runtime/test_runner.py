"""Scheduling behaviour of the offline runner: order, bounded buffering, interrupts, worker errors."""

import threading
import time

import pytest

from pipeline.frames import FaceBatch
from pipeline.runtime.runner import run_offline
from tests.builders import make_frame


def _frames(n, produced=None):
    for i in range(n):
        if produced is not None:
            produced.append(i)
        yield make_frame(i, wh=(32, 16))


def _process(frames):
    return [FaceBatch.empty(f.index, f.time_s, f.size_wh) for f in frames]


@pytest.mark.parametrize("batch_frames", [1, 3, 4, 50])
def test_order_preserved_and_every_frame_encoded(batch_frames):
    emitted, encoded = [], []
    stats = run_offline(
        _frames(23),
        _process,
        lambda f, b: emitted.append(f.index),
        lambda item: encoded.append(item[0].index),
        batch_frames=batch_frames,
    )
    assert emitted == encoded == list(range(23))
    assert stats.frames == 23 and not stats.interrupted and stats.fps > 0
    assert "decode" in stats.timings


def test_decoder_runs_at_most_a_bounded_distance_ahead():
    produced, gap = [], []
    stats = run_offline(
        _frames(200, produced),
        _process,
        lambda f, b: gap.append(len(produced) - f.index),
        batch_frames=1,
        queue_size=4,
    )
    assert stats.frames == 200
    assert max(gap) <= 4 + 3  # queue + the item in hand + the one being produced + the one in process


def test_interrupt_keeps_emitted_and_encoded_in_step():
    emitted, encoded = [], []

    def emit(frame, batch):
        emitted.append(frame.index)
        if frame.index == 37:
            raise KeyboardInterrupt

    stats = run_offline(_frames(1000), _process, emit, lambda item: encoded.append(item[0].index))
    assert stats.interrupted and stats.frames == 37
    assert encoded == list(range(37)) and emitted[-1] == 37
    assert not [t for t in threading.enumerate() if t.name.startswith("emostream-")]


@pytest.mark.parametrize("batch_frames", [1, 4, 8])
def test_decode_error_reaches_the_caller_after_good_frames(batch_frames):
    def broken():
        yield from _frames(5)
        raise OSError("disk went away")

    emitted = []
    with pytest.raises(OSError, match="disk went away"):
        run_offline(broken(), _process, lambda f, b: emitted.append(f.index), batch_frames=batch_frames)
    assert emitted == [0, 1, 2, 3, 4]  # frames decoded before the error are processed, even mid-chunk


def test_a_second_interrupt_while_flushing_still_waits_for_the_encoder(monkeypatch):
    real_join, interrupted_joins, encoded = threading.Thread.join, [], []

    def join_interrupted_once(self, timeout=None):  # Ctrl-C pressed again while the encoder drains
        if self.name == "emostream-encode" and not interrupted_joins:
            interrupted_joins.append(self)
            raise KeyboardInterrupt
        return real_join(self, timeout)

    def emit(frame, batch):
        if frame.index == 20:
            raise KeyboardInterrupt

    def encode(item):
        time.sleep(0.005)
        encoded.append(item[0].index)

    monkeypatch.setattr(threading.Thread, "join", join_interrupted_once)
    try:
        stats = run_offline(_frames(1000), _process, emit, encode, batch_frames=1)
    except KeyboardInterrupt:
        pytest.fail("the second interrupt escaped while the encoder was still writing")
    assert interrupted_joins and stats.interrupted
    assert encoded == list(range(20)) and not interrupted_joins[0].is_alive()


def test_encoder_error_stops_the_run():
    def encode(item):
        if item[0].index == 3:
            raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        run_offline(_frames(500), _process, lambda f, b: None, encode, batch_frames=1)
    assert not [t for t in threading.enumerate() if t.name.startswith("emostream-")]
