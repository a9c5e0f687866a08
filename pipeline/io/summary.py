"""What every run's summary.json shares, offline or live: the analyzer's facts, the machine, and the
end-of-run files (tracks.csv, summary.json, timeline.png) written in that order once the frames are done."""

from __future__ import annotations

import contextlib
import platform
from pathlib import Path

from pipeline.errors import OutputError
from pipeline.io.sinks import write_json, write_tracks_csv


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


def plot_due(tracks: list) -> bool:
    """Whether the run's picture (timeline.png, emotions.png) will have something to draw."""
    return any(t.dominant_emotion is not None for t in tracks)


def planned_plot(tracks: list, still: bool = False) -> dict:
    """The summary's `plot` entry as expected before drawing (`write_end_files` corrects it if needed)."""
    if still:
        return {"file": "emotions.png" if plot_due(tracks) else None, "kind": "per-face emotion bars"}
    return {"file": "timeline.png" if plot_due(tracks) else None, "kind": "emotion timeline per track"}


def _draw(out: Path, title: str, still: bool) -> dict:
    """timeline.png for a video, emotions.png (one bar chart per face) for a photo: the `plot` entry."""
    from pipeline.io.plots import plot_face_bars, plot_timeline

    name = Path(title).name
    if still:
        faces = plot_face_bars(out / "faces.jsonl", out / "emotions.png", title=name)
        return {"file": "emotions.png" if faces else None, "kind": "per-face emotion bars", "faces": faces}
    shown = plot_timeline(out / "faces.jsonl", out / "timeline.png", title=name)
    return {"file": "timeline.png" if shown else None, "kind": "emotion timeline per track", **(shown or {})}


def write_end_files(out: Path, tracks: list, title: str, summary: dict, still: bool = False) -> None:
    """tracks.csv, then summary.json, then the plot: the summary never waits on (or is lost with) the
    plot. `summary["plot"]` holds what is expected (`planned_plot`); once drawn, the summary is written
    again with what came out, and a plot that cannot be written raises OutputError naming it after the
    summary is safely on disk."""
    write_tracks_csv(out / "tracks.csv", tracks)
    write_json(out / "summary.json", summary)
    outputs = summary.setdefault("outputs", {})
    try:
        drawn, error = _draw(out, title, still), None
    except Exception as e:  # a full disk, a matplotlib failure: the other files stay good
        error = str(getattr(e, "strerror", None) or e).splitlines()[0]
        drawn = {**summary.get("plot", {}), "file": None}
    name = "emotions.png" if still else "timeline.png"
    summary["plot"] = drawn
    outputs[name] = bool(drawn["file"])
    if error:
        outputs[name.replace(".png", "_error")] = error  # timeline_error, emotions_error
    with contextlib.suppress(OSError):  # the first summary stays if this one cannot be written
        write_json(out / "summary.json", summary)
    if error:
        raise OutputError(f"{out / name}: cannot be written ({error})")
