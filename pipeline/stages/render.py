"""Overlay drawing: box, track id, top emotion with a probability bar, gender and age.

`Renderer.annotate(image_bgr, batch)` returns a new image; the input is never drawn on. Text is scaled to
the frame (readable at 640x360 and at 1080p) and labels are laid out by `pipeline.stages.labels`: inside
the frame, clear of each other and of the other faces, with a leader line when one sits away from its box.
"""

from __future__ import annotations

import cv2
import numpy as np

from engines.labels import gender_of, top_of
from pipeline.frames import FaceBatch
from pipeline.stages.labels import leader_line, place_labels

# One colour per emotion (BGR), so the bar and box say the emotion at a glance.
EMOTION_COLORS_BGR: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 60),
    "fear": (160, 60, 160),
    "happy": (40, 200, 250),
    "sad": (200, 120, 40),
    "surprise": (240, 200, 60),
    "neutral": (190, 190, 190),
}
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_label(batch: FaceBatch, i: int) -> tuple[str, str, float]:
    """(text, emotion name, probability) for face i: '#id happy 87% man 31y'."""
    probs = batch.outputs.get("emotion_smooth", batch.outputs.get("emotion"))
    parts = [f"#{batch.track_ids[i]}"] if batch.track_ids[i] >= 0 else []
    name, p = "", 0.0
    top = None if probs is None else top_of(probs[i])  # a NaN row: not inferred yet, no emotion
    if top is not None:
        name, p = top
        parts.append(f"{name} {p:.0%}")
    gender, age = batch.outputs.get("gender"), batch.outputs.get("age")
    if gender is not None and gender_of(gender[i]):
        parts.append(gender_of(gender[i]))
    if age is not None and np.isfinite(age[i]):
        parts.append(f"{age[i]:.0f}y")
    return " ".join(parts), name, p


class Renderer:
    """Draws every face of a batch onto a copy of the frame."""

    def __init__(self, thickness: int | None = None, show_landmarks: bool = False) -> None:
        self.thickness = thickness
        self.show_landmarks = show_landmarks

    def annotate(self, image_bgr: np.ndarray, batch: FaceBatch) -> np.ndarray:
        """A copy of the picture with `batch` drawn on it (the frame itself stays untouched)."""
        return self.draw(image_bgr.copy(), batch)

    def draw(self, image_bgr: np.ndarray, batch: FaceBatch) -> np.ndarray:
        """Draw `batch` onto `image_bgr` in place (a picture this caller owns); returns it: every box
        first, then the leader lines and labels on top, so no box line crosses a label."""
        h, w = image_bgr.shape[:2]
        font_scale, text_thick = text_scale((w, h))
        thick = self.thickness or max(1, round(min(w, h) / 360))
        labels = [_label(batch, i, font_scale, text_thick, thick) for i in range(len(batch))]
        places = place_labels(batch.xyxy, [lab.wh for lab in labels], (w, h))
        boxes = [tuple(round(float(v)) for v in batch.xyxy[i]) for i in range(len(batch))]
        for box, lab in zip(boxes, labels, strict=True):
            cv2.rectangle(image_bgr, box[:2], box[2:], lab.color, thick, cv2.LINE_AA)
        for i, (box, lab, place) in enumerate(zip(boxes, labels, places, strict=True)):
            if place.leader:
                a, b = leader_line(place.xyxy, box)
                cv2.line(image_bgr, a, b, lab.color, max(1, thick // 2), cv2.LINE_AA)
            _draw_label(image_bgr, lab, place.xyxy[:2], font_scale, text_thick)
            if self.show_landmarks and np.isfinite(batch.landmarks[i]).all():
                for x, y in batch.landmarks[i]:
                    cv2.circle(image_bgr, (int(x), int(y)), thick + 1, (0, 255, 255), -1)
        return image_bgr


def text_scale(frame_wh: tuple[int, int]) -> tuple[float, int]:
    """(OpenCV font scale, stroke) for a frame: capitals ~9 px tall at 360 lines, ~17 px at 1080."""
    short = min(frame_wh)
    scale = min(2.0, max(0.42, 0.78 * short / 1080))
    return scale, 1 if scale < 0.7 else 2


class _Label:
    """One face's label: text, colour, top-emotion probability and its size in pixels."""

    def __init__(self, text: str, name: str, p: float, size: tuple, bar_h: int) -> None:
        self.text, self.name, self.p, self.bar_h = text, name, p, bar_h
        (self.tw, self.th), self.base = size
        self.color = EMOTION_COLORS_BGR.get(name, (0, 220, 0))
        self.wh = (self.tw + 6, self.th + self.base + 6 + bar_h)


def _label(batch: FaceBatch, i: int, font_scale: float, text_thick: int, thick: int) -> _Label:
    text, name, p = face_label(batch, i)
    size = cv2.getTextSize(text, _FONT, font_scale, text_thick)
    return _Label(text, name, p, size, max(4, 2 * thick + 2) if name else 0)


def _draw_label(
    img: np.ndarray, lab: _Label, xy: tuple[int, int], font_scale: float, text_thick: int
) -> None:
    x, y = xy
    cv2.rectangle(img, (x, y), (x + lab.wh[0], y + lab.wh[1]), (0, 0, 0), -1)
    org = (x + 3, y + lab.th + 3)
    cv2.putText(img, lab.text, org, _FONT, font_scale, (255, 255, 255), text_thick, cv2.LINE_AA)
    if lab.name:  # the bar sits in the label: its filled part is the top emotion's probability
        _probability_bar(img, (x, y + lab.th + lab.base + 5), lab.wh[0], lab.bar_h, lab.p, lab.color)


def _probability_bar(img, xy: tuple[int, int], width: int, h: int, p: float, color) -> None:
    x, y = xy
    cv2.rectangle(img, (x, y), (x + width, y + h), (40, 40, 40), -1)
    cv2.rectangle(img, (x, y), (x + round(width * p), y + h), color, -1)
