"""Multi-face tracker: ByteTrack-style two-stage IoU association with a constant-velocity motion model.

Each track keeps an alpha-beta filter on box center and size (cx, cy, w, h, per-second velocities), so
it can predict where a face is at any time: VFR timestamps work, and on frames where detection is skipped
(`--detect-every N`) `predict()` moves the boxes along. Association per detection pass:
1. high-score detections <-> confirmed tracks (active and lost), Hungarian on IoU of predicted boxes;
2. low-score detections <-> confirmed tracks still unmatched that were active at the last pass;
3. remaining high-score detections <-> tentative tracks; 4. leftover high-score detections start tentative
   tracks. Unmatched low-score detections are dropped (ByteTrack: alone they are not trusted to be faces).
A tentative track gets its id when confirmed (`min_hits` detections; tracks born in the stream's first
pass are confirmed at once, so a photo gets ids). Ids count up from 1 and are never reused. A track that
missed a pass and is undetected for more than `max_age_s` seconds ends; `pop_ended()` hands ended ids to
whoever keeps per-track state (the analyzer's attribute cache).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.frames import UNTRACKED, FaceBatch

MIN_VELOCITY_DT_S = 1.0 / 60.0
"""Velocity updates divide by at least this: VFR input can put two detections a millisecond apart, and
2 px of detector jitter over 1 ms would read as 2000 px/s."""


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of xyxy boxes."""
    a, b = np.asarray(a_xyxy, np.float64)[:, None], np.asarray(b_xyxy, np.float64)[None]
    inter_wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    inter = inter_wh.prod(-1)
    area = lambda x: (x[..., 2:] - x[..., :2]).prod(-1)  # noqa: E731
    union = area(a) + area(b) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    return np.r_[(xyxy[:2] + xyxy[2:]) / 2, xyxy[2:] - xyxy[:2]].astype(np.float64)


def _to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[2:], 1.0) / 2
    return np.r_[cxcywh[:2] - half, cxcywh[:2] + half]


@dataclass
class _Track:
    """One face's motion state; `track_id` stays UNTRACKED while the track is tentative."""

    state: np.ndarray  # (4,) cx, cy, w, h at time_s
    velocity: np.ndarray  # (4,) per second
    time_s: float  # time of the last detection
    score: float
    landmarks_rel: np.ndarray  # (5,2) landmarks relative to the box: (lm - center) / wh; NaN if unknown
    track_id: int = UNTRACKED
    hits: int = 1
    active: bool = True  # matched at the last detection pass (else lost)

    def box_at(self, time_s: float) -> np.ndarray:
        """Predicted xyxy at `time_s` (constant velocity from the last detection)."""
        return _to_xyxy(self.state + self.velocity * (time_s - self.time_s))

    def landmarks_at(self, time_s: float) -> np.ndarray:
        """Landmarks moved and scaled with the predicted box."""
        cxcywh = _to_cxcywh(self.box_at(time_s))
        return (cxcywh[:2] + self.landmarks_rel * cxcywh[2:]).astype(np.float32)

    def correct(self, xyxy: np.ndarray, landmarks: np.ndarray, score: float, time_s: float, gains) -> None:
        """Alpha-beta update with a detection; the second detection sets the velocity directly."""
        z, dt = _to_cxcywh(xyxy), time_s - self.time_s
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
        self.landmarks_rel = _relative_landmarks(xyxy, landmarks)
        self.time_s, self.score, self.hits, self.active = time_s, score, self.hits + 1, True


