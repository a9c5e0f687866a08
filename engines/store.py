"""The model store: resolve a model name to a verified local file.

Order: a read-only mirror folder (`mirror_dir` or env EMOSTREAM_MODELS_DIR) -> the user cache
(`cache_dir` or env EMOSTREAM_CACHE_DIR, default ~/.cache/emostream) -> HTTPS download into the cache.
Every file is checked against its pinned sha256; a mismatch is an error, never a silent fallback.
Derived artefacts (ONNX exports, engines) live under `derived_dir`, keyed by their sources' hashes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from engines.errors import ModelStoreError
from engines.registry import ModelSpec, get_spec

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    env = os.environ.get("EMOSTREAM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emostream"


class ModelStore:
    """Finds, verifies and (if allowed) downloads registered models."""

    def __init__(
        self, mirror_dir: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True
    ) -> None:
        mirror = mirror_dir if mirror_dir is not None else os.environ.get("EMOSTREAM_MODELS_DIR")
        self.mirror_dir = Path(mirror).expanduser() if mirror else None
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.download = download
        self._verified: dict[Path, str] = {}

    @property
    def derived_dir(self) -> Path:
        """Where converted artefacts (ONNX graphs, TensorRT engines) are cached."""
        return self.cache_dir / "derived"

    def path(self, name: str) -> Path:
        """A verified local path for model `name` (mirror, then cache, then download)."""
        spec = get_spec(name)
        if self.mirror_dir is not None and (self.mirror_dir / spec.filename).is_file():
            return self._checked(self.mirror_dir / spec.filename, spec, source="mirror")
        cached = self.cache_dir / "models" / spec.filename
        if cached.is_file():
            return self._checked(cached, spec, source="cache")
        if not self.download:
            raise ModelStoreError(_offline_hint(spec, self, "not in the mirror or the cache"))
        return self._fetch(spec, cached)

    def sha256(self, name: str) -> str:
        return get_spec(name).sha256

    def _checked(self, path: Path, spec: ModelSpec, source: str) -> Path:
        if self._verified.get(path) == spec.sha256:
            return path
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise ModelStoreError(
                f"{spec.filename} in the {source} ({path}) has sha256 {actual[:12]}…, expected "
                f"{spec.sha256[:12]}…: the file is corrupt or not the pinned version; delete it and fetch again"
            )
        self._verified[path] = spec.sha256
        return path

    def _fetch(self, spec: ModelSpec, dest: Path) -> Path:
        from engines.download import download_verified

        download_verified(spec, dest)
        return self._checked(dest, spec, source="cache")


def _offline_hint(spec: ModelSpec, store: ModelStore, problem: str) -> str:
    where = store.mirror_dir or "$EMOSTREAM_MODELS_DIR"
    return (
        f"model {spec.name} ({spec.filename}) is {problem}: download it from {spec.url} "
        f"and put it in {where} (or {store.cache_dir / 'models'})"
    )
