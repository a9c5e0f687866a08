"""The model store: resolve a model name to a verified local file.

Order: a read-only mirror folder (`mirror_dir` or env EMOSTREAM_MODELS_DIR) -> the user cache
(`cache_dir` or env EMOSTREAM_CACHE_DIR, default ~/.cache/emostream) -> HTTPS download into the cache.
Every file is checked against its pinned sha256 each time a process first uses it (hashes remembered by
path, size and times, engines.store.hashes, so a warm start stays fast); a mismatch is an error, never a
silent fallback. Derived artefacts (ONNX exports, engines) live under `derived_dir`, keyed by their
sources' hashes. A cache folder that cannot be used (a file, read-only) gives way to a temporary one with
a one-line warning: the models may well be in the mirror.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from engines.errors import EmostreamWarning, ModelStoreError
from engines.store.download import download_verified, offline_hint
from engines.store.hashes import HashMemo, sha256_file
from engines.store.registry import MODELS, ModelSpec, get_spec

__all__ = ["ModelStore", "VerifyRow", "default_cache_dir", "sha256_file", "usable_dir"]
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"
"""Where the package keeps the weights it ships (the project's own trained nets)."""


def usable_dir(path: Path, what: str = "cache folder") -> Path:
    """`path`, created if needed, when files can be written in it; else a fresh temporary folder, with a
    one-line `EmostreamWarning` saying why (the run goes on, only without a lasting cache)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return path
    except OSError as e:
        why = "it is a file, not a folder" if path.exists() and not path.is_dir() else e.strerror or str(e)
        fallback = Path(tempfile.mkdtemp(prefix="emostream-cache-"))
        warnings.warn(
            EmostreamWarning(
                f"{what} {path} cannot be used ({why}); using {fallback} for this run "
                "(set EMOSTREAM_CACHE_DIR to a writable folder to keep the cache)"
            ),
            stacklevel=2,
        )
        return fallback


def default_cache_dir() -> Path:
    env = os.environ.get("EMOSTREAM_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "emostream"


@dataclass(frozen=True)
class VerifyRow:
    """One model's state on disk, as `ModelStore.verify` found it (never an exception for a bad file)."""

    name: str
    filename: str
    status: Literal["ok", "missing", "corrupt"]
    location: Literal["bundled", "mirror", "cache"] | None
    path: Path | None


class ModelStore:
    """Finds, verifies and (if allowed) downloads registered models."""

    def __init__(
        self, mirror_dir: str | Path | None = None, cache_dir: str | Path | None = None, download: bool = True
    ) -> None:
        mirror = mirror_dir if mirror_dir is not None else os.environ.get("EMOSTREAM_MODELS_DIR")
        self.mirror_dir = Path(mirror).expanduser() if mirror else None
        if self.mirror_dir is not None and not self.mirror_dir.is_dir():  # a typo must not mean "download"
            origin = "--models-dir" if mirror_dir is not None else "EMOSTREAM_MODELS_DIR"
            raise ModelStoreError(f"models mirror {self.mirror_dir} ({origin}): no such folder")
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.download = download
        self._usable = False
        self._hashes: HashMemo | None = None

    def usable_cache_dir(self) -> Path:
        """`cache_dir`, or the temporary folder that replaced it for this store (see `usable_dir`)."""
        if not self._usable:
            self.cache_dir, self._usable = usable_dir(self.cache_dir), True
        return self.cache_dir

    @property
    def derived_dir(self) -> Path:
        """Where converted artefacts (ONNX graphs, TensorRT engines) are cached."""
        return self.usable_cache_dir() / "derived"

    def file_sha256(self, path: Path) -> str:
        """sha256 of `path`, remembered by path, size and times across runs (engines.store.hashes)."""
        if self._hashes is None:  # the memo never creates the cache folder (a mirror-only run leaves none)
            self._hashes = HashMemo(self.cache_dir / "hashes.json")
        return self._hashes.sha256(path)

    def path(self, name: str) -> Path:
        """A verified local path for model `name` (mirror, then cache, then download)."""
        spec = get_spec(name)
        location, found = self._locate(spec)
        if spec.bundled:
            return self._bundled(spec, found)
        if location == "mirror":
            return self._checked(found, spec, "the mirror is read-only: replace it with the pinned file")
        if found is not None and (not self.download or self._is_good(found, spec)):
            return self._checked(found, spec, "delete it and fetch again, or put the pinned file there")
        if not self.download:
            raise ModelStoreError(
                f"model {spec.name} ({spec.filename}) is not in the mirror or the cache and downloading "
                f"is off; {offline_hint(spec, self._cache_models, self.mirror_dir)}"
            )
        # A corrupt cache entry is replaced by the verified download (os.replace), not deleted first:
        # another process may be replacing it at the same moment.
        return self._fetch(spec, self._cache_models / spec.filename)

    def fetch(self, names: list[str] | None = None) -> list[Path]:
        """Verified paths of `names` (default: every registered model), downloading only what is missing."""
        return [self.path(name) for name in (sorted(MODELS) if names is None else names)]

    def verify(self, names: list[str] | None = None) -> list[VerifyRow]:
        """Hash every file `names` resolve to (default: all) and report ok/missing/corrupt per model."""
        rows = []
        for name in sorted(MODELS) if names is None else names:
            spec = get_spec(name)
            location, found = self._locate(spec)
            status = "missing" if found is None else "ok" if self._is_good(found, spec, True) else "corrupt"
            rows.append(VerifyRow(name, spec.filename, status, location, found))
        return rows

    def list_rows(self) -> list[dict]:
        """One dict per model for `emostream models list`; `where` is presence only (no hashing)."""
        return [
            {
                "name": spec.name,
                "task": spec.task,
                "filename": spec.filename,
                "licence": spec.licence,
                "sha256": spec.sha256[:12],
                "where": self._locate(spec)[0] or "absent",
            }
            for spec in (MODELS[name] for name in sorted(MODELS))
        ]

    def sha256(self, name: str) -> str:
        return get_spec(name).sha256

    @property
    def _cache_models(self) -> Path:
        return self.cache_dir / "models"

    def _bundled(self, spec: ModelSpec, found: Path | None) -> Path:
        """The package's own copy of a bundled model, verified; missing or damaged means reinstalling."""
        if found is None:
            raise ModelStoreError(
                f"model {spec.name}: {BUNDLED_DIR / spec.filename} is missing from this installation; "
                "reinstall emostream"
            )
        return self._checked(found, spec, "reinstall emostream (its bundled weights are damaged)")

    def _locate(self, spec: ModelSpec) -> tuple[Literal["bundled", "mirror", "cache"] | None, Path | None]:
        """Where `spec`'s file is now, in lookup order (a mirror file shadows a cached one)."""
        if spec.bundled:
            path = BUNDLED_DIR / spec.filename
            return ("bundled", path) if path.is_file() else (None, None)
        if self.mirror_dir is not None and (self.mirror_dir / spec.filename).is_file():
            return "mirror", self.mirror_dir / spec.filename
        cached = self._cache_models / spec.filename
        return ("cache", cached) if cached.is_file() else (None, None)

    def _is_good(self, path: Path, spec: ModelSpec, rehash: bool = False) -> bool:
        """Whether `path` hashes to the pinned sha256 (`rehash`: read it now, whatever is remembered)."""
        return (sha256_file(path) if rehash else self.file_sha256(path)) == spec.sha256

    def _checked(self, path: Path, spec: ModelSpec, remedy: str) -> Path:
        """`path` if it is the pinned file, else a one-line error with both hashes and `remedy`."""
        actual = self.file_sha256(path)
        if actual != spec.sha256:
            raise ModelStoreError(
                f"{spec.filename} at {path} has sha256 {actual[:12]}…, expected {spec.sha256[:12]}… "
                f"(corrupt or not the pinned version of model {spec.name}); {remedy}"
            )
        return path

    def _fetch(self, spec: ModelSpec, dest: Path) -> Path:
        self.usable_cache_dir()
        dest = self._cache_models / spec.filename  # the cache may have moved to a temporary folder
        download_verified(spec, dest)  # checks length and sha256 while streaming
        return dest
