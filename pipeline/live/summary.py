"""The figures of a live run: the preview page's state per frame and summary.json at the end."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from engines.labels import gender_of, top_of
from pipeline.frames import FaceBatch, Frame
from pipeline.io.summary import analyzer_facts, machine_facts, plot_due, write_end_files
from pipeline.live.outputs import percentiles_ms


def track_states(known: FaceBatch, unknown: FaceBatch) -> list[dict]:
    """Each visible face for the page: id, box, smoothed emotion probabilities, top emotion, gender, age."""
    probs = known.outputs.get("emotion_smooth", known.outputs.get("emotion"))
    tracks = []
    for i in range(len(known)):
        t = {"id": int(known.track_ids[i]), "xyxy": [round(float(v)) for v in known.xyxy[i]], "top": None}
        top = None if probs is None else top_of(probs[i])
        if top is not None:
            t.update(emotion=[round(float(p), 4) for p in probs[i]], top=top[0], top_p=top[1])
        gender, age = known.outputs.get("gender"), known.outputs.get("age")
        if gender is not None and gender_of(gender[i]):  # NaN: not inferred (JSON has no NaN)
            t["gender"] = gender_of(gender[i])
        if age is not None and np.isfinite(age[i]):
            t["age"] = float(age[i])
        tracks.append(t)
    for i in range(len(unknown)):
        tracks.append({"id": int(unknown.track_ids[i]), "xyxy": [round(float(v)) for v in unknown.xyxy[i]]})
    return tracks


def preview_state(run, frame: Frame, known: FaceBatch, unknown: FaceBatch) -> dict:
    """What the preview page shows beside the picture of `frame`."""
    counts = run.frames.counts()
    return {
        "frame": frame.index,
        "time_s": round(frame.time_s, 3),
        "source": run.job.shown_as,
        "tracks": track_states(known, unknown),
        "stats": {
            **run.log.recent(),
            "captured": counts.offered,
            "processed": run.shown + 1,
            "dropped": counts.dropped,
            "inference_skipped": run.infer_box.counts().dropped,
        },
    }


def frame_counts(run) -> dict:
    """captured == processed + dropped; frames left in flight by an abort count as dropped at stop."""
    frames, infer = run.frames.counts(), run.infer_box.counts()
    at_stop = frames.pending + (frames.taken - run.shown)
    return {
        "frames_captured": frames.offered,
        "frames_processed": run.shown,
        "frames_dropped": frames.dropped + at_stop,
        "frames_dropped_at_stop": at_stop,
        "frames_inferred": run.infer.inferred,
        "inference_skipped": infer.dropped + infer.pending,
    }


NO_SOURCE_WARN_S = 2.0
NO_SOURCE_WARN_FRACTION = 0.05
"""A live run warns (and `emostream live` exits 3) when it spent more than NO_SOURCE_WARN_S seconds and
more than this fraction of its wall time without a source."""


def source_missing(summary: dict) -> bool:
    """Whether the run spent long enough without a source to say so (see NO_SOURCE_WARN_S)."""
    gap, wall = summary.get("no_source_s", 0.0), summary["timings"]["wall_s"]
    return gap > NO_SOURCE_WARN_S and gap > NO_SOURCE_WARN_FRACTION * wall


def build_summary(job, run, setup_s: float, out: Path | None) -> dict:
    """summary.json (and tracks.csv, timeline.png) of a finished live run; returns the summary."""
    analyzer, capture = run.analyzer, run.capture.report(until=run.t0 + run.wall_s)
    tracks = analyzer.aggregator.track_summaries()
    outputs = _tables(tracks, run) if out is not None else {}
    counts = frame_counts(run)
    summary = {
        "mode": "live",
        "input": {
            **dataclasses.asdict(run.source.info),
            "frames_read": capture["frames_read"],
            "decode_errors": capture["decode_errors"],
        },
        **analyzer_facts(analyzer),
        "realtime": job.realtime,
        "max_seconds": job.max_seconds,
        **counts,
        "faces": run.faces,
        "tracks": len(tracks),
        "interrupted": run.interrupted,
        "stop_reason": "source_lost" if capture["source_lost"] else run.stop_reason,
        "reconnects": capture["reconnects"],
        "source_lost": capture["source_lost"],
        "no_source_s": capture["no_source_s"],
        "source_events": capture["events"],
        "latency_ms": run.log.summary(),
        "render_ms": percentiles_ms(run.log.render_s),
        "processed_fps": round(run.shown / run.wall_s, 2) if run.wall_s > 0 else 0.0,
        "captured_fps": round(counts["frames_captured"] / run.wall_s, 2) if run.wall_s > 0 else 0.0,
        "clip_emotion": analyzer.aggregator.clip_distribution(),
        "timings": {
            "setup_s": round(setup_s, 3),
            "wall_s": round(run.wall_s, 3),
            "stages": analyzer.timer.summary(run.shown),
        },
        "outputs": outputs,
        "preview": run.preview.report() if run.preview is not None else None,
        "machine": machine_facts(),
    }
    if out is not None:
        write_end_files(out, tracks, job.shown_as, summary)
    return summary


def _tables(tracks: list, run) -> dict:
    written = run.outputs.counts if run.outputs is not None else {}
    return {
        **written,
        "tracks.csv": len(tracks),
        "latency.csv": run.shown,
        "timeline.png": plot_due(tracks),
    }
