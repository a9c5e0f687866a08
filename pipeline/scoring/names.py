"""The names the scoring commands accept: protocols and their classes, feature sets, classifiers.

Constants only, so that the CLI builds its parser from them without importing scikit-learn or PyAV.
"""

from __future__ import annotations

AFEW_CLASSES: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Neutral", "Sad", "Surprise")
VGAF_CLASSES: tuple[str, ...] = ("Positive", "Neutral", "Negative")
"""In label-number order: VGAF label 1 is Positive, 2 Neutral, 3 Negative."""

PROTOCOL_CLASSES: dict[str, tuple[str, ...]] = {"afew": AFEW_CLASSES, "vgaf": VGAF_CLASSES}
PROTOCOLS: tuple[str, ...] = tuple(PROTOCOL_CLASSES)

CLASSIFIERS: tuple[str, ...] = ("linearsvc", "logreg", "svc-rbf", "mlp", "zeroshot")
"""`score --classifier`: scikit-learn pipelines, or zeroshot (no training)."""
HEAD_CLASSIFIERS: tuple[str, ...] = ("logreg", "linearsvc")
"""`train-head --classifier`: linear heads only (few labels)."""
