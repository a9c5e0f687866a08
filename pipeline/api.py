"""The Python API: `analyze(path)` yields (frame, faces) pairs; `run_job` writes every output; `read_run(out)`
gives a finished run's outputs back as pandas tables (pandas is the optional extra `emostream[pandas]`)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from engines.errors import EmostreamError
from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.frames import EMOTIONS, FaceBatch, Frame
from pipeline.runtime.runner import Producer, take
from pipeline.runtime.timing import StageTimer


def analyze(
    source: str | Path, config: AnalyzerConfig | None = None, batch_frames: int = 4
) -> Iterator[tuple[Frame, FaceBatch]]:
    """Decode `source` on a background thread and yield each frame with its tracked, inferred faces."""
    from pipeline.io.capture import open_source

    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=8)
    with open_source(source) as src:  # a bad input fails here, before the models load
        analyzer = FaceAnalyzer(config or AnalyzerConfig())
        decoder = Producer(src, q, stop, StageTimer())
        decoder.start()
        try:
            done = False
            while not done:
                frames, done, error = take(q, batch_frames)
                yield from zip(frames, analyzer.process(frames), strict=True)
                if error is not None:
                    raise error
        finally:
            stop.set()
            decoder.join(timeout=5)
            analyzer.close()


class MissingExtraError(EmostreamError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class RunTables(NamedTuple):
    """A run's outputs as DataFrames: `faces` (one row per face per frame) and `tracks` (one per track)."""

    faces: Any
    tracks: Any


FACE_COLUMNS = ("frame", "time_s", "track_id", "x1", "y1", "x2", "y2", "score", "detected")


def read_run(out_dir: str | Path) -> RunTables:
    """faces.jsonl and tracks.csv of `emostream run` as pandas DataFrames.

    faces: frame, time_s, track_id, the box (x1, y1, x2, y2), score, detected, one column per emotion
    probability (angry ... neutral), top_emotion (by name) and top_p, then whatever else the heads wrote
    (gender, p_man, age, ...); missing values are NaN. A line cut short by a killed run is skipped.
    tracks: tracks.csv as it is (track_id, frames, times, mean_<emotion>, dominant_emotion, gender, ...).
    """
    pd = _pandas()
    out = Path(out_dir)
    rows = [_flat(r) for r in _jsonl_rows(out / "faces.jsonl")]
    faces = pd.DataFrame.from_records(rows)
    first = [*FACE_COLUMNS, *EMOTIONS, "top_emotion", "top_p"]
    faces = faces.reindex(columns=[*first, *(c for c in faces.columns if c not in first)])
    faces[list(EMOTIONS)] = faces[list(EMOTIONS)].astype("float64")
    tracks_csv = out / "tracks.csv"
    tracks = pd.read_csv(tracks_csv) if tracks_csv.is_file() else pd.DataFrame()
    return RunTables(faces, tracks)


def _pandas():
    try:
        import pandas
    except ImportError:
        raise MissingExtraError(
            "read_run needs pandas, which is not installed: pip install 'emostream[pandas]'"
        ) from None
    return pandas


def _jsonl_rows(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the torn last line of a killed run
                continue
            if isinstance(row, dict):
                yield row


def _flat(row: dict) -> dict:
    """One faces.jsonl object as flat columns: the box split into x1..y2, emotions as columns."""
    flat = {k: v for k, v in row.items() if k not in ("xyxy", "emotion")}
    flat.update(zip(("x1", "y1", "x2", "y2"), row.get("xyxy") or (None,) * 4, strict=True))
    flat.update(row.get("emotion") or {})
    return flat
