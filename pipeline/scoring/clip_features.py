"""One clip's per-face features as extracted (`ClipFeatures`), and its cache file format (.npz).

The unit both the extraction workers produce and the feature cache stores: every face row of one clip
with its frame, time, track, box and every net output except per-run state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.files import atomic_path

SKIPPED_OUTPUTS = ("emotion_smooth", "head", "head_label")  # per-run state or a few-shot head: not features


@dataclass(frozen=True, eq=False)
class ClipFeatures:
    """Every face row of one clip: frame (R,), time_s (R,), track_id (R,), xyxy (R,4), outputs (R,...)."""

    frame: np.ndarray
    time_s: np.ndarray
    track_id: np.ndarray
    xyxy: np.ndarray
    outputs: dict[str, np.ndarray]
    frames: int  # frames decoded
    decode_errors: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def from_batches(cls, batches: list, frames: int, decode_errors: int = 0) -> ClipFeatures:
        keys = [k for k in (batches[0].outputs if batches else {}) if k not in SKIPPED_OUTPUTS]
        rows = [b for b in batches if len(b)]

        def cat(get, empty) -> np.ndarray:
            return np.concatenate([get(b) for b in rows]) if rows else empty

        outputs = {k: cat(lambda b, k=k: b.outputs[k], np.zeros((0,), np.float32)) for k in keys}
        return cls(
            frame=cat(lambda b: np.full(len(b), b.frame_index, np.int64), np.zeros(0, np.int64)),
            time_s=cat(lambda b: np.full(len(b), b.time_s, np.float64), np.zeros(0)),
            track_id=cat(lambda b: b.track_ids, np.zeros(0, np.int64)),
            xyxy=cat(lambda b: b.xyxy, np.zeros((0, 4), np.float32)),
            outputs=outputs,
            frames=frames,
            decode_errors=decode_errors,
        )

    def save(self, path: Path) -> None:
        """One compressed .npz, written to a temporary name, synced to disk and renamed into place (a
        crash leaves the old entry or none, never half a file); the temporary file goes if writing fails."""
        arrays = {f"out_{k}": v for k, v in self.outputs.items()}
        meta = json.dumps({"frames": self.frames, "decode_errors": self.decode_errors})
        rows = {"frame": self.frame, "time_s": self.time_s, "track_id": self.track_id, "xyxy": self.xyxy}
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, meta=np.array(meta), **rows, **arrays)

    @classmethod
    def load(cls, path: Path) -> ClipFeatures:
        """Raises (OSError, ValueError, zipfile errors, ...) when the file is not a whole clip entry."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            outputs = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
            cf = cls(z["frame"], z["time_s"], z["track_id"], z["xyxy"], outputs, **meta)
        if any(len(a) != len(cf) for a in (cf.time_s, cf.track_id, cf.xyxy, *outputs.values())):
            raise ValueError(f"{path}: arrays of different lengths")
        return cf
