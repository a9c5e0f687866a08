"""Per-face features of whole clips through the real pipeline, in parallel over clips, cached on disk.

`extract_features(paths, config, workers=N)` runs detect -> track -> fused net on every clip that is not
in the cache yet: one process per worker, each with its own `FaceAnalyzer` and a share of the CPU threads.
Each clip's result (`ClipFeatures`: one row per face per frame with frame index, time, track id, box and
every net output) is saved as one compressed .npz named by the sha256 of the clip's bytes, of the
`model_set` (model sha256s, head specs, quality, detector, detect_every, coarse detection) and of the
inference backend and its precision, so re-runs and classifier sweeps never decode a video twice, and a
different model set or backend never reads stale features. An unreadable cache entry is extracted again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import EmostreamError
from pipeline.analyzer import AnalyzerConfig
from pipeline.feature_workers import run_extraction

FEATURES_VERSION = 1
"""Bump when what a cached clip holds, or how it is computed, changes."""

FEATURE_SETS = ("emotion", "fused")
FUSED_EXTRAS = (("gender", 1.0), ("age", 0.01), ("contempt", 1.0))
"""Scalar outputs appended to the fused vector when present, with their scale (age in years / 100, so it
does not outweigh the probabilities in an L2 norm)."""

DETECTOR_MODELS = {"yunet": "yunet", "blazeface": "blazeface_short", "blazeface-full": "blazeface_full"}
SKIPPED_OUTPUTS = ("emotion_smooth", "head", "head_label")  # per-run state or a few-shot head: not features

OnClip = Callable[[Path, str], None]
"""Progress callback: (clip path, "cached" | "extracted" | "failed"), called once per clip in the parent."""


@dataclass(frozen=True, eq=False)
class ClipFeatures:
    """Every face row of one clip: frame (R,), time_s (R,), track_id (R,), xyxy (R,4), outputs (R,...)."""

    frame: np.ndarray
    time_s: np.ndarray
    track_id: np.ndarray
    xyxy: np.ndarray
    outputs: dict[str, np.ndarray]
    frames: int  # frames decoded
    decode_errors: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def from_batches(cls, batches: list, frames: int, decode_errors: int = 0) -> ClipFeatures:
        keys = [k for k in (batches[0].outputs if batches else {}) if k not in SKIPPED_OUTPUTS]
        rows = [b for b in batches if len(b)]

        def cat(get, empty) -> np.ndarray:
            return np.concatenate([get(b) for b in rows]) if rows else empty

        outputs = {k: cat(lambda b, k=k: b.outputs[k], np.zeros((0,), np.float32)) for k in keys}
        return cls(
            frame=cat(lambda b: np.full(len(b), b.frame_index, np.int64), np.zeros(0, np.int64)),
            time_s=cat(lambda b: np.full(len(b), b.time_s, np.float64), np.zeros(0)),
            track_id=cat(lambda b: b.track_ids, np.zeros(0, np.int64)),
            xyxy=cat(lambda b: b.xyxy, np.zeros((0, 4), np.float32)),
            outputs=outputs,
            frames=frames,
            decode_errors=decode_errors,
        )

    def save(self, path: Path) -> None:
        """One compressed .npz, written to a temporary name, synced to disk and renamed into place (a
        crash leaves the old entry or none, never half a file); the temporary file goes if writing fails."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}-{os.getpid()}.tmp.npz")
        arrays = {f"out_{k}": v for k, v in self.outputs.items()}
        meta = json.dumps({"frames": self.frames, "decode_errors": self.decode_errors})
        rows = {"frame": self.frame, "time_s": self.time_s, "track_id": self.track_id, "xyxy": self.xyxy}
        try:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, meta=np.array(meta), **rows, **arrays)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> ClipFeatures:
        """Raises (OSError, ValueError, zipfile errors, ...) when the file is not a whole clip entry."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            outputs = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
            cf = cls(z["frame"], z["time_s"], z["track_id"], z["xyxy"], outputs, **meta)
        if any(len(a) != len(cf) for a in (cf.time_s, cf.track_id, cf.xyxy, *outputs.values())):
            raise ValueError(f"{path}: arrays of different lengths")
        return cf


def face_features(outputs: dict[str, np.ndarray], feature_set: str) -> np.ndarray:
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


def model_set(config: AnalyzerConfig, store=None) -> dict:
    """What makes a clip's features besides its bytes (JSON-ready): the cache and classifiers key on it."""
    from engines.export import EXPORT_VERSION
    from engines.heads import head_spec
    from engines.multitask import NetConfig
    from engines.store import ModelStore

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


