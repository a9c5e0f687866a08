"""Per-stage wall-clock accounting (thread-safe enough: each stage is timed on one thread)."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager


class StageTimer:
    """Accumulates seconds and call counts per stage name."""

    def __init__(self) -> None:
        self.total_s: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextmanager
    def __call__(self, stage: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.total_s[stage] += time.perf_counter() - t0
            self.calls[stage] += 1

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        self.total_s[stage] += seconds
        self.calls[stage] += calls

    def summary(self, frames: int) -> dict[str, dict[str, float]]:
        """stage -> total seconds, ms per frame and ms per call."""
        return {
            s: {
                "total_s": round(t, 4),
                "ms_per_frame": round(1000 * t / max(frames, 1), 3),
                "ms_per_call": round(1000 * t / max(self.calls[s], 1), 3),
                "calls": self.calls[s],
            }
            for s, t in self.total_s.items()
        }
