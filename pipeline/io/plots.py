"""Pictures people would rather look at than read: each track's emotion probabilities over time
(timeline.png, videos) and each face's emotion probabilities as bars (emotions.png, photos)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np

from engines.files import atomic_path
from pipeline.frames import EMOTIONS
from pipeline.stages.render import EMOTION_COLORS_BGR

MIN_TRACK_FRAMES = 10  # a track seen in fewer frames is left out of the timeline (and counted as such)
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


def plot_timeline(jsonl: Path, png: Path, title: str = "") -> dict | None:
    """timeline.png: stacked emotion probabilities over time, one panel per track seen in at least
    MIN_TRACK_FRAMES frames (all tracks when none is that long); the figure says how many short ones it
    left out. Returns {"tracks_shown", "short_tracks_left_out"}, or None when there is no track."""
    series = read_track_series(jsonl)  # thinned while reading: memory bounded by the points kept
    if not series:
        return None
    long_enough = [t for t in series if len(series[t][0]) >= MIN_TRACK_FRAMES] or list(series)
    tids, left_out = sorted(long_enough), len(series) - len(long_enough)
    panel_in = 1.4 if len(tids) <= 8 else max(0.5, 11.2 / len(tids))  # many tracks: thinner panels
    fig = _figure(figsize=(10, 1.6 + panel_in * len(tids)))
    axes = fig.subplots(len(tids), 1, sharex=True, squeeze=False)
    for ax, tid in zip(axes[:, 0], tids, strict=True):
        t, p = series[tid]
        ax.stackplot(t, p.T, colors=[_rgb(e) for e in EMOTIONS], labels=EMOTIONS, linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"track {tid}", rotation=0, ha="right", va="center")
        ax.set_yticks([0, 0.5, 1] if panel_in >= 1 else [])
    axes[0, 0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("time (s)")
    note = f"; {left_out} tracks shorter than {MIN_TRACK_FRAMES} frames not shown" if left_out else ""
    fig.suptitle(f"{title or 'Emotion probabilities per track'} ({len(tids)} tracks{note})")
    _save(fig, png)
    return {"tracks_shown": len(tids), "short_tracks_left_out": left_out}


def plot_face_bars(jsonl: Path, png: Path, title: str = "") -> int:
    """emotions.png for a photo: one small bar chart of emotion probabilities per face (left to right as
    in the picture). Returns the number of faces drawn; nothing is written when there is none."""
    faces = []
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and isinstance(r.get("emotion"), dict) and r.get("xyxy"):
                faces.append(r)
    if not faces:
        return 0
    faces.sort(key=lambda r: r["xyxy"][0])
    cols = min(len(faces), 4)
    rows = -(-len(faces) // cols)
    fig = _figure(figsize=(2.6 * cols, 2.0 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for ax in axes.flat[len(faces) :]:
        ax.set_visible(False)
    for ax, r in zip(axes.flat, faces, strict=False):
        p = [r["emotion"][e] if r["emotion"][e] is not None else np.nan for e in EMOTIONS]
        ax.bar(range(len(EMOTIONS)), p, color=[_rgb(e) for e in EMOTIONS])
        ax.set_xticks(range(len(EMOTIONS)), [e[:3] for e in EMOTIONS], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"face #{r['track_id']}: {r.get('top_emotion', '?')}", fontsize=9)
    fig.suptitle(title or "Emotion probabilities per face")
    _save(fig, png)
    return len(faces)


def _figure(**kwargs):
    """A matplotlib Figure without pyplot: the process's matplotlib backend stays as it is."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _save(fig, png: Path) -> None:
    fig.tight_layout()
    with atomic_path(png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
