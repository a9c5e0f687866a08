"""The only types that cross stage boundaries: `Frame` and `FaceBatch`.

`FaceBatch` is a frozen dataclass of parallel numpy arrays, one row per face in one frame.
Stages never mutate a batch: they return a new one (`dataclasses.replace`, `with_outputs`, `select`).
Arrays are stored read-only so an accidental in-place write fails loudly instead of corrupting
another stage's view.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from engines.store.registry import FER2013_EMOTIONS

EMOTIONS: tuple[str, ...] = FER2013_EMOTIONS
"""Emotion names in the order of every `emotion` output (FER2013); one list for both packages."""

UNTRACKED = -1
"""Track id of a face no tracker has claimed yet."""


@dataclass(frozen=True)
class SourceInfo:
    """Facts about where frames come from (filled by capture, read by sinks and summaries)."""

    path: str
    width: int
    height: int
    fps: float
    frame_count: int | None = None
    duration_s: float | None = None
    codec: str = ""
    is_still: bool = False
    is_live: bool = False


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded picture: its index in the stream, presentation time and BGR pixels."""

    index: int
    time_s: float
    image_bgr: np.ndarray
    source: SourceInfo | None = None
    captured_at_s: float | None = None  # time.monotonic() when it left the source (live latency)
    cut: bool | None = None
    """Whether a shot boundary lies just before this frame, when the reading side already tested it
    (`pipeline.stages.shots.with_cuts`, on the decode thread); None: not tested, the analyzer tests it."""

    def __post_init__(self) -> None:
        img = self.image_bgr
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            shape = getattr(img, "shape", None)
            dtype = getattr(img, "dtype", type(img).__name__)
            raise ValueError(f"Frame.image_bgr must be HxWx3 uint8, got shape {shape} dtype {dtype}")

    @property
    def size_wh(self) -> tuple[int, int]:
        """(width, height) of the image in pixels."""
        return int(self.image_bgr.shape[1]), int(self.image_bgr.shape[0])


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only contiguous array; copies writeable input so the caller's array is left alone."""
    if a.flags.writeable or not a.flags.c_contiguous:
        a = np.array(a, order="C", copy=True)
        a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class FaceBatch:
    """All faces of one frame as parallel arrays (row i of every array is face i).

    xyxy: (N,4) float32 pixel box corners; scores: (N,) detector confidence;
    landmarks: (N,5,2) float32 (right eye, left eye, nose, right mouth, left mouth), NaN when unknown;
    track_ids: (N,) int64, `UNTRACKED` before tracking; outputs: per-head arrays with N rows
    (`emotion` (N,7), `gender` (N,), `age` (N,), `embedding` (N,D)).
    """

    frame_index: int
    time_s: float
    xyxy: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    track_ids: np.ndarray
    frame_wh: tuple[int, int] = (0, 0)
    detected: bool = True  # False when boxes were predicted by the tracker, not found by a detector
    outputs: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        time_s = float(self.time_s)
        if not np.isfinite(time_s):  # smoothing and sinks do arithmetic on it: NaN would spread
            raise ValueError(f"FaceBatch.time_s must be finite, got {time_s}")
        set_(self, "frame_index", int(self.frame_index))  # plain Python numbers: JSON-ready
        set_(self, "time_s", time_s)
        xyxy = _boxes(self.xyxy)
        n = len(xyxy)
        set_(self, "xyxy", _frozen(xyxy))
        set_(self, "scores", _frozen(_rows(self.scores, n, "scores", np.float32, ())))
        set_(self, "landmarks", _frozen(_rows(self.landmarks, n, "landmarks", np.float32, (5, 2))))
        set_(self, "track_ids", _frozen(_track_ids(self.track_ids, n)))
        outs = {k: _frozen(_rows(v, n, f"outputs[{k!r}]", None, None)) for k, v in self.outputs.items()}
        set_(self, "outputs", MappingProxyType(outs))

    def __len__(self) -> int:
        return len(self.xyxy)

    @classmethod
    def empty(cls, frame_index: int, time_s: float, frame_wh: tuple[int, int] = (0, 0)) -> FaceBatch:
        """A batch with no faces: still a frame that happened (time advances)."""
        return cls.from_boxes(frame_index, time_s, np.zeros((0, 4), np.float32), frame_wh=frame_wh)

    @classmethod
    def from_boxes(
        cls,
        frame_index: int,
        time_s: float,
        xyxy: np.ndarray,
        scores: np.ndarray | None = None,
        landmarks: np.ndarray | None = None,
        frame_wh: tuple[int, int] = (0, 0),
    ) -> FaceBatch:
        """Build a batch from boxes, filling unknown scores with 1 and landmarks with NaN."""
        xyxy = _boxes(xyxy)
        n = len(xyxy)
        return cls(
            frame_index=frame_index,
            time_s=time_s,
            xyxy=xyxy,
            scores=np.ones(n, np.float32) if scores is None else scores,
            landmarks=np.full((n, 5, 2), np.nan, np.float32) if landmarks is None else landmarks,
            track_ids=np.full(n, UNTRACKED, np.int64),
            frame_wh=frame_wh,
        )

    @property
    def box_wh(self) -> np.ndarray:
        """(N,2) box widths and heights in pixels."""
        return self.xyxy[:, 2:] - self.xyxy[:, :2]

    @property
    def centers(self) -> np.ndarray:
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2

    def with_outputs(self, **outputs: np.ndarray) -> FaceBatch:
        """A copy with `outputs` merged in (new keys win).

        Only the new arrays are checked: every other field was validated when this batch was built and
        is read-only, and this runs twice a frame (infer, smoothing), where a full re-validation was a
        measurable share of a light clip's frame."""
        n = len(self)
        new = {k: _frozen(_rows(v, n, f"outputs[{k!r}]", None, None)) for k, v in outputs.items()}
        clone = copy.copy(self)
        object.__setattr__(clone, "outputs", MappingProxyType({**self.outputs, **new}))
        return clone

    def select(self, index: np.ndarray | slice | list[int]) -> FaceBatch:
        """A copy holding only the rows picked by a boolean mask or an index array."""
        pick = np.arange(len(self))[index]
        return dataclasses.replace(
            self,
            xyxy=self.xyxy[pick],
            scores=self.scores[pick],
            landmarks=self.landmarks[pick],
            track_ids=self.track_ids[pick],
            outputs={k: v[pick] for k, v in self.outputs.items()},
        )


