"""One `emostream score` run as data: the job it was asked for, and one row per clip as scored."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.config import AnalyzerConfig
from pipeline.scoring.datasets import Clip


@dataclass(frozen=True)
class ScoreJob:
    """One `emostream score` run; with `model` set, protocol features, classifier and analyzer settings
    come from the saved classifier and `train_split` is not used."""

    dataset: Path
    protocol: str
    eval_split: str
    out_dir: Path
    train_split: str | None = None
    features: str = "fused"
    classifier: str = "logreg"
    model: Path | None = None
    workers: int | None = 1  # None: with engine "ray", one worker per CPU of the cluster
    cache_dir: Path | None = None
    analyzer: AnalyzerConfig = dataclasses.field(default_factory=AnalyzerConfig)
    overwrite: bool = False
    engine: str = "local"  # pipeline/distributed: "local" (this machine, `workers` processes) or "ray"
    ray_address: str | None = None


@dataclass
class ClipRow:
    """One clip as scored: status "ok" | "no_face" | "unreadable", its vector, and its prediction."""

    clip: Clip
    status: str
    vector: np.ndarray | None = None
    faces: int = 0
    frames: int = 0
    error: str = ""
    predicted: str = ""
    scores: np.ndarray | None = None
