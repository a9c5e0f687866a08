"""Before/after pictures of the label layout for docs/labels.md (issue 14), made from the test media.

    python tools/label_layout.py --media ../shared/media --out docs/images

Runs the analyzer on a frame of the 1080p crowd clip (at 1080p and scaled to 640x360) and on the group
photo, then draws each twice: with the old placement (label above the box, else below, left-aligned,
never moved for the frame edge or another face: kept here, in `draw_before`, only for this comparison)
and with `pipeline.stages.render.Renderer` (the layout of `pipeline.stages.labels`). Writes
labels_before.jpg and labels_after.jpg, each a column of the three pictures, 960 px wide.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.api import analyze
from pipeline.stages.render import EMOTION_COLORS_BGR, Renderer, face_label

CROWD, GROUP = "facenet_crowd_walking_1080p.mp4", "pyfeat_multi_face_5.jpg"
CROWD_AT_S = 2.0
WIDTH = 960


def frame_with_faces(path: Path, at_s: float = 0.0):
    """(BGR picture, FaceBatch) of the first frame at or after `at_s` (tracked, with emotions)."""
    for frame, faces in analyze(str(path)):
        if frame.time_s >= at_s:
            return frame.image_bgr, faces
    raise SystemExit(f"{path}: no frame at {at_s} s")


def draw_before(img: np.ndarray, batch) -> np.ndarray:
    """The placement before issue 14, for comparison: fixed text size, above-else-below, no avoidance."""
    img = img.copy()
    scale = max(img.shape[:2]) / 1000.0
    thick, font_scale = max(1, round(2 * scale)), max(0.35, 0.55 * scale)
    for i in range(len(batch)):
        x1, y1, x2, y2 = (round(float(v)) for v in batch.xyxy[i])
        text, name, p = face_label(batch, i)
        color = EMOTION_COLORS_BGR.get(name, (0, 220, 0))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        bar_h = max(4, 3 * thick) if name else 0
        label_h = th + base + 5 + bar_h
        top = y1 - label_h if y1 - label_h >= 0 else min(y2, img.shape[0] - label_h)
        cv2.rectangle(img, (x1, top), (x1 + tw + 4, top + label_h), (0, 0, 0), -1)
        cv2.putText(img, text, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255,) * 3, 1)
        if name:
            y = top + th + base + 4
            cv2.rectangle(img, (x1, y), (x1 + tw + 4, y + bar_h), (40, 40, 40), -1)
            cv2.rectangle(img, (x1, y), (x1 + round((tw + 4) * p), y + bar_h), color, -1)
    return img


def scaled(img: np.ndarray, batch, size_wh: tuple[int, int]):
    """The picture and its boxes resized to `size_wh` (as if the input had been that size)."""
    sx, sy = size_wh[0] / img.shape[1], size_wh[1] / img.shape[0]
    xyxy = batch.xyxy * np.array([sx, sy, sx, sy], np.float32)
    out = batch.__class__(**{**batch.__dict__, "xyxy": xyxy, "landmarks": batch.landmarks * [sx, sy]})
    return cv2.resize(img, size_wh, interpolation=cv2.INTER_AREA), out


def column(pictures: list[np.ndarray]) -> np.ndarray:
    """Pictures stacked top to bottom, each at WIDTH px wide, with a white gap."""
    rows = []
    for p in pictures:
        rows += [cv2.resize(p, (WIDTH, round(p.shape[0] * WIDTH / p.shape[1])), interpolation=cv2.INTER_AREA)]
        rows += [np.full((12, WIDTH, 3), 255, np.uint8)]
    return np.vstack(rows[:-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--media", type=Path, default=Path(os.environ.get("EMOSTREAM_SHARED_DIR", "../shared")) / "media"
    )
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    crowd, crowd_faces = frame_with_faces(args.media / CROWD, CROWD_AT_S)
    small, small_faces = scaled(crowd, crowd_faces, (640, 360))
    group, group_faces = frame_with_faces(args.media / GROUP)
    scenes = [(crowd, crowd_faces), (small, small_faces), (group, group_faces)]
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("before", draw_before), ("after", Renderer().annotate)):
        picture = column([draw(img, faces) for img, faces in scenes])
        cv2.imwrite(str(args.out / f"labels_{name}.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 85])
        print(args.out / f"labels_{name}.jpg", f"{len(crowd_faces)} + {len(group_faces)} faces")


if __name__ == "__main__":
    main()
