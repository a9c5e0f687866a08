"""Per-face features of whole clips through the real pipeline, in parallel over clips, cached on disk.

`extract_features(paths, config, workers=N)` runs detect -> track -> fused net on every clip that is not
in the cache yet: one process per worker, each with its own `FaceAnalyzer` and a share of the CPU threads
(or, with `engine=`, one clip per worker over that engine, e.g. Ray actors across a cluster; the cache is
written here, by the driver, from the features the workers send back).
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import AnalyzerConfig, model_set
from pipeline.distributed.engine import Engine
from pipeline.scoring.clip_features import ClipFeatures
from pipeline.scoring.feature_workers import run_extraction, started_runtime

__all__ = ["ExtractResult", "extract_features", "model_set_key", "runtime_of", "started_runtime"]

OnClip = Callable[[Path, str], None]
"""Progress callback: (clip path, "cached" | "extracted" | "failed"), called once per clip in the parent."""


def model_set_key(ms: dict) -> str:
    return hashlib.sha256(json.dumps(ms, sort_keys=True).encode()).hexdigest()


def runtime_of(config: AnalyzerConfig) -> dict:
    """The backend expected to run the net ("auto" resolved by probing this machine) and its precision:
    what cached features are looked up under. Features are saved under the backend that actually started
    (`started_runtime`): `auto` falls through when a probed backend fails to start, and GPU fp16 features
    must never stand in for CPU fp32 ones. Part of the cache key, not of the model set a classifier checks
    (a classifier trained on one backend may predict on another)."""
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
    from engines.store.store import default_cache_dir as store_cache

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
    engine: Engine | None = None,
) -> ExtractResult:
    """Features of every clip in `paths` (cache, else the pipeline); unreadable clips land in `failed`.
    `engine` (pipeline/distributed) spreads the clips to extract over its workers instead of `workers`
    processes on this machine."""
    from engines.store.store import usable_dir

    config = _feature_config(config)
    ms, runtime = model_set(config), runtime_of(config)
    key = model_set_key({**ms, **runtime})
    cache = usable_dir(Path(cache_dir) if cache_dir else default_cache_dir(), "feature cache folder")
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
    for digest, outcome, started in run_extraction(todo, config, workers, engine):
        if isinstance(outcome, ClipFeatures):
            result.runtime = started  # what made these features, which may not be what probing expected
            outcome.save(_cache_path(cache, digest, model_set_key({**ms, **started})))
            result.extracted += 1
        for path in todo[digest]:
            if isinstance(outcome, ClipFeatures):
                result.features[path] = outcome
            else:  # clips with the same bytes share one attempt; each message names its own clip
                result.failed[path] = outcome.replace(str(todo[digest][0]), str(path))
            notify(path, "extracted" if isinstance(outcome, ClipFeatures) else "failed")
    return result


def _feature_config(config: AnalyzerConfig) -> AnalyzerConfig:
    """The analyzer config features are made with: no few-shot head (features are what heads train on), and
    the full graph on every face, however small (the fused embedding of each frame, not per-track
    attribute refresh)."""
    return dataclasses.replace(config, extra_head=None, attributes_every_s=0.0, min_face_px=0)


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
