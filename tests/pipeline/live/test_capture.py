"""Live capture on real sources: a file ends cleanly; a real HTTP stream that ends is reopened with
back-off, renumbered across reconnects, and reported lost once the server is gone."""

from __future__ import annotations

import functools
import itertools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import av
import pytest

from pipeline.io.capture import open_source
from pipeline.live.capture import Backoff, CaptureThread
from pipeline.runtime.mailbox import Mailbox
from pipeline.runtime.runner import END

CLIP_FRAMES = 72  # pyfeat_single_face.mp4


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def ts_dir(media_dir, tmp_path_factory):
    """pyfeat_single_face.mp4 remuxed (not re-encoded) to MPEG-TS, which streams over plain HTTP."""
    out = tmp_path_factory.mktemp("stream")
    with (
        av.open(str(media_dir / "pyfeat_single_face.mp4")) as src,
        av.open(str(out / "clip.ts"), "w", format="mpegts") as dst,
    ):
        vin = src.streams.video[0]
        vout = dst.add_stream_from_template(vin)
        for packet in src.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                dst.mux(packet)
    return out


@pytest.fixture
def http_server(ts_dir):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(ts_dir)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _drain(box: Mailbox) -> list:
    """Everything a reader gets from `box` until its end."""
    got = []
    while (item := box.get(timeout=30)) is not END:
        assert item is not None, "capture stalled"
        got.append(item)
    return got


FAST = Backoff(first_s=0.01, attempts=3)


def _capture(source, reopen=None, backoff=FAST):
    box, stop = Mailbox(), threading.Event()
    thread = CaptureThread(source, box, stop, reopen, backoff=backoff)
    thread.start()
    frames = _drain(box)
    thread.join(timeout=30)
    return thread, box, frames


def test_a_file_ends_cleanly_without_reconnecting(media_dir):
    path = str(media_dir / "pyfeat_single_face.mp4")
    thread, box, frames = _capture(open_source(path), reopen=lambda: open_source(path))
    report, counts = thread.report(), box.counts()
    assert report["reconnects"] == 0 and not report["source_lost"] and report["events"] == []
    assert report["frames_read"] == CLIP_FRAMES == counts.offered == len(frames) + counts.dropped
    assert thread.error is None


def test_a_stream_that_ends_is_reopened_then_reported_lost(http_server):
    url = f"http://127.0.0.1:{http_server.server_address[1]}/clip.ts"
    opened = []

    def reopen():
        source = open_source(url)
        opened.append(source)
        if len(opened) == 2:  # this copy still plays to its end; the next attempts are refused
            http_server.shutdown()
            http_server.server_close()
        return source

    thread, box, frames = _capture(open_source(url), reopen)
    report, counts = thread.report(), box.counts()
    kinds = [e["event"] for e in report["events"]]
    assert report["reconnects"] == 2 and report["source_lost"]
    lost = ["source_ended", "reconnect_failed", "reconnect_failed", "reconnect_failed", "source_lost"]
    assert kinds == ["source_ended", "reconnected"] * 2 + lost
    assert report["frames_read"] == 3 * CLIP_FRAMES == counts.offered == len(frames) + counts.dropped
    indices, times = [f.index for f in frames], [f.time_s for f in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 3 * CLIP_FRAMES - 1
    assert all(b > a for a, b in itertools.pairwise(times)), "times must keep rising across reconnects"


def test_stop_interrupts_the_back_off(media_dir):
    path = str(media_dir / "pyfeat_single_face.mp4")
    box, stop = Mailbox(), threading.Event()

    def refuse():
        raise AssertionError("stop must end the wait before any reopen")

    thread = CaptureThread(open_source(path), box, stop, refuse, live=True, backoff=Backoff(first_s=3600))
    thread.start()
    _drain_until_event(thread, "source_ended")
    stop.set()
    thread.join(timeout=30)
    assert not thread.is_alive() and thread.error is None
    assert [e["event"] for e in thread.report()["events"]] == ["source_ended"]


def _drain_until_event(thread: CaptureThread, kind: str) -> None:
    for _ in range(600):  # a hang guard, not a timing claim
        if any(e["event"] == kind for e in thread.events):
            return
        thread.box.get(timeout=0.05)
    pytest.fail(f"capture never reported {kind}")
