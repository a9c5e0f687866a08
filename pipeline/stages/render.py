"""Overlay drawing: box, track id, top emotion with a probability bar, gender and age.

`Renderer.annotate(image_bgr, batch)` returns a new image; the input is never drawn on.
"""

from __future__ import annotations

import cv2
import numpy as np

from engines.labels import gender_of, top_of
from pipeline.frames import FaceBatch

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
        """Draw `batch` onto `image_bgr` in place (a picture this caller owns); returns it."""
        scale = max(image_bgr.shape[:2]) / 1000.0
        thick = self.thickness or max(1, round(2 * scale))
        for i in range(len(batch)):
            self._draw_face(image_bgr, batch, i, scale, thick)
        return image_bgr

    def _draw_face(self, img: np.ndarray, batch: FaceBatch, i: int, scale: float, thick: int) -> None:
        x1, y1, x2, y2 = (round(float(v)) for v in batch.xyxy[i])
        text, name, p = face_label(batch, i)
        color = EMOTION_COLORS_BGR.get(name, (0, 220, 0))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        font_scale = max(0.35, 0.55 * scale)
        (tw, th), base = cv2.getTextSize(text, _FONT, font_scale, 1)
        bar_h = max(4, 3 * thick) if name else 0
        label_h = th + base + 5 + bar_h
        top = y1 - label_h if y1 - label_h >= 0 else min(y2, img.shape[0] - label_h)  # above, else below
        cv2.rectangle(img, (x1, top), (x1 + tw + 4, top + label_h), (0, 0, 0), -1)
        cv2.putText(img, text, (x1 + 2, top + th + 2), _FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
        if name:  # the bar sits in the label: its filled part is the top emotion's probability
            _probability_bar(img, (x1, top + th + base + 4), tw + 4, bar_h, p, color)
        if self.show_landmarks and np.isfinite(batch.landmarks[i]).all():
            for x, y in batch.landmarks[i]:
                cv2.circle(img, (int(x), int(y)), thick + 1, (0, 255, 255), -1)


def _probability_bar(img, xy: tuple[int, int], width: int, h: int, p: float, color) -> None:
    x, y = xy
    cv2.rectangle(img, (x, y), (x + width, y + h), (40, 40, 40), -1)
    cv2.rectangle(img, (x, y), (x + round(width * p), y + h), color, -1)
