"""Multi-face tracker: ByteTrack-style two-stage association, gated before assignment, with a
constant-velocity motion model and appearance (re-identification) from the face network's embedding.

Each track keeps an alpha-beta filter on box center and size (cx, cy, w, h, per-second velocities), so
it can predict where a face is at any time: VFR timestamps work, and on frames where detection is skipped
(`--detect-every N`) `predict()` moves the boxes along. Association per detection pass (docs/tracking.md):
1. high-score detections <-> confirmed tracks (active and lost), Hungarian on IoU of predicted boxes;
2. low-score detections <-> confirmed tracks still unmatched that were active at the last pass;
3. remaining high-score detections <-> tentative tracks; 4. leftover high-score detections start tentative
   tracks. Unmatched low-score detections are dropped (ByteTrack: alone they are not trusted to be faces).
Pairs under a stage's IoU threshold are removed BEFORE the assignment (a gate), so a track never takes a
worse detection to give its own to another. A tentative track gets its id when confirmed (`min_hits`
detections; tracks born in the stream's first pass are confirmed at once, so a photo gets ids), or the id
of the lost or recently ended track its first embedding re-identifies (`stages/appearance.py`); while such
a candidate exists it waits up to `reid_wait_s` for that embedding. `cut()` (a shot boundary) ends every
track. Ids count up from 1; an id comes back only by re-identification. `pop_ended()` hands ids that can
no longer come back to whoever keeps per-track state; ended tracks keep no state here.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline.frames import UNTRACKED, FaceBatch
from pipeline.stages.appearance import (
    MIN_OBSERVATIONS,
    SPLIT_BELOW,
    Appearance,
    AppearanceBook,
    Retired,
    unit,
)
from pipeline.stages.motion import (
    Track,
    iou_matrix,
    match_gated,
    predicted_boxes,
    relative_landmarks,
    to_cxcywh,
    to_xyxy,
)

__all__ = ["Tracker", "iou_matrix"]

ROW_MEMORY = 256
"""Frames whose rows -> tracks the tracker remembers until their embeddings come back from inference."""


class Tracker:
    """Assigns stable track ids to the faces of successive frames; see the module docstring.

    Scores split detections into high (>= high_score) and low (>= low_score); `gains` are the alpha-beta
    filter's position and velocity gains (higher: follows detections more closely, smooths less);
    `reid_window_s` how long a lost or cut track may be re-identified (0: never, and no appearance veto:
    for nets whose embedding does not tell people apart).
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
        reid_window_s: float = 5.0,
        reid_wait_s: float = 0.5,
    ) -> None:
        self.high_score, self.low_score = high_score, low_score
        self.iou_min, self.low_iou_min = iou_min, low_iou_min
        self.min_hits, self.max_age_s, self.gains = min_hits, max_age_s, gains
        self.reid_wait_s = reid_wait_s
        self.book = AppearanceBook(reid_window_s)
        self._tracks: list[Track] = []
        self._ended: list[int] = []
        self._rows: dict[int, tuple[np.ndarray, bool]] = {}  # frame index -> (row keys, detected)
        self._next_id = self._next_key = 1
        self._passes = self.shot = 0

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
        return np.array([to_xyxy(t.state) for t in self._tracks], np.float32).reshape(-1, 4)

    def update(self, batch: FaceBatch) -> FaceBatch:
        """Match this frame's detections to tracks; returns the kept rows with their track ids."""
        t_now, boxes, scores = batch.time_s, batch.xyxy, batch.scores
        self._absorb()
        self._expire(t_now)
        high = np.flatnonzero(scores >= self.high_score)
        low = np.flatnonzero((scores >= self.low_score) & (scores < self.high_score))
        confirmed = [t for t in self._tracks if t.track_id != UNTRACKED]
        tentative = [t for t in self._tracks if t.track_id == UNTRACKED]
        pairs, left, high = match_gated(confirmed, boxes, high, t_now, self.iou_min)
        pairs2, _, _ = match_gated([t for t in left if t.active], boxes, low, t_now, self.low_iou_min)
        pairs3, _, high = match_gated(tentative, boxes, high, t_now, self.iou_min)
        pairs = [*pairs, *pairs2, *pairs3]
        for track, row in pairs:
            track.correct(boxes[row], batch.landmarks[row], float(scores[row]), t_now, self.gains)
        matched = {id(t) for t, _ in pairs}
        for t in self._tracks:
            t.active = id(t) in matched
        for row in high:
            self._tracks.append(self._new_track(boxes[row], batch.landmarks[row], float(scores[row]), t_now))
        self._confirm(t_now)
        self._passes += 1
        return self._labelled(batch, pairs, high)

    def predict(self, frame_index: int, time_s: float, frame_wh: tuple[int, int] = (0, 0)) -> FaceBatch:
        """Motion-predicted boxes of the active confirmed tracks for a frame without detection.

        Consumes no detection and ends no track; boxes wholly outside a known frame are left out.
        """
        live = [t for t in self._tracks if t.track_id != UNTRACKED and t.active]
        xyxy64, landmarks = predicted_boxes(live, time_s)
        xyxy = xyxy64.astype(np.float32)
        inside = np.ones(len(live), bool)
        if min(frame_wh) > 0:
            inside = (xyxy[:, 2:] > 0).all(1) & (xyxy[:, :2] < np.asarray(frame_wh)).all(1)
        live = [t for t, keep in zip(live, inside, strict=True) if keep]
        self._remember(frame_index, np.array([t.key for t in live], np.int64), detected=False)
        return FaceBatch(
            frame_index=frame_index,
            time_s=time_s,
            xyxy=xyxy[inside],
            scores=np.array([t.score for t in live], np.float32),
            landmarks=landmarks[inside],
            track_ids=np.array([t.track_id for t in live], np.int64),
            frame_wh=frame_wh,
            detected=False,
        )

    def observe(self, batch: FaceBatch) -> None:
        """Hand back an inferred batch (rows as `update`/`predict` returned them): its `embedding` rows
        update appearance at the next `update`. Safe from another thread (the live infer thread)."""
        embedding = batch.outputs.get("embedding")
        # appearance off (window 0, e.g. quality mtl): nothing would read it
        if embedding is not None and len(batch) and self.book.window_s > 0:
            self.book.post(batch.frame_index, embedding)

    def cut(self) -> None:
        """A shot boundary: every track ends now; confirmed ones with an appearance stay re-identifiable."""
        for t in self._tracks:
            self._retire(t)
        self._tracks, self.shot = [], self.shot + 1

    def ended_ids(self) -> list[int]:
        """Ids ended since the last `pop_ended()` (left in place)."""
        return list(self._ended)

    def pop_ended(self) -> list[int]:
        """Ids ended for good since the last call, in the order they ended; clears the list."""
        ended, self._ended = self._ended, []
        return ended

    def finish(self) -> list[int]:
        """End every track (the stream is over) and return all ended ids not yet popped."""
        self._ended += [t.track_id for t in self._tracks if t.track_id != UNTRACKED]
        self._ended += self.book.expire(np.inf)
        self._tracks, self._rows = [], {}
        return self.pop_ended()

    def _new_track(self, xyxy, landmarks, score: float, time_s: float) -> Track:
        self._next_key += 1
        return Track(
            state=to_cxcywh(xyxy),
            velocity=np.zeros(4),
            time_s=time_s,
            score=score,
            landmarks_rel=relative_landmarks(xyxy, landmarks),
            key=self._next_key,
            born_s=time_s,
        )

    def _expire(self, time_s: float) -> None:
        """End tracks that missed a detection pass and are undetected for more than max_age_s.

        Runs before matching: an ended track comes back only by re-identification. A track matched at
        the last pass always gets this pass's chance, however far apart passes are (low fps, a slow
        live detector).
        """
        old = [t for t in self._tracks if not t.active and time_s - t.time_s > self.max_age_s]
        for t in old:
            self._retire(t)
        self._tracks = [t for t in self._tracks if not any(t is o for o in old)]
        self._ended += self.book.expire(time_s)

    def _retire(self, track: Track) -> None:
        """A confirmed track ends: into the re-id gallery if it has an appearance, else ended for good."""
        if track.track_id == UNTRACKED:
            return
        if track.appearance is not None and self.book.window_s > 0:
            self.book.retire(track.retired(self.shot))
        else:
            self._ended.append(track.track_id)

    def _confirm(self, time_s: float) -> None:
        """Give ids to tentative tracks with enough hits (or born in the stream's first pass). While a
        lost or ended track could be re-identified, a track waits for its first embedding (at most
        reid_wait_s), so that the same person is not given a new id first."""
        waiting = self._reid_candidates() if self.book.window_s > 0 else []
        for t in self._tracks:
            if t.track_id != UNTRACKED or not (t.hits >= self.min_hits or self._passes == 0):
                continue
            if waiting and t.appearance is None and time_s - t.born_s < self.reid_wait_s:
                continue
            t.track_id, self._next_id = self._next_id, self._next_id + 1

    def _reid_candidates(self, exclude: int = UNTRACKED) -> list[Retired]:
        lost = [t.retired(self.shot) for t in self._tracks if _is_lost(t)]
        return [r for r in [*lost, *self.book.gallery.values()] if r.track_id != exclude]

    def _absorb(self) -> None:
        """Fold the embeddings inference returned since the last pass into their tracks."""
        by_key = {t.key: t for t in self._tracks}
        for frame_index, embeddings in self.book.drain():
            keys, detected = self._rows.pop(frame_index, (None, False))
            if keys is None or len(keys) != len(embeddings):
                continue
            for key, row in zip(keys.tolist(), embeddings, strict=True):
                track, v = by_key.get(key), unit(row)
                if track is not None and v is not None:
                    self._observe(track, v, detected)

    def _observe(self, track: Track, v: np.ndarray, detected: bool) -> None:
        if track.appearance is None:
            track.appearance = Appearance(v)
            if track.track_id == UNTRACKED:
                self._reidentify(track, v)
            return
        vetoed = track.appearance.count >= MIN_OBSERVATIONS and track.appearance.similarity(v) < SPLIT_BELOW
        if detected and track.track_id != UNTRACKED and vetoed and self.book.window_s > 0:
            self._split(track, v)
            return
        track.appearance.add(v)

    def _reidentify(self, track: Track, v: np.ndarray, exclude: int = UNTRACKED) -> None:
        """A tentative track's first embedding: take the id of the lost or ended track it matches."""
        if self.book.window_s <= 0:
            return
        best = self.book.best(v, self._reid_candidates(exclude), track.retired(self.shot))
        if best is None:
            return
        self._tracks = [t for t in self._tracks if t.track_id != best.track_id]
        self.book.gallery.pop(best.track_id, None)
        track.track_id, track.appearance = best.track_id, best.appearance
        track.appearance.add(v)
        self.book.reids += 1

    def _split(self, track: Track, v: np.ndarray) -> None:
        """Appearance vetoes the box match: the id ends here, the face goes on as a new tentative track."""
        old_id = track.track_id
        self._retire(track)
        track.track_id, track.appearance, track.born_s = UNTRACKED, Appearance(v), track.time_s
        self.book.vetoes += 1
        self._reidentify(track, v, exclude=old_id)

    def _remember(self, frame_index: int, keys: np.ndarray, detected: bool) -> None:
        self._rows[frame_index] = (keys, detected)
        if len(self._rows) > ROW_MEMORY:  # frames never inferred (live drops them): forget the oldest
            del self._rows[next(iter(self._rows))]

    def _labelled(self, batch: FaceBatch, pairs, new_rows: np.ndarray) -> FaceBatch:
        """The batch's kept rows (matched, or new high-score) with their ids, in input order."""
        ids = np.full(len(batch), UNTRACKED, np.int64)
        keys = np.zeros(len(batch), np.int64)
        new_tracks = self._tracks[len(self._tracks) - len(new_rows) :]
        for track, row in [*pairs, *zip(new_tracks, new_rows, strict=True)]:
            ids[row], keys[row] = track.track_id, track.key
        keep = np.zeros(len(batch), bool)
        keep[[row for _, row in pairs] + list(new_rows)] = True
        self._remember(batch.frame_index, keys[keep], detected=True)
        return dataclasses.replace(batch.select(keep), track_ids=ids[keep])


def _is_lost(t: Track) -> bool:
    return t.track_id != UNTRACKED and not t.active and t.appearance is not None
