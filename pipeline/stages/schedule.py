"""When the detector runs, and at what size: the analyzer's scheduling policy in one place.

Detection is the costliest stage, so it runs on every Nth frame (`detect_every`; the tracker predicts
boxes in between) and, while every tracked face is large, on a reduced copy of the frame; a full-size
scan still runs at least every FULL_SCAN_EVERY_S so that new, smaller faces are found.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.frames import Frame

COARSE_MIN_FACE_PX = 48
"""The smallest tracked face, in the detector's input pixels, when detecting at a reduced size."""
COARSE_MIN_SIDE = 160
FULL_SCAN_EVERY_S = 1.0
"""Longest time between full-size detections while coarse ones run (new small faces appear within it)."""


class DetectionSchedule:
    """`plan(frame, tracked_xyxy)` -> (detect now?, detector input side or None for its default);
    `tracked_xyxy()` gives the tracked boxes, asked for only on frames that are detected."""

    def __init__(self, detect_every: int, coarse: bool, detector_max_side: int) -> None:
        self.detect_every, self.coarse, self.detector_max_side = detect_every, coarse, detector_max_side
        self.reset()

    def reset(self) -> None:
        """A new clip: the next frame is detected at full size."""
        self._frames_seen = 0
        self._full_scan_s = -np.inf

    def plan(self, frame: Frame, tracked_xyxy: Callable[[], np.ndarray | None]) -> tuple[bool, int | None]:
        detect_now = self._frames_seen % self.detect_every == 0
        self._frames_seen += 1
        if not detect_now:
            return False, None
        side = self._coarse_side(frame, tracked_xyxy())
        if side is None:
            self._full_scan_s = frame.time_s
        return True, side

    def _coarse_side(self, frame: Frame, boxes: np.ndarray | None) -> int | None:
        """A smaller detector input when every tracked face is large, else None (the detector's default).

        Detection cost grows with input pixels; a 200 px face is still found at a quarter of the size. The
        smallest tracked face is kept at >= COARSE_MIN_FACE_PX on the detector's input.
        """
        stale = frame.time_s - self._full_scan_s >= FULL_SCAN_EVERY_S
        if not self.coarse or boxes is None or not len(boxes) or stale:
            return None
        smallest = float(np.min(boxes[:, 2:] - boxes[:, :2]))
        long_side = max(frame.size_wh)
        side = max(COARSE_MIN_SIDE, int(long_side * COARSE_MIN_FACE_PX / max(smallest, 1.0)))
        side = -(-side // 32) * 32  # a few sizes only: each new size reconfigures the detector
        return side if side < min(long_side, self.detector_max_side) else None
