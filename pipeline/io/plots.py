"""Pictures people would rather look at than read: each track's emotion probabilities over time."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from engines.files import atomic_path
from pipeline.frames import EMOTIONS
from pipeline.stages.render import EMOTION_COLORS_BGR

MAX_TRACKS = 8
MAX_POINTS = 2000  # per track; longer tracks are thinned so memory and drawing stay bounded


def _rgb(name: str) -> tuple[float, float, float]:
    b, g, r = EMOTION_COLORS_BGR[name]
    return r / 255, g / 255, b / 255


_TRACK_ID = re.compile(rb'"track_id":(-?\d+)')  # faces.jsonl is written with separators (",", ":")


def _row_track(line: bytes) -> int | None:
    m = _TRACK_ID.search(line)
    return int(m.group(1)) if m else None


def read_track_series(
    jsonl: Path, max_tracks: int | None = None, max_points: int = MAX_POINTS
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """track id -> (times (T,), emotion probabilities (T,7)) from faces.jsonl, thinned to `max_points`.

    Thinning happens while reading, so memory is bounded by the points kept, not by the file: a first pass
    counts each track's rows (ids only), a second keeps every k-th row of the `max_tracks` longest tracks
    (all tracks when None), k chosen from the count.
    """
    counts: Counter[int] = Counter()
    with open(jsonl, "rb") as f:
        for line in f:
            tid = _row_track(line)
            if tid is not None and tid >= 0 and b'"emotion":' in line:
                counts[tid] += 1
    chosen = dict(counts.most_common(max_tracks))
    step = {tid: -(-n // max_points) for tid, n in chosen.items()}
    seen: Counter[int] = Counter()
    series: dict[int, list] = {tid: [] for tid in chosen}
    with open(jsonl, "rb") as f:
        for line in f:
            tid = _row_track(line)
            if tid not in chosen or b'"emotion":' not in line:
                continue
            n, seen[tid] = seen[tid], seen[tid] + 1
            if n % step[tid]:
                continue
            try:
                r = json.loads(line)
                series[tid].append((r["time_s"], *(r["emotion"][e] for e in EMOTIONS)))
            except (json.JSONDecodeError, KeyError, TypeError):  # a line cut by a hard kill
                continue
    out = {}
    for tid, rows in series.items():
        if rows:
            a = np.asarray(rows, np.float64)  # null -> NaN
            out[tid] = (a[:, 0], a[:, 1:])
    return out


def plot_timeline(jsonl: Path, png: Path, title: str = "") -> bool:
    """timeline.png: stacked emotion probabilities over time, one panel per (longest) track."""
    series = read_track_series(jsonl, MAX_TRACKS)
    if not series:
        return False
    from matplotlib.figure import Figure  # no pyplot: the process's matplotlib backend stays as it is

    tids = list(series)
    fig = Figure(figsize=(10, 1.6 + 1.4 * len(tids)))
    axes = fig.subplots(len(tids), 1, sharex=True, squeeze=False)
    for ax, tid in zip(axes[:, 0], sorted(tids), strict=True):
        t, p = series[tid]
        ax.stackplot(t, p.T, colors=[_rgb(e) for e in EMOTIONS], labels=EMOTIONS, linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}", rotation=0, ha="right", va="center")
        ax.set_yticks([0, 0.5, 1])
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title or "Emotion probabilities per track")
    fig.tight_layout()
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    return True
