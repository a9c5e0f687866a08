"""Turning the net's arrays into labels: small pure functions, no engine state."""

from __future__ import annotations

import numpy as np

from engines.registry import FER2013_EMOTIONS

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


def emotion_dict(probs_row: np.ndarray) -> dict[str, float]:
    """{emotion name: probability} for one face's (7,) row, in FER2013 order."""
    row = np.asarray(probs_row, np.float32).reshape(-1)
    if len(row) != len(FER2013_EMOTIONS):
        raise ValueError(f"an emotion row has {len(FER2013_EMOTIONS)} values, got {len(row)}")
    return {name: float(p) for name, p in zip(FER2013_EMOTIONS, row, strict=True)}
