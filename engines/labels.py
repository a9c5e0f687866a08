"""Turning the net's arrays into labels: small pure functions, no engine state."""

from __future__ import annotations

import numpy as np

from engines.store.registry import FER2013_EMOTIONS

GENDER_THRESHOLD = 0.5
"""P(man) at or above which a face is labelled 'man'."""


def top_emotion(probs: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(indices (N,), names, top probabilities (N,)) of the most likely FER2013 emotion per row."""
    probs = np.asarray(probs, np.float32).reshape(-1, len(FER2013_EMOTIONS))
    indices = probs.argmax(axis=1)
    top = probs[np.arange(len(probs)), indices]
    return indices, [FER2013_EMOTIONS[i] for i in indices], top


def gender_label(p_man: np.ndarray, threshold: float = GENDER_THRESHOLD) -> list[str]:
    """'man' where P(man) >= threshold, else 'woman', one per row."""
    return ["man" if p >= threshold else "woman" for p in np.asarray(p_man, np.float32).reshape(-1)]


def top_of(probs_row: np.ndarray) -> tuple[str, float] | None:
    """(name, probability) of the most likely FER2013 emotion in one face's (7,) row; None for a row
    with a NaN (not inferred: no emotion is named from it)."""
    row = np.asarray(probs_row, np.float64).reshape(-1)
    if not np.isfinite(row).all():
        return None
    k = int(np.argmax(row))
    return FER2013_EMOTIONS[k], float(row[k])


def gender_of(p_man: float, threshold: float = GENDER_THRESHOLD) -> str | None:
    """'man' where P(man) >= threshold, else 'woman'; None for NaN or None (not inferred)."""
    if p_man is None or not np.isfinite(p_man):
        return None
    return "man" if p_man >= threshold else "woman"


def emotion_dict(probs_row: np.ndarray) -> dict[str, float]:
    """{emotion name: probability} for one face's (7,) row, in FER2013 order."""
    row = np.asarray(probs_row, np.float32).reshape(-1)
    if len(row) != len(FER2013_EMOTIONS):
        raise ValueError(f"an emotion row has {len(FER2013_EMOTIONS)} values, got {len(row)}")
    return {name: float(p) for name, p in zip(FER2013_EMOTIONS, row, strict=True)}


AFFECTNET_TO_FER: dict[str, str] = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprise": "surprise",
    "fearful": "fear",  # OpenCV Zoo's RAF-DB expression net
    "surprised": "surprise",
}
"""AffectNet class names (HSEmotion) -> FER2013 names; AffectNet's `contempt` has no FER2013 counterpart."""


def fer_columns(classes: tuple[str, ...]) -> tuple[list[int], list[str]]:
    """(column of each FER2013 emotion in `classes`, in FER2013 order; the classes left over).

    For HSEmotion's 8 AffectNet classes: ([0, 2, 3, 4, 6, 7, 5], ["contempt"]). A class set that lacks
    one of the seven is a ValueError naming it.
    """
    fer_of = {AFFECTNET_TO_FER.get(c, c): i for i, c in enumerate(classes)}
    missing = [name for name in FER2013_EMOTIONS if name not in fer_of]
    if missing:
        raise ValueError(f"classes {classes} have no column for {', '.join(missing)}")
    columns = [fer_of[name] for name in FER2013_EMOTIONS]
    return columns, [c for i, c in enumerate(classes) if i not in columns]
