"""Identity figures for docs/tracking.md: how many ids each shared clip gets, how much of a one-person clip
its main track holds, whether a track crosses a hard cut, and switch proxies on the crowd.

Besides the shared clips it builds two test videos (also used by tests/pipeline/test_identity.py):
`cut`: 2 s of the woman, then the man of pyfeat_single_face where her face was (a hard cut between two
people), and `gap`: the man's clip, 1.5 s of black (longer than the tracker's max_age_s), the same clip
again (the same person leaves and returns). Every clip goes through `emostream run`
(pipeline.runtime.offline, no video written) with the default analyzer.

    python tools/tracking_figures.py ../shared/media [--quality fast]      # this tree
    PYTHONPATH=/tmp/main-tree python tools/tracking_figures.py ../shared/media   # the code before

Only AnalyzerConfig fields the imported code knows are set, so the same script measures older trees.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

CLIP_FPS = 25.0
CUT_AFTER_S = 2.0
GAP_S = 1.5
ONE_PERSON = ("pexels_woman_emotions.mp4", "pyfeat_single_face.mp4", "pyfeat_face_then_noface.mov")
CROWD = "facenet_crowd_walking_1080p.mp4"


def _frames(path: Path, max_s: float = np.inf):
    from pipeline.io.capture import open_source

    with open_source(str(path)) as src:
        return [f.image_bgr for f in src if f.time_s < max_s]


def _write(dst: Path, images: list[np.ndarray]) -> Path:
    from pipeline.io.sinks import VideoSink

    h, w = images[0].shape[:2]
    sink = VideoSink(dst, (w, h), CLIP_FPS, preset="veryfast")
    try:
        for i, img in enumerate(images):
            sink.write(img, i / CLIP_FPS)
    finally:
        sink.close()
    return dst


def build_cut_clip(media: Path, dst: Path) -> float:
    """The woman for CUT_AFTER_S, then the man's whole clip (both 640x360), moved and scaled so that his
    face starts where hers was (shot / reverse shot: the cut box-only tracking gets wrong); returns the
    cut's time in seconds."""
    import cv2

    woman = _frames(media / "pexels_woman_emotions.mp4", CUT_AFTER_S)
    man = _frames(media / "pyfeat_single_face.mp4")
    (wx, wy, w_side), (mx, my, m_side) = _face(woman[-1]), _face(man[0])
    scale = w_side / m_side
    warp = np.array([[scale, 0, wx - scale * mx], [0, scale, wy - scale * my]], np.float32)
    size_wh = (woman[0].shape[1], woman[0].shape[0])
    _write(dst, woman + [cv2.warpAffine(img, warp, size_wh) for img in man])
    return len(woman) / CLIP_FPS


def _face(image_bgr: np.ndarray) -> tuple[float, float, float]:
    """Centre x, y and side of the highest-scoring YuNet face in the image."""
    from pipeline.frames import Frame
    from pipeline.stages.detect import create_detector

    detector = create_detector("yunet")
    try:
        batch = detector.detect(Frame(0, 0.0, image_bgr))
    finally:
        detector.close()
    best = int(np.argmax(batch.scores))
    (cx, cy), side = batch.centers[best], batch.box_wh[best].max()
    return float(cx), float(cy), float(side)


def build_gap_clip(media: Path, dst: Path, gap_s: float = GAP_S) -> tuple[float, float]:
    """The man's clip, `gap_s` of black, the clip again; returns (gap start, gap end) in seconds."""
    man = _frames(media / "pyfeat_single_face.mp4")
    black = [np.zeros_like(man[0])] * round(gap_s * CLIP_FPS)
    _write(dst, man + black + man)
    return len(man) / CLIP_FPS, (len(man) + len(black)) / CLIP_FPS


