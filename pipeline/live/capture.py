"""Live capture: one thread reads a source into a newest-wins mailbox and survives source loss.

A file ends cleanly. A live source (camera, network stream) that stops is reopened with exponential
back-off; every loss, failed attempt and reconnect is recorded as an event, and after `Backoff.attempts`
failures in a row the source is reported lost. Frames of every (re)opened source are renumbered so
indices and times keep increasing across reconnects, as the tracker, smoother and mp4 writer expect.
Every stretch longer than `STALL_S` without a new frame (a stalled stream, a camera gone, reconnecting,
up to the stop) adds to `no_source_s`, so a run that mostly had no picture says so.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from engines.errors import EmostreamError
from pipeline.frames import Frame
from pipeline.io.capture import Source
from pipeline.runtime.mailbox import Mailbox

STALL_S = 1.0
"""A gap between frames longer than this (or than 3 frame intervals, if longer) is time without a source."""


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnect attempts: first_s, first_s * factor, ... capped at max_s."""

    first_s: float = 0.5
    factor: float = 2.0
    max_s: float = 8.0
    attempts: int = 8  # failed attempts in a row before the source counts as lost

    def delay_s(self, attempt: int) -> float:
        return min(self.max_s, self.first_s * self.factor**attempt)


class CaptureThread(threading.Thread):
    """Reads `source` (then sources from `reopen` after a loss) into `box` until the end or `stop`.

    `live` decides whether an ended source is reopened (default: the source's own `info.is_live`).
    The mailbox is closed when the thread ends, so the reader drains it and sees the end.
    """

    def __init__(
        self,
        source: Source,
        box: Mailbox[Frame],
        stop: threading.Event,
        reopen: Callable[[], Source] | None = None,
        *,
        live: bool | None = None,
        backoff: Backoff = Backoff(),
    ) -> None:
        super().__init__(name="emostream-capture", daemon=True)
        self.source, self.box, self.stop, self.reopen = source, box, stop, reopen
        self.live = source.info.is_live if live is None else live
        self.backoff = backoff
        self.error: BaseException | None = None
        self.reconnects = 0
        self.lost = False
        self.events: list[dict] = []
        self._t0 = time.monotonic()
        self._done_read = self._done_errors = 0
        self._index = 0
        self._shift_s: float | None = 0.0  # added to source times; None: set at the next frame
        self._last: Frame | None = None
        self._stall_s = max(STALL_S, 3.0 / source.info.fps) if source.info.fps > 0 else STALL_S
        self._last_frame_at = time.monotonic()
        self._ended_at: float | None = None
        self._gaps_s = 0.0

    def run(self) -> None:
        try:
            while self.source is not None and not self.stop.is_set():
                self._read_all(self.source)
                self._retire(self.source)
                if self.stop.is_set() or not self.live or self.reopen is None:
                    break
                self.source = self._reconnect()
        except BaseException as e:  # reported by the main thread
            self.error = e
        finally:
            if self.source is not None:
                self._retire(self.source)
            self._ended_at = time.monotonic()
            self.box.close()

    def start(self) -> None:
        self._last_frame_at = time.monotonic()  # time without a source counts from the start of capture
        super().start()

    def _read_all(self, source: Source) -> None:
        for frame in source:
            now = time.monotonic()
            if now - self._last_frame_at > self._stall_s:
                self._gaps_s += now - self._last_frame_at
            self._last_frame_at = now
            self.box.put(self._renumbered(frame))
            if self.stop.is_set():
                break

    def no_source_s(self, until: float | None = None) -> float:
        """Seconds so far in stretches without a frame longer than the stall limit, the open one included
        up to `until` (default: when capture ended, else now). A file that simply ended is not counted."""
        end = min(x for x in (until, self._ended_at, time.monotonic()) if x is not None)
        if self._ended_at is not None and not self.live and not self.stop.is_set():
            end = self._last_frame_at  # a file's end is no loss
        gap = end - self._last_frame_at
        return self._gaps_s + (gap if gap > self._stall_s else 0.0)

    def _renumbered(self, frame: Frame) -> Frame:
        """The frame with a run-wide index and a time that keeps increasing after a reconnect."""
        if self._shift_s is None:  # first frame after a reconnect: continue from the last one
            gap_s = 1.0 / (frame.source.fps if frame.source and frame.source.fps > 0 else 30.0)
            if self._last is not None and frame.captured_at_s and self._last.captured_at_s:
                gap_s = max(gap_s, frame.captured_at_s - self._last.captured_at_s)
            last_s = self._last.time_s if self._last is not None else 0.0
            self._shift_s = last_s + gap_s - frame.time_s
        out = dataclasses.replace(frame, index=self._index, time_s=frame.time_s + self._shift_s)
        self._index += 1
        self._last = out
        return out

    def _retire(self, source: Source) -> None:
        """Close an ended source and fold its counters into the run's."""
        source.close()
        self._done_read += source.frames_read
        self._done_errors += source.decode_errors
        if source.last_error:
            self._event("error", source.last_error)
        self.source = None

    def _reconnect(self) -> Source | None:
        """Reopen with back-off; None when stopped or after `backoff.attempts` failures in a row."""
        self._event("source_ended", "live source stopped delivering frames; reconnecting")
        for attempt in range(self.backoff.attempts):
            if self.stop.wait(self.backoff.delay_s(attempt)):
                return None
            try:
                source = self.reopen()
            except EmostreamError as e:
                self._event("reconnect_failed", str(e))
                continue
            self.reconnects += 1
            self._shift_s = None
            self._event("reconnected", f"attempt {attempt + 1}")
            return source
        self.lost = True
        self._event("source_lost", f"gave up after {self.backoff.attempts} attempts")
        return None

    def _event(self, kind: str, detail: str) -> None:
        self.events.append({"t_s": round(time.monotonic() - self._t0, 3), "event": kind, "detail": detail})

    def report(self, until: float | None = None) -> dict:
        """Frames read and decode errors over every source so far, reconnects, loss, seconds without a
        source (up to `until`, a time.monotonic(): the run's end) and events."""
        current = self.source
        return {
            "frames_read": self._done_read + (current.frames_read if current else 0),
            "decode_errors": self._done_errors + (current.decode_errors if current else 0),
            "reconnects": self.reconnects,
            "source_lost": self.lost,
            "no_source_s": round(self.no_source_s(until), 2),
            "events": list(self.events),
        }
