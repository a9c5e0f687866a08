"""Shot boundaries (hard cuts): a cheap test on every frame, so that no track carries a face into another
scene.

Each frame is shrunk to TINY_WH (a strided view first, so a 1080p frame costs about 0.2 ms on one core,
measured in tools/bench.py's `shots` stage) and compared with the previous one: the mean absolute
difference of the tiny BGR pictures, 0-255. Measured on the shared clips: within a shot <= 7.3 (the 1080p
crowd walking, the camera moving), at the cuts of the pyfeat clips 82-141. A frame is a cut when its
difference is at least CUT_MIN and RATIO times the median of the last HISTORY differences (fast motion
raises the median, so it does not read as a cut). Dissolves and fades are not cuts here: appearance
(stages/appearance.py) vetoes a track that slides onto another face.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from pipeline.frames import Frame

TINY_WH = (32, 18)
TINY_SOURCE_SIDE = 72
"""The strided view keeps about this many pixels on the short side before INTER_AREA shrinks it."""
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
        difference = float(np.abs(tiny - previous).mean())
        typical = float(np.median(self._recent)) if self._recent else 0.0
        cut = difference >= self.cut_min and difference >= self.ratio * typical
        cut, self._since_cut = cut and self._since_cut >= MIN_SHOT_FRAMES, self._since_cut + 1
        self._recent.append(difference)
        if cut:
            self._since_cut = 1
            self.cuts += 1
            self._recent.clear()  # the new shot's motion starts its own history
        return cut


def tiny_picture(image_bgr: np.ndarray) -> np.ndarray:
    """The image as a TINY_WH int16 BGR picture (a strided view, then INTER_AREA)."""
    step = max(1, min(image_bgr.shape[:2]) // TINY_SOURCE_SIDE)
    return cv2.resize(image_bgr[::step, ::step], TINY_WH, interpolation=cv2.INTER_AREA).astype(np.int16)
