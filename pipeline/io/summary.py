"""What every run's summary.json shares, offline or live: the analyzer's facts, the machine, and the
per-track tables (tracks.csv, timeline.png) written once the frames are done."""

from __future__ import annotations

import platform
from pathlib import Path

from pipeline.io.sinks import write_tracks_csv


def analyzer_facts(analyzer) -> dict:
    """Models (name + sha256), detector, detection interval, heads, quality and the backend that ran."""
    return {
        "models": [{"name": n, "sha256": s} for n, s in analyzer.net.models],
        "detector": analyzer.config.detector,
        "detect_every": analyzer.config.detect_every,
        "heads": list(analyzer.net.config.heads),
        "quality": analyzer.net.config.quality,
        "backend": analyzer.net.backend_name,
    }


def machine_facts() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}


def write_track_tables(out: Path, tracks: list, title: str) -> bool:
    """tracks.csv from the aggregator's track summaries and timeline.png from faces.jsonl; True when the
    timeline was drawn (False: no track to draw)."""
    from pipeline.io.plots import plot_timeline

    write_tracks_csv(out / "tracks.csv", tracks)
    return plot_timeline(out / "faces.jsonl", out / "timeline.png", title=Path(title).name)
