"""Per-track appearance from the face network's `embedding`, and re-identification within a time window.

The tracker associates BEFORE inference (`locate`) and the embedding exists only AFTER it (`infer`), so
appearance works one step behind the boxes: `AppearanceBook.post` (any thread) queues each inferred row's
embedding; the tracker drains the queue at its next update and
- folds it into the track's appearance, an exponential average of L2-normalised embeddings (`ALPHA`);
- vetoes a box-only match whose embedding is clearly another face's (cosine < `SPLIT_BELOW` against a
  track with >= `MIN_OBSERVATIONS`): that track's id ends there and the face goes on as a new track;
- re-identifies a tentative track by its first embedding: against the confirmed tracks that are lost or
  ended less than `window_s` ago (a cut ends every track), the best one with cosine >= `REID_MIN` and a
  `REID_MARGIN` over the runner-up gives back its id; otherwise the track gets a new id as usual.
Dimension-agnostic: cosine similarity on whatever width the net gives (a change of width restarts a track's
average). The thresholds were measured on the shared clips with the fused net (docs/tracking.md): the
same face against its own average >= 0.85 in 99 % of frames on large faces (>= 0.53 on the crowd's small
ones), two different people <= 0.71 for one frame against the other's average.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

ALPHA = 0.3
"""Weight of a new embedding in a track's average (about the last 3 observations dominate)."""
REID_MIN = 0.8
"""Cosine a re-identification needs (same face >= 0.85, different faces <= 0.71 on the shared clips)."""
REID_MARGIN = 0.05
"""Lead the best candidate needs over the second: two look-alikes in the window give no id at all."""
SPLIT_BELOW = 0.35
"""Cosine under which a box-only match is vetoed (below the same face's 1st percentile in the crowd)."""
MIN_OBSERVATIONS = 2
"""Observations a track's average needs before it may veto a match."""
IDENTITY_QUALITIES = ("fast",)
"""Net qualities whose `embedding` was measured to tell people apart (the thresholds above). The project's
own multi-task net ("mtl") was measured not to: its embedding follows expression (the woman against the
man: median 0.97 for one frame against the other's nearest exemplar, the man against himself 0.99), so no
threshold keeps a different person from inheriting an id; with it appearance stays off (boxes and cuts
only). Re-measure (docs/tracking.md) before adding a quality."""
DEFAULT_WINDOW_S = 5.0


def default_window_s(quality: str) -> float:
    """How long a lost or cut id may come back by appearance with this net quality (0: never)."""
    return DEFAULT_WINDOW_S if quality in IDENTITY_QUALITIES else 0.0


REID_SHIFT_SIDES = 3.0
"""Within a shot, a returning face must reappear within (1 + seconds away) x this many box sides of where it
was lost (a walking person's reach); after a cut anywhere goes."""


def unit(v: np.ndarray) -> np.ndarray | None:
    """`v` as a float64 unit vector; None when it is not finite or all zero (no appearance)."""
    v = np.asarray(v, np.float64).ravel()
    norm = float(np.linalg.norm(v))
    return v / norm if np.isfinite(norm) and norm > 0 else None


@dataclass
class Appearance:
    """One track's appearance: the average unit embedding and how many observations made it."""

    mean: np.ndarray
    count: int = 1

    def similarity(self, v: np.ndarray) -> float:
        """Cosine of the unit vector `v` with the average (-1 where the widths differ)."""
        if v.shape != self.mean.shape:
            return -1.0
        return float(self.mean @ v / max(np.linalg.norm(self.mean), 1e-12))

    def add(self, v: np.ndarray) -> None:
        if v.shape != self.mean.shape:  # another net: its embedding restarts the average
            self.mean, self.count = v, 1
            return
        self.mean, self.count = (1 - ALPHA) * self.mean + ALPHA * v, self.count + 1


@dataclass
class Retired:
    """A confirmed track that may still come back: its id, appearance, where and when it was last seen."""

    track_id: int
    appearance: Appearance
    time_s: float
    center_xy: np.ndarray
    side_px: float
    shot: int


class AppearanceBook:
    """The embedding queue (filled after inference, drained by the tracker) and the re-id gallery."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._inbox: deque = deque()  # append/popleft are atomic: the infer thread posts, detect drains
        self.gallery: dict[int, Retired] = {}
        self.reids = self.vetoes = 0

    def post(self, frame_index: int, embeddings: np.ndarray) -> None:
        """Queue one frame's embeddings (N,D), row order as the tracker returned them; NaN rows skipped."""
        self._inbox.append((int(frame_index), np.asarray(embeddings)))

    def drain(self) -> list[tuple[int, np.ndarray]]:
        out = []
        while self._inbox:
            out.append(self._inbox.popleft())
        return out

    def retire(self, entry: Retired) -> None:
        if self.window_s > 0:
            self.gallery[entry.track_id] = entry

    def expire(self, time_s: float) -> list[int]:
        """Remove and return the ids whose window has passed (they can never come back)."""
        old = [tid for tid, r in self.gallery.items() if time_s - r.time_s > self.window_s]
        for tid in old:
            del self.gallery[tid]
        return old

    def best(self, v: np.ndarray, candidates: list[Retired], where: Retired):
        """The candidate the unit embedding `v` of a new track (`where`: its place, time and shot)
        re-identifies (REID_MIN, REID_MARGIN, within reach of where it was lost in the same shot), or None."""
        near = [c for c in candidates if c.shot != where.shot or _near(c, where)]
        scored = sorted(((c.appearance.similarity(v), i) for i, c in enumerate(near)), reverse=True)
        if not scored or scored[0][0] < REID_MIN:
            return None
        if len(scored) > 1 and scored[0][0] - scored[1][0] < REID_MARGIN:
            return None
        return near[scored[0][1]]


def _near(c: Retired, new: Retired) -> bool:
    reach = REID_SHIFT_SIDES * max(new.side_px, c.side_px) * (1.0 + max(new.time_s - c.time_s, 0.0))
    return float(np.linalg.norm(new.center_xy - c.center_xy)) <= reach
