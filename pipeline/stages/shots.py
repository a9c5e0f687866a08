"""Shot boundaries (hard cuts): a cheap test on every frame, so that no track carries a face into another
scene.

Each frame is shrunk to TINY_WH (128x72 pixels sampled, then averaged; 0.06-0.09 ms per frame with the
test, whatever the frame size: the `shots` stage in tools/bench.py) and compared with the previous one:
the mean absolute difference of the tiny BGR pictures, 0-255. Measured on the shared clips: within a shot
<= 7.3 (the 1080p crowd walking, the camera moving), at the cuts of the pyfeat clips 81-143. A frame is a
cut when its difference is at least CUT_MIN and RATIO times the median of the last HISTORY differences
(fast motion raises the median, so it does not read as a cut). Dissolves and fades are not cuts here:
appearance (stages/appearance.py) vetoes a track that slides onto another face.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Iterable, Iterator

import cv2
import numpy as np

from pipeline.frames import Frame

TINY_WH = (32, 18)
SAMPLES_WH = (128, 72)
CUT_MIN = 20.0
"""Mean absolute difference (0-255) a cut needs at least (within-shot maximum on the clips: 7.3)."""
RATIO = 4.0
HISTORY = 8
MIN_SHOT_FRAMES = 3
"""A cut within this many frames of the last one is the same cut (the .mov clips change over 2 frames)."""


class ShotDetector:
    """`update(frame)` -> True when `frame` starts a new shot (never for the first frame)."""

    def __init__(self, cut_min: float = CUT_MIN, ratio: float = RATIO) -> None:
        self.cut_min, self.ratio = cut_min, ratio
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        self._previous: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=HISTORY)
        self._since_cut = MIN_SHOT_FRAMES

    def update(self, frame: Frame) -> bool:
        tiny = tiny_picture(frame.image_bgr)
        previous, self._previous = self._previous, tiny
        if previous is None or previous.shape != tiny.shape:
            return False
        difference = cv2.norm(tiny, previous, cv2.NORM_L1) / tiny.size  # mean |a - b|, one C call
        cut = difference >= self.cut_min and difference >= self.ratio * self._typical()
        cut, self._since_cut = cut and self._since_cut >= MIN_SHOT_FRAMES, self._since_cut + 1
        self._recent.append(difference)
        if cut:
            self._since_cut = 1
            self.cuts += 1
            self._recent.clear()  # the new shot's motion starts its own history
        return cut

    def _typical(self) -> float:
        """Median of the recent differences (asked only for a candidate cut: most frames skip it)."""
        return float(np.median(self._recent)) if self._recent else 0.0


def tiny_picture(image_bgr: np.ndarray) -> np.ndarray:
    """The image as a TINY_WH uint8 BGR picture: SAMPLES_WH pixels picked (INTER_NEAREST, no pass over the
    frame), then averaged 4x4 (INTER_AREA), so one moving pixel does not read as a change of scene."""
    samples = cv2.resize(image_bgr, SAMPLES_WH, interpolation=cv2.INTER_NEAREST)
    return cv2.resize(samples, TINY_WH, interpolation=cv2.INTER_AREA)


def with_cuts(frames: Iterable[Frame], timer=None) -> Iterator[Frame]:
    """The frames, each with `cut` set by one ShotDetector, where they are read.

    Offline runs test for cuts on the decode thread: the frame was just written there, and the analyzer's
    thread, which every frame waits on, is left the tracking alone. `timer` (a StageTimer) gets the time
    as `shots`; it is also inside the decode thread's own `decode` time.
    """
    detector = ShotDetector()
    for frame in frames:
        t0 = time.perf_counter()
        cut = detector.update(frame)
        if timer is not None:
            timer.add("shots", time.perf_counter() - t0)
        yield dataclasses.replace(frame, cut=cut)