def _relative_landmarks(xyxy: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    cxcywh = _to_cxcywh(xyxy)
    return (np.asarray(landmarks, np.float64) - cxcywh[:2]) / np.maximum(cxcywh[2:], 1.0)


def _match(tracks: list[_Track], boxes: np.ndarray, det_index: np.ndarray, time_s: float, iou_min: float):
    """Hungarian matching on IoU >= iou_min; returns (pairs of (track, det row), unmatched tracks, rows)."""
    if not tracks or not len(det_index):
        return [], tracks, det_index
    predicted = np.stack([t.box_at(time_s) for t in tracks])
    iou = iou_matrix(predicted, boxes[det_index])
    rows, cols = linear_sum_assignment(-iou)
    ok = iou[rows, cols] >= iou_min
    pairs = [(tracks[r], int(det_index[c])) for r, c in zip(rows[ok], cols[ok], strict=True)]
    used_t, used_d = set(rows[ok].tolist()), set(cols[ok].tolist())
    left_tracks = [t for i, t in enumerate(tracks) if i not in used_t]
    left_dets = np.array([d for i, d in enumerate(det_index) if i not in used_d], np.int64)
    return pairs, left_tracks, left_dets


class Tracker:
    """Assigns stable track ids to the faces of successive frames; see the module docstring.

    Scores split detections into high (>= high_score) and low (>= low_score); `gains` are the alpha-beta
    filter's position and velocity gains (higher: follows detections more closely, smooths less).
    """

    def __init__(
        self,
        high_score: float = 0.5,
        low_score: float = 0.1,
        iou_min: float = 0.3,
        low_iou_min: float = 0.5,
        min_hits: int = 2,
        max_age_s: float = 1.0,
        gains: tuple[float, float] = (0.8, 0.3),
    ) -> None:
        self.high_score, self.low_score = high_score, low_score
        self.iou_min, self.low_iou_min = iou_min, low_iou_min
        self.min_hits, self.max_age_s, self.gains = min_hits, max_age_s, gains
        self._tracks: list[_Track] = []
        self._ended: list[int] = []
        self._next_id = 1
        self._passes = 0

    @property
    def active_ids(self) -> list[int]:
        """Ids of confirmed tracks that were detected at the last detection pass."""
        return [t.track_id for t in self._tracks if t.track_id != UNTRACKED and t.active]

    def active_boxes(self) -> np.ndarray | None:
        """(K,4) xyxy of every track (tentative too) at its last detection; None while any track is lost.

        Lets the caller size the next detection: a lost face may be smaller or partly hidden, so the
        caller should look at full resolution then.
        """
        if any(not t.active for t in self._tracks):
            return None
        return np.array([_to_xyxy(t.state) for t in self._tracks], np.float32).reshape(-1, 4)

    def update(self, batch: FaceBatch) -> FaceBatch:
        """Match this frame's detections to tracks; returns the kept rows with their track ids."""
        t_now, boxes, scores = batch.time_s, batch.xyxy, batch.scores
        self._expire(t_now)
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        confirmed = [t for t in self._tracks if t.track_id != UNTRACKED]
        tentative = [t for t in self._tracks if t.track_id == UNTRACKED]
        pairs, left, high = _match(confirmed, boxes, high, t_now, self.iou_min)
        pairs2, _, _ = _match([t for t in left if t.active], boxes, low, t_now, self.low_iou_min)
        pairs3, _, high = _match(tentative, boxes, high, t_now, self.iou_min)
        pairs = [*pairs, *pairs2, *pairs3]
        for track, row in pairs:
            track.correct(boxes[row], batch.landmarks[row], float(scores[row]), t_now, self.gains)
        matched = {id(t) for t, _ in pairs}
        for t in self._tracks:
            t.active = id(t) in matched
        for row in high:
            self._tracks.append(self._new_track(boxes[row], batch.landmarks[row], float(scores[row]), t_now))
        self._confirm()
        self._passes += 1
        return self._labelled(batch, pairs, high)

    def predict(self, frame_index: int, time_s: float, frame_wh: tuple[int, int] = (0, 0)) -> FaceBatch:
        """Motion-predicted boxes of the active confirmed tracks for a frame without detection.

        Consumes no detection and ends no track; boxes wholly outside a known frame are left out.
        """
        live = [t for t in self._tracks if t.track_id != UNTRACKED and t.active]
        xyxy = np.array([t.box_at(time_s) for t in live], np.float32).reshape(-1, 4)
        inside = np.ones(len(live), bool)
        if min(frame_wh) > 0:
            inside = (xyxy[:, 2:] > 0).all(1) & (xyxy[:, :2] < np.asarray(frame_wh)).all(1)
        live = [t for t, keep in zip(live, inside, strict=True) if keep]
        return FaceBatch(
            frame_index=frame_index,
            time_s=time_s,
            xyxy=xyxy[inside],
            scores=np.array([t.score for t in live], np.float32),
            landmarks=np.array([t.landmarks_at(time_s) for t in live], np.float32).reshape(-1, 5, 2),
            track_ids=np.array([t.track_id for t in live], np.int64),
            frame_wh=frame_wh,
            detected=False,
        )

    def ended_ids(self) -> list[int]:
        """Ids ended since the last `pop_ended()` (left in place)."""
        return list(self._ended)

    def pop_ended(self) -> list[int]:
        """Ids ended since the last call, in the order they ended; clears the list."""
        ended, self._ended = self._ended, []
        return ended

    def finish(self) -> list[int]:
        """End every track (the stream is over) and return all ended ids not yet popped."""
        self._ended += [t.track_id for t in self._tracks if t.track_id != UNTRACKED]
        self._tracks = []
        return self.pop_ended()

    def _new_track(self, xyxy, landmarks, score: float, time_s: float) -> _Track:
        return _Track(
            state=_to_cxcywh(xyxy),
            velocity=np.zeros(4),
            time_s=time_s,
            score=score,
            landmarks_rel=_relative_landmarks(xyxy, landmarks),
        )

    def _expire(self, time_s: float) -> None:
        """End tracks that missed a detection pass and are undetected for more than max_age_s.

        Runs before matching: an ended track cannot come back. A track matched at the last pass always
        gets this pass's chance, however far apart passes are (low fps, a slow live detector).
        """
        old = [t for t in self._tracks if not t.active and time_s - t.time_s > self.max_age_s]
        self._ended += [t.track_id for t in old if t.track_id != UNTRACKED]
        self._tracks = [t for t in self._tracks if not any(t is o for o in old)]

    def _confirm(self) -> None:
        """Give ids to tentative tracks with enough hits (or born in the stream's first pass)."""
        for t in self._tracks:
            if t.track_id == UNTRACKED and (t.hits >= self.min_hits or self._passes == 0):
                t.track_id, self._next_id = self._next_id, self._next_id + 1

    def _labelled(self, batch: FaceBatch, pairs, new_rows: np.ndarray) -> FaceBatch:
        """The batch's kept rows (matched, or new high-score) with their ids, in input order."""
        ids = np.full(len(batch), UNTRACKED, np.int64)
        new_tracks = self._tracks[len(self._tracks) - len(new_rows) :]
        for track, row in [*pairs, *zip(new_tracks, new_rows, strict=True)]:
            ids[row] = track.track_id
        keep = np.zeros(len(batch), bool)
        keep[[row for _, row in pairs] + list(new_rows)] = True
        return dataclasses.replace(batch.select(keep), track_ids=ids[keep])