def model_set_key(ms: dict) -> str:
    return hashlib.sha256(json.dumps(ms, sort_keys=True).encode()).hexdigest()


def runtime_of(config: AnalyzerConfig) -> dict:
    """The backend that will run the net ("auto" resolved on this machine) and its precision: part of the
    cache key (GPU fp16 features never stand in for CPU fp32 ones), not of the model set a classifier
    checks (a classifier trained on one backend may predict on another)."""
    from engines.backends import DEFAULT_PRECISION

    backend = _resolved_backend(config.backend)
    return {"backend": backend, "precision": DEFAULT_PRECISION.get(backend, "unknown")}


@functools.cache
def _resolved_backend(name: str) -> str:
    from engines.backends import resolve_backend

    return resolve_backend(name)


def clip_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    from engines.store import default_cache_dir as store_cache

    return store_cache() / "features"


@dataclass
class ExtractResult:
    """Features of every clip that could be read, the reason for each that could not, and what it cost."""

    features: dict[Path, ClipFeatures]
    failed: dict[Path, str]
    model_set: dict
    runtime: dict = dataclasses.field(default_factory=dict)
    digests: dict[Path, str] = dataclasses.field(default_factory=dict)  # sha256 of each clip's bytes
    cached: int = 0
    extracted: int = 0


def extract_features(
    paths: Iterable[Path],
    config: AnalyzerConfig,
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    on_clip: OnClip | None = None,
) -> ExtractResult:
    """Features of every clip in `paths` (cache, else the pipeline); unreadable clips land in `failed`."""
    config = _feature_config(config)
    ms, runtime = model_set(config), runtime_of(config)
    key = model_set_key({**ms, **runtime})
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    result = ExtractResult({}, {}, ms, runtime)
    todo: dict[str, list[Path]] = {}  # sha256 -> paths with those bytes
    notify = on_clip or (lambda path, status: None)
    for path in dict.fromkeys(Path(p) for p in paths):
        try:
            digest = clip_sha256(path)
        except OSError as e:
            result.failed[path] = f"{path}: cannot be read ({e.strerror or e})"
            notify(path, "failed")
            continue
        result.digests[path] = digest
        cf = _load_cached(_cache_path(cache, digest, key))
        if cf is not None:
            result.features[path] = cf
            result.cached += 1
            notify(path, "cached")
        else:
            todo.setdefault(digest, []).append(path)
    for digest, outcome in run_extraction(todo, config, workers):
        if isinstance(outcome, ClipFeatures):
            outcome.save(_cache_path(cache, digest, key))
            result.extracted += 1
        for path in todo[digest]:
            if isinstance(outcome, ClipFeatures):
                result.features[path] = outcome
            else:
                result.failed[path] = outcome
            notify(path, "extracted" if isinstance(outcome, ClipFeatures) else "failed")
    return result


def _feature_config(config: AnalyzerConfig) -> AnalyzerConfig:
    """The analyzer config features are made with: no few-shot head (features are what heads train on), and
    the full graph on every face (the fused embedding of each frame, not per-track attribute refresh)."""
    return dataclasses.replace(config, extra_head=None, attributes_every_s=0.0)


def _cache_path(cache: Path, digest: str, key: str) -> Path:
    return cache / digest[:2] / f"{digest}-{key[:16]}.npz"


def _load_cached(path: Path) -> ClipFeatures | None:
    """The cached features at `path`; None when there are none or the entry is damaged (emptied,
    truncated, not an npz): a damaged entry is removed so the clip is extracted and saved again."""
    if not path.is_file():
        return None
    try:
        return ClipFeatures.load(path)
    except Exception:
        with contextlib.suppress(OSError):
            path.unlink()
        return None
