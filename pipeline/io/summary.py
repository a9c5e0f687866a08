"""What every run's summary.json shares, offline or live: the analyzer's facts, the machine, and the
end-of-run files (tracks.csv, summary.json, timeline.png) written in that order once the frames are done."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

from pipeline.errors import OutputError
from pipeline.io.sinks import write_json, write_tracks_csv


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


def timeline_due(tracks: list) -> bool:
    """Whether timeline.png will have something to draw: a track that was given an emotion."""
    return any(t.dominant_emotion is not None for t in tracks)


def write_end_files(out: Path, tracks: list, title: str, summary: dict) -> None:
    """tracks.csv, then summary.json, then timeline.png: the summary never waits on (or is lost with) the
    plot. `summary["outputs"]["timeline.png"]` says whether a timeline is due (`timeline_due`); if the plot
    then comes out otherwise, the summary is written again with what happened, and a plot that cannot be
    written raises OutputError naming it after the summary is safely on disk."""
    from pipeline.io.plots import plot_timeline

    write_tracks_csv(out / "tracks.csv", tracks)
    write_json(out / "summary.json", summary)
    outputs = summary.setdefault("outputs", {})
    try:
        drawn, error = plot_timeline(out / "faces.jsonl", out / "timeline.png", title=Path(title).name), None
    except Exception as e:  # a full disk, a matplotlib failure: the other files stay good
        drawn, error = False, str(getattr(e, "strerror", None) or e).splitlines()[0]
    if drawn != outputs.get("timeline.png") or error:
        outputs["timeline.png"] = drawn
        if error:
            outputs["timeline_error"] = error
        with contextlib.suppress(OSError):  # the first summary stays if this one cannot be written
            write_json(out / "summary.json", summary)
    if error:
        raise OutputError(f"{out / 'timeline.png'}: cannot be written ({error})")
