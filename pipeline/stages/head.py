"""The few-shot head stage: a head saved by `emostream train-head`, applied to every face at inference.

`load_head(FILE, config)` gives a `FaceHead` that the analyzer applies after the net: outputs["head"]
(N,K) probabilities and outputs["head_label"] (N,) class names. LinearSVC "probabilities" are a softmax
of its decision values. `face_features` is the per-face feature vector heads and clip scoring read.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from engines.errors import EmostreamError
from pipeline.config import AnalyzerConfig, model_set
from pipeline.errors import InputError
from pipeline.io.bundles import load_bundle

HEAD_KIND = "emostream-face-head"
NET_KEYS = ("models", "heads", "head_specs", "quality", "crop", "export_version", "features_version")
"""The part of a model set a per-face head depends on (not the detector or detect_every)."""

FEATURE_SETS = ("emotion", "fused")
FUSED_EXTRAS = (("gender", 1.0), ("age", 0.01), ("contempt", 1.0))
"""Scalar outputs appended to the fused vector when present, with their scale (age in years / 100, so it
does not outweigh the probabilities in an L2 norm)."""


def face_features(outputs: Mapping[str, np.ndarray], feature_set: str) -> np.ndarray:
    """(R,F) per-face feature rows: the 7 emotion probabilities, or (fused) the embedding, the emotion
    probabilities and the scalar outputs of FUSED_EXTRAS that are present. F follows the net's heads."""
    if feature_set not in FEATURE_SETS:
        raise EmostreamError(f"unknown feature set {feature_set!r}; valid: {', '.join(FEATURE_SETS)}")
    emotion = np.asarray(outputs["emotion"], np.float64)
    if feature_set == "emotion":
        return emotion
    parts = [np.asarray(outputs["embedding"], np.float64), emotion]
    parts += [np.asarray(outputs[k], np.float64)[:, None] * s for k, s in FUSED_EXTRAS if k in outputs]
    return np.concatenate(parts, axis=1)


def probabilities(model, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    d = model.decision_function(X)
    d = np.column_stack([np.zeros_like(d), d]) if d.ndim == 1 else d
    e = np.exp(d - d.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class FaceHead:
    """A trained head applied to the net's per-face outputs."""

    def __init__(self, bundle: dict, path: Path) -> None:
        self.path, self.pipeline, self.report = path, bundle["pipeline"], bundle["report"]
        self.net = bundle["net"]
        self.classes = np.asarray(self.report["classes"])
        self.feature_set = self.report["feature_set"]

    def outputs(self, outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{"head": (N,K) float32 probabilities, "head_label": (N,) class names} for N faces."""
        n = len(outputs["emotion"])
        if not n:
            return {"head": np.zeros((0, len(self.classes)), np.float32), "head_label": self.classes[:0]}
        probs = probabilities(self.pipeline, face_features(outputs, self.feature_set))
        return {"head": probs.astype(np.float32), "head_label": self.classes[probs.argmax(1)]}


def load_head(path: str | Path, config: AnalyzerConfig) -> FaceHead:
    """Load a head saved by `train_head`, refusing one trained on another net than `config`'s."""
    path = Path(path)
    bundle = load_bundle(path, HEAD_KIND, "head", "emostream train-head", 1, ("pipeline", "report", "net"))
    ms = model_set(config)
    saved, current = bundle["net"], {k: ms[k] for k in NET_KEYS}
    differ = [k for k in NET_KEYS if saved.get(k) != current[k]]
    if differ:
        raise InputError(
            f"{path}: head was trained on another net ({', '.join(differ)} differ; trained with heads "
            f"{','.join(saved.get('heads') or [])} quality {saved.get('quality')}, this run has heads "
            f"{','.join(current['heads'])} quality {current['quality']}); use the same --heads/--quality "
            "or retrain it"
        )
    return FaceHead(bundle, path)
