"""Pictures people would rather look at than read: each track's emotion probabilities over time."""

from __future__ import annotations

import json
from collections import defaultdict
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


def read_track_series(jsonl: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """track id -> (times (T,), emotion probabilities (T,7)) from faces.jsonl, thinned to MAX_POINTS."""
    series: dict[int, list] = defaultdict(list)
    with open(jsonl, encoding="utf-8") as f:
        for line in f:
            try:
                r = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a hard kill: the rest is still good
                continue
            if isinstance(r, dict) and "emotion" in r and r.get("track_id", -1) >= 0:
                series[r["track_id"]].append((r["time_s"], *(r["emotion"][e] for e in EMOTIONS)))
    out = {}
    for tid, rows in series.items():
        a = np.asarray(rows, np.float64)[:: -(-len(rows) // MAX_POINTS)]  # at most MAX_POINTS; null -> NaN
        out[tid] = (a[:, 0], a[:, 1:])
    return out


def plot_timeline(jsonl: Path, png: Path, title: str = "") -> bool:
    """timeline.png: stacked emotion probabilities over time, one panel per (longest) track."""
    series = read_track_series(jsonl)
    if not series:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tids = sorted(series, key=lambda t: -len(series[t][0]))[:MAX_TRACKS]
    fig, axes = plt.subplots(len(tids), 1, figsize=(10, 1.6 + 1.4 * len(tids)), sharex=True, squeeze=False)
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
    try:
        with atomic_path(png, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return True
