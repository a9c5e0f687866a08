"""Generated sources for live tests: real face photos pasted on a plain background, appearing, moving and
leaving (new tracks all the time), and a source that stalls like a network stream that stops sending."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.frames import SourceInfo
from pipeline.io.sources import Source

FACE_PHOTOS = (
    "pyfeat_happy_f15.jpg",
    "pyfeat_angry_f13.jpg",
    "pyfeat_surprise_f1.jpg",
    "pyfeat_disgust_m7.jpg",
    "fer_justin_smile.jpg",
)


def face_tiles(media_dir: Path, side: int = 96) -> list[np.ndarray]:
    """Each photo shrunk so its longer side is `side` px (the faces fill most of these photos)."""
    tiles = []
    for name in FACE_PHOTOS:
        img = cv2.imread(str(media_dir / name))
        scale = side / max(img.shape[:2])
        tiles.append(cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return tiles


class GeneratedSource(Source):
    """`frames` frames of `wh` pixels; `slots` places where a face shows for `life` frames, then none for
    `gap` frames, then another face elsewhere (a new track each time). Optionally stalls after
    `stall_after` frames until `release` is set (a network stream that stops sending)."""

    def __init__(
        self,
        tiles: list[np.ndarray],
        frames: int,
        wh: tuple[int, int] = (320, 240),
        fps: float = 30.0,
        *,
        slots: int = 2,
        life: int = 120,
        gap: int = 30,
        live: bool = False,
        stall_after: int | None = None,
        release: threading.Event | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(SourceInfo("generated", wh[0], wh[1], fps, frame_count=frames, is_live=live))
        self.tiles, self.frames, self.slots, self.life, self.gap = tiles, frames, slots, life, gap
        self.stall_after, self.release = stall_after, release or threading.Event()
        self.rng = np.random.default_rng(seed)
        self.appearances = 0

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        w, h = self.info.width, self.info.height
        background = np.full((h, w, 3), 90, np.uint8)
        period = self.life + self.gap
        placed: dict[int, tuple[np.ndarray, int, int, int]] = {}  # slot -> (tile, x, y, appearance)
        for i in range(self.frames):
            if self.stall_after is not None and i == self.stall_after:
                self.release.wait()
            img = background.copy()
            for slot in range(self.slots):
                phase = (i + slot * period // self.slots) % period
                if phase >= self.life:
                    placed.pop(slot, None)
                    continue
                if slot not in placed:
                    tile = self.tiles[int(self.rng.integers(len(self.tiles)))]
                    lane_w = w // self.slots
                    x = slot * lane_w + int(self.rng.integers(0, max(1, lane_w - tile.shape[1])))
                    y = int(self.rng.integers(0, max(1, h - tile.shape[0] - 20)))
                    placed[slot] = (tile, x, y, self.appearances)
                    self.appearances += 1
                tile, x, y, _ = placed[slot]
                y = min(h - tile.shape[0], y + phase // 12)  # drifts down slowly
                th, tw = tile.shape[:2]
                img[y : y + th, x : x + tw] = tile
            yield i / self.info.fps, img


class StalledSource(GeneratedSource):
    """A live source that delivers `frames_before` frames, then blocks until `release` (never, in a test
    that wants a stop to take effect whatever the source does)."""

    def __init__(self, tiles, frames_before: int = 30, release: threading.Event | None = None) -> None:
        super().__init__(tiles, 10**9, live=True, stall_after=frames_before, release=release)


def wait_until(predicate, timeout_s: float = 30.0, step_s: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return True
        time.sleep(step_s)
    return False