def _boxes(xyxy) -> np.ndarray:
    """(N,4) float32 finite boxes with x2 >= x1 and y2 >= y1; one box may come as (4,), none as empty."""
    arr = np.asarray(xyxy, dtype=np.float32)
    if arr.size == 0 or arr.shape == (4,):
        arr = arr.reshape(-1, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"FaceBatch.xyxy must be (N,4) box corners, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("FaceBatch.xyxy must be finite")
    if not np.all(arr[:, 2:] >= arr[:, :2]):
        raise ValueError("FaceBatch.xyxy needs x2 >= x1 and y2 >= y1 for every box")
    return arr


def _track_ids(a, n: int) -> np.ndarray:
    """(N,) int64 ids: whole numbers only, each tracked id at most once (one face per track per frame)."""
    raw = np.asarray(a)
    ids = _rows(raw, n, "track_ids", np.int64, ())
    if raw.dtype.kind == "f" and not np.array_equal(raw, ids):
        raise ValueError("FaceBatch.track_ids must be whole numbers")
    tracked = ids[ids != UNTRACKED]
    if len(tracked) > 1 and len(np.unique(tracked)) != len(tracked):
        raise ValueError("FaceBatch.track_ids must not repeat within a frame")
    return ids


def _rows(a, n: int, name: str, dtype, tail: tuple[int, ...] | None) -> np.ndarray:
    """Check that `a` has `n` rows (and the given trailing shape); cast to `dtype`."""
    arr = np.asarray(a, dtype=dtype)
    if arr.ndim == 0 or arr.shape[0] != n:
        raise ValueError(f"FaceBatch.{name} has {arr.shape[0] if arr.ndim else 0} rows, boxes have {n}")
    if tail is not None and arr.shape[1:] != tail:
        raise ValueError(f"FaceBatch.{name} rows must have shape {tail}, got {arr.shape[1:]}")
    return arr