def run_clip(path: Path, **overrides) -> list[dict]:
    """faces.jsonl rows of `emostream run` on `path` with the default analyzer (+ known `overrides`)."""
    from pipeline.config import AnalyzerConfig
    from pipeline.runtime.offline import OfflineJob, run_job

    known = {f.name for f in dataclasses.fields(AnalyzerConfig)}
    config = AnalyzerConfig(**{k: v for k, v in overrides.items() if k in known})
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        run_job(OfflineJob(input=str(path), out_dir=out, analyzer=config, write_video=False))
        return [json.loads(line) for line in (out / "faces.jsonl").read_text().splitlines()]


def identity_figures(rows: list[dict], cut_s: float | None = None) -> dict:
    """Ids, the main id's share of face-rows (untracked rows count against it), ids across `cut_s`, and
    two switch proxies: `jumps` (a track's box moves more than half its side between consecutive rows
    under 0.1 s apart) and `reborn` (an id starts within 0.5 s and 2 box sides of where another ended)."""
    tracks = defaultdict(list)
    for r in rows:
        if r["track_id"] >= 0:
            tracks[r["track_id"]].append((r["time_s"], np.array(r["xyxy"], float)))
    counts = sorted((len(v) for v in tracks.values()), reverse=True)
    spans = [tid for tid, v in tracks.items() if cut_s is not None and v[0][0] < cut_s <= v[-1][0]]
    return {
        "face_rows": len(rows),
        "untracked_rows": sum(r["track_id"] < 0 for r in rows),
        "ids": len(tracks),
        "ids_over_1s": sum(v[-1][0] - v[0][0] >= 1.0 for v in tracks.values()),
        "main_share": round(counts[0] / len(rows), 3) if rows and counts else 0.0,
        "ids_across_cut": len(spans),
        "jumps": int(sum(_jumps(v) for v in tracks.values())),
        "reborn": int(_reborn(list(tracks.values()))),
    }


def _side(xyxy: np.ndarray) -> float:
    return float(max(xyxy[2:] - xyxy[:2]))


def _center(xyxy: np.ndarray) -> np.ndarray:
    return (xyxy[:2] + xyxy[2:]) / 2


def _jumps(track: list) -> int:
    pairs = itertools.pairwise(track)
    return sum(
        t1 - t0 < 0.1 and np.linalg.norm(_center(b1) - _center(b0)) > 0.5 * _side(b0)
        for (t0, b0), (t1, b1) in pairs
    )


def _reborn(tracks: list[list]) -> int:
    count = 0
    for new in tracks:
        t_new, b_new = new[0]
        count += any(
            0 <= t_new - old[-1][0] <= 0.5
            and np.linalg.norm(_center(b_new) - _center(old[-1][1])) <= 2 * _side(old[-1][1])
            for old in tracks
            if old is not new and old[-1][0] < t_new
        )
    return count


def measure(media: Path, work: Path, **config) -> dict:
    """Figures of every clip with the analyzer `config` (e.g. quality="fast")."""
    results = {name: identity_figures(run_clip(media / name, **config)) for name in (*ONE_PERSON, CROWD)}
    cut_s = build_cut_clip(media, work / "cut.mp4")
    results["cut (woman | man)"] = identity_figures(run_clip(work / "cut.mp4", **config), cut_s)
    gap = build_gap_clip(media, work / "gap.mp4")
    results["gap (man, black, man)"] = identity_figures(run_clip(work / "gap.mp4", **config), sum(gap) / 2)
    return results


def markdown(results: dict) -> str:
    keys = ["face_rows", "untracked_rows", "ids", "ids_over_1s", "main_share", "ids_across_cut"]
    keys += ["jumps", "reborn"]
    lines = ["| clip | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {name} | " + " | ".join(str(r[k]) for k in keys) + " |" for name, r in results.items()]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("media", type=Path)
    ap.add_argument("--quality", help="the net's quality (default: the analyzer's default)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(args.media, Path(tmp), **({"quality": args.quality} if args.quality else {}))
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
