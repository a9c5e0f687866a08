"""Which faces go to the network: those at least `min_px` on their shorter box side.

A face a few dozen pixels high is upscaled to the net's crop and its emotion is mostly guessed
(docs/tracking.md has the measurement that set the default); it is still detected, tracked and drawn, and
keeps NaN outputs (written as null). `skipped` counts such face-rows for summary.json.
"""

from __future__ import annotations

import numpy as np

from pipeline.frames import FaceBatch


class MinFace:
    def __init__(self, min_px: int) -> None:
        self.min_px = min_px
        self.skipped = 0

    def keep(self, batch: FaceBatch) -> np.ndarray:
        """(N,) True for the rows to infer; counts the others."""
        keep = batch.box_wh.min(axis=1) >= self.min_px if len(batch) else np.ones(0, bool)
        self.skipped += int((~keep).sum())
        return keep


def scatter(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Rows of `values` (one per kept face) spread to every face; the others NaN (or empty, not float)."""
    values = np.asarray(values)
    if keep.all():
        return values
    fill = np.nan if values.dtype.kind == "f" else np.zeros((), values.dtype)
    out = np.full((len(keep), *values.shape[1:]), fill, values.dtype)
    out[keep] = values
    return out
