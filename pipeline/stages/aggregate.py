"""Per-track smoothing and summaries, clip emotion distribution, and EmotiW-style clip statistics.

`Aggregator` keeps running sums per live track and an exponential moving average of each track's emotion
with a time constant in seconds, so variable frame rates smooth alike. A track the tracker ended is
`retire`d: its summary is streamed to a spill file (an unnamed temporary file, gone with the process) and
its state released, so memory stays flat on endless streams with ever new faces while `track_summaries()`
still gives every track. The pure functions at the bottom turn per-frame feature arrays into fixed-length
clip descriptors for the scoring code.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from typing import IO

import numpy as np

from engines.labels import gender_of
from pipeline.frames import EMOTIONS, UNTRACKED, FaceBatch


@dataclass(frozen=True, eq=False)
class TrackSummary:
    """What one track amounted to. Means average the rows where that output was present and finite;
    a track never given an emotion has NaN `mean_emotion` and `dominant_emotion` None."""

    track_id: int
    first_frame: int
    last_frame: int
    first_time_s: float
    last_time_s: float
    frames_seen: int  # rows of this track, detected or predicted, with or without outputs
    mean_emotion: np.ndarray  # (K,) in the aggregator's emotion order
    dominant_emotion: str | None
    mean_gender: float | None  # mean probability of "man"
    gender: str | None  # "man" when mean_gender >= 0.5, else "woman"
    mean_age: float | None


class _RunningMean:
    """Sum and count of finite observations (scalars or vectors)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.total, self.count = np.zeros(shape), 0

    def add(self, value: np.ndarray) -> None:
        if np.isfinite(value).all():
            self.total, self.count = self.total + value, self.count + 1

    def mean(self) -> np.ndarray | None:
        return self.total / self.count if self.count else None


@dataclass
class _TrackState:
    first_frame: int
    first_time_s: float
    emotion: _RunningMean
    gender: _RunningMean
    age: _RunningMean
    last_frame: int = 0
    last_time_s: float = 0.0
    frames_seen: int = 0
    smooth: np.ndarray | None = None  # EMA of emotion
    smooth_time_s: float = 0.0


def smooth_step(prev: np.ndarray | None, prev_time_s: float, x: np.ndarray, time_s: float, tau_s: float):
    """One exponential-smoothing step: prev + alpha (x - prev), alpha = 1 - exp(-dt / tau).

    The first observation is taken as is; tau_s <= 0 means no smoothing; a time step backwards counts as 0.
    """
    if prev is None:
        return np.asarray(x, np.float64)
    dt = max(time_s - prev_time_s, 0.0)
    alpha = 1.0 if tau_s <= 0 else 1.0 - math.exp(-dt / tau_s)
    return prev + alpha * (x - prev)


