"""What an analyzer is configured as, and the identity of what it outputs.

`AnalyzerConfig` is the one set of choices every job (run, live, score, train-head) passes down;
`model_set(config)` names everything besides a clip's bytes that decides its features (model sha256s,
head specs, quality, detector, scheduling): the feature cache, classifiers and few-shot heads key on it.
Light on purpose: the CLI builds its parser from the names here without loading any engine.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from engines.nets.heads import DEFAULT_QUALITY

DETECTOR_MODELS: dict[str, str] = {
    "yunet": "yunet",
    "blazeface": "blazeface_short",
    "blazeface-full": "blazeface_full",
}
"""Detector name -> the store model it runs; the keys are the valid `--detector` values."""

FEATURES_VERSION = 2
"""Bump when what a cached clip holds, or how it is computed, changes (2: the tracker's second stage adds
low-score faces that continue a track)."""

MIN_FACE_PX = 24
"""Default `--min-face`: the shorter box side, in frame pixels, a face needs to be inferred."""


@dataclass(frozen=True)
class AnalyzerConfig:
    detector: str = "yunet"
    detect_every: int = 3  # detection is the costliest stage; the tracker carries boxes in between
    heads: tuple[str, ...] = ("emotion", "gender", "age")
    quality: str = DEFAULT_QUALITY
    backend: str = "auto"
    models_dir: str | None = None
    smoothing_s: float = 0.5
    coarse_detection: bool = True  # detect at a lower resolution while every tracked face is large
    attributes_every_s: float = 1.0  # gender/age per track this often (0: every face, every frame)
    threads: int | None = 1  # CPU threads for inference; 1 measured best beside decode/detect/encode threads
    extra_head: str | None = None  # few-shot head file (`emostream train-head`): outputs head, head_label
    min_face_px: int = MIN_FACE_PX  # smaller faces are tracked and drawn, not inferred (docs/tracking.md)
    cut_detection: bool = True  # end every track at a shot boundary (stages/shots.py)
    reid_window_s: float | None = None  # how long a lost/cut id may come back (0: never; None: the net's)
    track_min_hits: int = 2  # detections a track needs for an id (a photo's faces get one at once)

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.min_face_px < 0 or self.track_min_hits < 1 or (self.reid_window_s or 0) < 0:
            raise ValueError("min_face_px and reid_window_s must be >= 0, track_min_hits >= 1")


def model_set(config: AnalyzerConfig, store=None) -> dict:
    """What makes a clip's features besides its bytes (JSON-ready): the cache and classifiers key on it."""
    from engines.convert.export import EXPORT_VERSION
    from engines.multitask import NetConfig
    from engines.nets.heads import head_spec
    from engines.store.store import ModelStore

    store = store or ModelStore(mirror_dir=config.models_dir)
    net = NetConfig(heads=config.heads, quality=config.quality)
    specs = [head_spec(h, net.quality) for h in net.heads]
    models = dict.fromkeys(m for s in specs for m in s.models)
    detector_model = DETECTOR_MODELS.get(config.detector)
    ms = {
        "models": [[m, store.sha256(m)] for m in models],
        "heads": list(net.heads),
        "head_specs": [dataclasses.asdict(s) for s in specs],
        "quality": net.quality,
        "crop": [net.crop_size, net.crop_scale],
        "detector": config.detector,
        "detector_sha256": store.sha256(detector_model) if detector_model else None,
        "detect_every": config.detect_every,
        "coarse_detection": config.coarse_detection,
        "export_version": EXPORT_VERSION,
        "features_version": FEATURES_VERSION,
    }
    return json.loads(json.dumps(ms))  # tuples become lists: equal to what a saved classifier holds
