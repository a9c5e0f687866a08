"""Per-track attribute refresh: gender and age once per track every `every_s`, emotion on every face.

A person's gender and age do not change from frame to frame, but their heads cost about twice the emotion
head (docs/models.md). Faces whose track was refreshed less than `every_s` ago run the emotion-only graph
and take their attributes from the track's last full inference; new or untracked faces, and stale tracks,
run the full graph. Both graphs hold the same emotion head, so emotions are the same either way.
The owner calls `forget` with the tracker's ended ids (ids are never reused), so memory stays bounded by
the tracks alive at once on endless streams.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import AnalyzerConfig


def attribute_refresh_for(config: AnalyzerConfig, full_net, make_emotion_net, *, head=None):
    """An AttributeRefresh where it applies, else None: attribute heads present, CPU crops (a backend
    with `run_frames` cuts crops on its device for the full graph only), and no few-shot head (which
    reads every face's full embedding). `make_emotion_net()` builds the emotion-only graph."""
    device_crops = getattr(full_net.backend, "run_frames", None) is not None
    if config.attributes_every_s <= 0 or set(config.heads) <= {"emotion"} or head is not None or device_crops:
        return None
    if _one_trunk(full_net):  # the emotion-only graph would run the same trunk: nothing to save
        return None
    return AttributeRefresh(full_net, make_emotion_net(), config.attributes_every_s)


def _one_trunk(net) -> bool:
    """Whether every head of `net` reads one shared trunk (the project's multi-task net)."""
    shared = {getattr(spec, "shared_trunk", "") for spec in getattr(net, "specs", ())}
    return len(shared) == 1 and "" not in shared


class AttributeRefresh:
    """Splits a batch of crops between the full and the emotion-only net and merges their outputs."""

    def __init__(self, full_net, emotion_net, every_s: float) -> None:
        self.full, self.emotion, self.every_s = full_net, emotion_net, every_s
        self._cache: dict[int, tuple[float, dict[str, np.ndarray]]] = {}
        self.full_rows = self.emotion_rows = 0

    def stale(self, track_ids: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """True for faces that need the full graph: untracked ones, and the first row of each track that is
        unseen or was refreshed >= every_s ago (its later rows in the same batch reuse that refresh)."""
        need, taken = np.zeros(len(track_ids), bool), set()
        for row, (tid, t) in enumerate(zip(track_ids.tolist(), times_s.tolist(), strict=True)):
            last = self._cache.get(tid)
            expired = last is None or t - last[0] >= self.every_s
            need[row] = tid < 0 or (expired and tid not in taken)
            if need[row]:
                taken.add(tid)
        return need

    def infer(self, crops: np.ndarray, track_ids: np.ndarray, times_s: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs for every crop, as the full graph names them; `embedding` only on the rows that ran the
        full graph (NaN on the others: the emotion-only graph's embedding is narrower). The tracker's
        appearance reads it."""
        stale = self.stale(track_ids, times_s)
        fresh = self.full.infer(crops[stale])
        quick = self.emotion.infer(crops[~stale])
        self.full_rows += int(stale.sum())
        self.emotion_rows += int((~stale).sum())
        self._remember(fresh, track_ids[stale], times_s[stale], set(fresh) - set(quick))
        merged = {}
        for key, values in fresh.items():
            out = np.empty((len(crops), *values.shape[1:]), values.dtype)
            out[stale] = values
            if key == "embedding":
                out[~stale] = np.nan
            elif key in quick:
                out[~stale] = quick[key]
            else:
                out[~stale] = [self._cache[tid][1][key] for tid in track_ids[~stale]]
            merged[key] = out
        return merged

    def forget(self, track_ids) -> None:
        """Drop ended tracks (their ids never come back)."""
        for tid in track_ids:
            self._cache.pop(int(tid), None)

    def clear(self) -> None:
        """Forget every track (a new clip starts; its ids and times start over)."""
        self._cache.clear()

    def _remember(self, fresh: dict, track_ids: np.ndarray, times_s: np.ndarray, keys: set[str]) -> None:
        keys.discard("embedding")
        for row, (tid, t) in enumerate(zip(track_ids, times_s, strict=True)):
            if tid >= 0:
                self._cache[int(tid)] = (float(t), {k: fresh[k][row] for k in keys})
