"""Where a face is: one track's motion state (alpha-beta filter on box centre and size) and gated IoU
matching of predicted boxes to detections. `stages/track.py` decides ids on top of this."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.frames import UNTRACKED
from pipeline.stages.appearance import Appearance, Retired

MIN_VELOCITY_DT_S = 1.0 / 60.0
"""Velocity updates divide by at least this: VFR input can put two detections a millisecond apart, and
2 px of detector jitter over 1 ms would read as 2000 px/s."""
GATED = 1e6
"""Assignment cost of a pair outside the gate: never chosen over a feasible pair, dropped if chosen."""


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of xyxy boxes."""
    a, b = np.asarray(a_xyxy, np.float64)[:, None], np.asarray(b_xyxy, np.float64)[None]
    inter_wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = inter_wh.prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.r_[(xyxy[:2] + xyxy[2:]) / 2, xyxy[2:] - xyxy[:2]].astype(np.float64)


def to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[2:], 1.0) / 2
    return np.r_[cxcywh[:2] - half, cxcywh[:2] + half]


@dataclass
class Track:
    """One face's motion state; `track_id` stays UNTRACKED while the track is tentative."""

    state: np.ndarray  # (4,) cx, cy, w, h at time_s
    velocity: np.ndarray  # (4,) per second
    time_s: float  # time of the last detection
    score: float
    landmarks_rel: np.ndarray  # (5,2) landmarks relative to the box: (lm - center) / wh; NaN if unknown
    key: int = 0  # the tracker's own handle, also for tentative tracks (rows -> tracks after inference)
    track_id: int = UNTRACKED
    hits: int = 1
    active: bool = True  # matched at the last detection pass (else lost)
    born_s: float = 0.0
    appearance: Appearance | None = None

    def retired(self, shot: int) -> Retired:
        side = float(max(self.state[2:]))
        return Retired(self.track_id, self.appearance, self.time_s, self.state[:2].copy(), side, shot)

    def correct(self, xyxy: np.ndarray, landmarks: np.ndarray, score: float, time_s: float, gains) -> None:
        """Alpha-beta update with a detection; the second detection sets the velocity directly."""
        z, dt = to_cxcywh(xyxy), time_s - self.time_s
        if dt > 1e-6:
            residual = z - (self.state + self.velocity * dt)
            dt_v = max(dt, MIN_VELOCITY_DT_S)  # near-duplicate timestamps must not turn jitter into speed
            if self.hits == 1:
                self.velocity, self.state = (z - self.state) / dt_v, z
            else:
                self.state = self.state + self.velocity * dt + gains[0] * residual
                self.velocity = self.velocity + gains[1] * residual / dt_v
        else:
            self.state = z
        self.landmarks_rel = relative_landmarks(xyxy, landmarks)
        self.time_s, self.score, self.hits, self.active = time_s, score, self.hits + 1, True


def predicted_xyxy(tracks: list[Track], time_s: float) -> np.ndarray:
    """(K,4) float64 xyxy of `tracks` at `time_s`: constant velocity from each one's last detection, sides
    at least 1 px (`to_xyxy`), all tracks in a few array operations (this runs on every frame)."""
    if not tracks:
        return np.zeros((0, 4))
    state = np.array([t.state for t in tracks])
    velocity = np.array([t.velocity for t in tracks])
    dt = np.array([time_s - t.time_s for t in tracks])[:, None]
    cxcywh = state + velocity * dt
    half = np.maximum(cxcywh[:, 2:], 1.0) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def predicted_boxes(tracks: list[Track], time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """`predicted_xyxy` and the (K,5,2) float32 landmarks moved and scaled with each predicted box."""
    xyxy = predicted_xyxy(tracks, time_s)
    if not tracks:
        return xyxy, np.zeros((0, 5, 2), np.float32)
    centre, wh = (xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]
    rel = np.array([t.landmarks_rel for t in tracks])
    return xyxy, (centre[:, None] + rel * wh[:, None]).astype(np.float32)


def relative_landmarks(xyxy: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    cxcywh = to_cxcywh(xyxy)
    return (np.asarray(landmarks, np.float64) - cxcywh[:2]) / np.maximum(cxcywh[2:], 1.0)


def match_gated(tracks: list[Track], boxes: np.ndarray, det_index: np.ndarray, time_s: float, iou_min: float):
    """Hungarian matching inside the gate IoU >= iou_min; returns (pairs of (track, det row), unmatched
    tracks, unmatched rows). Gating first makes the most feasible pairs win, then the highest IoU."""
    if not tracks or not len(det_index):
        return [], tracks, det_index
    iou = iou_matrix(predicted_xyxy(tracks, time_s), boxes[det_index])
    cost = np.where(iou >= iou_min, 1.0 - iou, GATED)
    rows, cols = linear_sum_assignment(cost)
    ok = cost[rows, cols] < GATED
    pairs = [(tracks[r], int(det_index[c])) for r, c in zip(rows[ok], cols[ok], strict=True)]
    used_t, used_d = set(rows[ok].tolist()), set(cols[ok].tolist())
    left_tracks = [t for i, t in enumerate(tracks) if i not in used_t]
    left_dets = np.array([d for i, d in enumerate(det_index) if i not in used_d], np.int64)
    return pairs, left_tracks, left_dets
