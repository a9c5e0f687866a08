"""Builders for synthetic batches and frames used across the tests."""

from __future__ import annotations

import numpy as np

from pipeline.frames import EMOTIONS, FaceBatch, Frame


def make_frame(index: int = 0, time_s: float | None = None, wh: tuple[int, int] = (640, 360), value: int = 0):
    img = np.full((wh[1], wh[0], 3), value, np.uint8)
    return Frame(index=index, time_s=index / 30.0 if time_s is None else time_s, image_bgr=img)


def make_batch(
    boxes: list[list[float]] | np.ndarray,
    frame_index: int = 0,
    time_s: float | None = None,
    track_ids: list[int] | None = None,
    emotion: np.ndarray | None = None,
    frame_wh: tuple[int, int] = (640, 360),
) -> FaceBatch:
    """A batch of boxes (xyxy); landmarks placed inside each box like a frontal face."""
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]], np.float32)
    wh = xyxy[:, 2:] - xyxy[:, :2]
    lms = xyxy[:, None, :2] + rel[None] * wh[:, None]
    batch = FaceBatch(
        frame_index=frame_index,
        time_s=frame_index / 30.0 if time_s is None else time_s,
        xyxy=xyxy,
        scores=np.full(n, 0.9, np.float32),
        landmarks=lms,
        track_ids=np.asarray(track_ids if track_ids is not None else [-1] * n, np.int64),
        frame_wh=frame_wh,
    )
    if emotion is not None:
        batch = batch.with_outputs(emotion=np.asarray(emotion, np.float32).reshape(n, len(EMOTIONS)))
    return batch