class Aggregator:
    """Smooths each track's emotion over time and keeps per-track and whole-clip running statistics."""

    def __init__(self, smoothing_s: float = 0.5, emotion_names: tuple[str, ...] = EMOTIONS) -> None:
        self.smoothing_s = smoothing_s
        self.emotion_names = tuple(emotion_names)
        self.time_s: float | None = None  # time of the last batch seen
        self._tracks: dict[int, _TrackState] = {}
        self._clip = _RunningMean((len(self.emotion_names),))
        self._spill: IO[str] | None = None  # summaries of retired tracks, one JSON line each
        self.retired = 0

    def update(self, batch: FaceBatch) -> FaceBatch:
        """Record the batch; returns it with outputs["emotion_smooth"] (N,K) when it has "emotion"."""
        self.time_s = batch.time_s
        emotion = batch.outputs.get("emotion")
        if emotion is not None and emotion.shape[1:] != (len(self.emotion_names),):
            raise ValueError(
                f"emotion output has shape {emotion.shape}, expected (N,{len(self.emotion_names)})"
            )
        smooth = np.full((len(batch), len(self.emotion_names)), np.nan, np.float32)
        for i, track_id in enumerate(batch.track_ids.tolist()):
            row = None if emotion is None else emotion[i].astype(np.float64)
            if row is not None:
                self._clip.add(row)
                smooth[i] = row
            if track_id != UNTRACKED:
                smoothed = self._observe(self._state(track_id, batch), batch, i, row)
                if smoothed is not None:
                    smooth[i] = smoothed
        return batch if emotion is None else batch.with_outputs(emotion_smooth=smooth)

    def track_summaries(self) -> list[TrackSummary]:
        """One summary per track seen so far (retired or live), by track id."""
        alive = [self._summary(tid, s) for tid, s in self._tracks.items()]
        return sorted([*self._spilled(), *alive], key=lambda t: t.track_id)

    def retire(self, track_ids) -> None:
        """Tracks that ended (their ids never come back): summary to the spill file, state released."""
        for tid in track_ids:
            state = self._tracks.pop(int(tid), None)
            if state is None:
                continue
            if self._spill is None:
                self._spill = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in close)
            t = self._summary(int(tid), state)
            row = {**t.__dict__, "mean_emotion": [float(v) for v in t.mean_emotion]}
            self._spill.write(json.dumps(row) + "\n")  # NaN survives as JSON's NaN extension
            self.retired += 1

    @property
    def live_tracks(self) -> int:
        """Tracks whose state is held (not retired yet)."""
        return len(self._tracks)

    def close(self) -> None:
        """Drop the spill file (track_summaries() then lists live tracks only)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None
            self.retired = 0

    def _spilled(self) -> list[TrackSummary]:
        if self._spill is None:
            return []
        self._spill.flush()
        self._spill.seek(0)
        out = []
        for line in self._spill:
            row = json.loads(line)
            mean = np.asarray(row.pop("mean_emotion"), np.float64)
            mean.setflags(write=False)
            out.append(TrackSummary(mean_emotion=mean, **row))
        self._spill.seek(0, 2)
        return out

    def clip_distribution(self) -> dict[str, float]:
        """Mean emotion probability over every face-frame (tracked or not), normalised to sum to 1.

        A clip with no face-frame that had an emotion gives {} (no distribution, rather than NaNs).
        """
        mean = self._clip.mean()
        if mean is None or not mean.sum() > 0:
            return {}
        mean = mean / mean.sum()
        return {name: float(p) for name, p in zip(self.emotion_names, mean, strict=True)}

    def _state(self, track_id: int, batch: FaceBatch) -> _TrackState:
        if track_id not in self._tracks:
            k = len(self.emotion_names)
            self._tracks[track_id] = _TrackState(
                batch.frame_index, batch.time_s, _RunningMean((k,)), _RunningMean(), _RunningMean()
            )
        return self._tracks[track_id]

    def _observe(self, state: _TrackState, batch: FaceBatch, i: int, emotion_row) -> np.ndarray | None:
        """Update one track with row i; returns its smoothed emotion (None if it has none yet)."""
        state.last_frame, state.last_time_s = batch.frame_index, batch.time_s
        state.frames_seen += 1
        for key, running in (("gender", state.gender), ("age", state.age)):
            if key in batch.outputs:
                running.add(np.float64(batch.outputs[key][i]))
        if emotion_row is not None and np.isfinite(emotion_row).all():
            state.emotion.add(emotion_row)
            state.smooth = smooth_step(
                state.smooth, state.smooth_time_s, emotion_row, batch.time_s, self.smoothing_s
            )
            state.smooth_time_s = batch.time_s
        return state.smooth

    def _summary(self, track_id: int, s: _TrackState) -> TrackSummary:
        emotion = s.emotion.mean()
        gender, age = s.gender.mean(), s.age.mean()
        mean_emotion = np.full(len(self.emotion_names), np.nan) if emotion is None else emotion
        mean_emotion.setflags(write=False)
        return TrackSummary(
            track_id=track_id,
            first_frame=s.first_frame,
            last_frame=s.last_frame,
            first_time_s=s.first_time_s,
            last_time_s=s.last_time_s,
            frames_seen=s.frames_seen,
            mean_emotion=mean_emotion,
            dominant_emotion=None if emotion is None else self.emotion_names[int(np.argmax(emotion))],
            mean_gender=None if gender is None else float(gender),
            gender=None if gender is None else gender_of(gender),
            mean_age=None if age is None else float(age),
        )


def _valid_rows(x: np.ndarray) -> np.ndarray:
    """The rows of a 2-D array that are entirely finite, as float64."""
    x = np.asarray(x, np.float64)
    return x[np.isfinite(x).all(axis=1)]


def clip_statistics(features: np.ndarray, return_count: bool = False):
    """(4D,) concat(mean, std, min, max) over time of (T,D) per-frame features; rows with NaN are skipped.

    std is the population std (ddof 0). A clip without any valid row (T = 0, or all NaN) gives zeros:
    pass return_count=True to get (stats, number of valid rows) and tell it from a real all-zero clip.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"clip_statistics needs (T,D) features, got shape {x.shape}")
    x = _valid_rows(x)
    if not len(x):
        stats = np.zeros(4 * x.shape[1])
    else:
        stats = np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0)])
    return (stats, len(x)) if return_count else stats


def l2_normalize(v: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """`v` scaled to unit L2 norm along `axis`; an all-zero vector stays zero."""
    v = np.asarray(v, np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), eps)


def group_frame_statistics(per_frame_faces: list[np.ndarray], dim: int | None = None) -> np.ndarray:
    """(T',2D) per-frame concat(mean, std) over the faces of each frame (one (N_i,D) array per frame).

    Frames without a valid face are skipped, so T' <= T. `dim` is needed only when no frame has a shape.
    """
    if dim is None:
        dim = next((np.shape(f)[-1] for f in per_frame_faces if np.ndim(f) == 2), None)
    if dim is None:
        raise ValueError("group_frame_statistics: no frame tells the feature size; pass dim")
    rows = [_valid_rows(np.reshape(f, (-1, dim))) for f in per_frame_faces]
    stats = [np.concatenate([r.mean(0), r.std(0)]) for r in rows if len(r)]
    return np.array(stats).reshape(-1, 2 * dim)


def group_clip_statistics(per_frame_faces: list[np.ndarray], dim: int | None = None, return_count=False):
    """(4D,) concat(mean, std) over frames of `group_frame_statistics`; zeros when no frame has a face
    (return_count=True adds the number of frames used, as in `clip_statistics`)."""
    frames = group_frame_statistics(per_frame_faces, dim)
    stats = np.concatenate([frames.mean(0), frames.std(0)]) if len(frames) else np.zeros(2 * frames.shape[1])
    return (stats, len(frames)) if return_count else stats
