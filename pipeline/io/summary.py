"""What every run's summary.json shares, offline or live: the analyzer's facts, the machine, and the
per-track tables (tracks.csv, timeline.png) written once the frames are done."""

from __future__ import annotations

import platform
from pathlib import Path

from pipeline.io.sinks import write_tracks_csv


def analyzer_facts(analyzer) -> dict:
    """Models (name + sha256), detector, detection interval, heads, quality, the backend that ran, and what
    the identity stages did."""
    return {
        "models": [{"name": n, "sha256": s} for n, s in analyzer.net.models],
        "detector": analyzer.config.detector,
        "detect_every": analyzer.config.detect_every,
        "heads": list(analyzer.net.config.heads),
        "quality": analyzer.net.config.quality,
        "backend": analyzer.net.backend_name,
        "tracking": analyzer.tracking_facts(),  # min face, faces below it, cuts, re-ids, vetoes
    }


def machine_facts() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}


def write_track_tables(out: Path, tracks: list, title: str, still: bool = False) -> dict:
    """tracks.csv from the aggregator's track summaries, then the picture of faces.jsonl: timeline.png
    for a video, emotions.png (one bar chart per face) for a photo. Returns the summary's `plot` entry:
    {"file": name or None, ...what the picture shows}."""
    from pipeline.io.plots import plot_face_bars, plot_timeline

    write_tracks_csv(out / "tracks.csv", tracks)
    name = Path(title).name
    if still:
        faces = plot_face_bars(out / "faces.jsonl", out / "emotions.png", title=name)
        return {"file": "emotions.png" if faces else None, "kind": "per-face emotion bars", "faces": faces}
    shown = plot_timeline(out / "faces.jsonl", out / "timeline.png", title=name)
    return {"file": "timeline.png" if shown else None, "kind": "emotion timeline per track", **(shown or {})}
