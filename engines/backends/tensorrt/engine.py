"""TensorRT engines built from the fused ONNX graph, cached under `store.derived_dir / "trt"`.

An engine only runs on the TensorRT version and GPU it was built for, so its cache entry is named by
an `EngineKey`: ONNX sha256 + TensorRT version + GPU name + compute capability + precision + batch
profile (min/opt/max) + workspace. Each engine file has a JSON sidecar holding its key and the engine's
sha256; an engine whose sidecar is missing or names another key (stale, copied from elsewhere, half
written), whose bytes no longer hash to the recorded sha256 (a flipped byte deserializes fine and computes
wrong numbers) or that fails to deserialize is rebuilt, never loaded. Files are written to a temporary name
and moved into place, mode 0644 (engine first, sidecar last: a sidecar always describes a complete engine).

The cache logic takes the builder and the deserializer as callables, so it is tested without
TensorRT; `build_serialized` is the real builder (TensorRT 10 Python API, imported when called).
fp32 engines are built without TF32 (TensorRT's default would round matmul/conv inputs to 10-bit
mantissas); fp16 needs `BuilderFlag.FP16`, which TensorRT 11 removed (the extra pins tensorrt<11).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engines.backends.base import PRECISIONS
from engines.errors import BackendUnavailable, EmostreamError
from engines.files import write_atomic

ENGINE_FORMAT = "emostream-trt-v3"
"""Bump when the build recipe changes in a way the key's other fields do not capture
(v2: fp32 engines are built without TF32; v3: sidecars record the engine's sha256)."""
SHA256_FIELD = "engine_sha256"


class EngineBuildError(BackendUnavailable):
    """TensorRT could not parse the graph or build (or load) an engine from it.

    A BackendUnavailable, so `--backend auto` goes on to the next backend; asked for by name, the
    user sees this one-line message.
    """


@dataclass(frozen=True)
class BuildOptions:
    """What the user chooses: precision, batch profile (1..max, tuned for opt) and workspace (MiB)."""

    precision: str = "fp16"
    max_batch: int = 128
    opt_batch: int = 32
    workspace_mb: int = 1024

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EmostreamError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.max_batch < 1:
            raise EmostreamError(f"max batch must be >= 1, got {self.max_batch}")
        if self.opt_batch < 1:
            raise EmostreamError(f"optimum batch must be >= 1, got {self.opt_batch}")
        if self.workspace_mb < 1:
            raise EmostreamError(f"workspace must be >= 1 MiB, got {self.workspace_mb}")

    @property
    def profile(self) -> tuple[int, int, int]:
        """(min, opt, max) batch of the optimisation profile; opt is clipped to max."""
        return (1, min(self.opt_batch, self.max_batch), self.max_batch)


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on; its digest names the cache entry."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple[int, int, int]
    workspace_mb: int
    format: str = ENGINE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "profile": list(self.profile)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data) != fields:
            raise ValueError(f"an engine key has the fields {sorted(fields)}, got {sorted(data)}")
        return cls(**{**data, "profile": tuple(data["profile"])})

    def digest(self) -> str:
        """sha256 (hex) of the key's JSON."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def effective_precision(requested: str, has_fast_fp16: bool) -> str:
    """fp16 only where the GPU runs it fast; otherwise the engine is fp32 (and keyed as such)."""
    return "fp16" if requested == "fp16" and has_fast_fp16 else "fp32"


def make_key(onnx_sha256: str, options: BuildOptions, trt_version: str, gpu: tuple[str, str]) -> EngineKey:
    """The key of the engine `options` give for this graph, TensorRT version and (GPU name, capability)."""
    return EngineKey(
        onnx_sha256=onnx_sha256,
        trt_version=trt_version,
        gpu_name=gpu[0],
        compute_capability=gpu[1],
        precision=options.precision,
        profile=options.profile,
        workspace_mb=options.workspace_mb,
    )


@dataclass(frozen=True)
class CachedEngine:
    """A loaded engine, where it lives, its key, and whether it was built just now."""

    engine: Any
    path: Path
    key: EngineKey
    built: bool


def _try_deserialize(deserialize: Callable[[bytes], Any], data: bytes) -> Any:
    """The engine (or timing cache), or None when the bytes do not deserialize (TensorRT returns
    None or raises)."""
    try:
        return deserialize(data)
    except Exception:
        return None


class EngineCache:
    """Engine files under `root` (normally store.derived_dir / "trt"), one per EngineKey."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def engine_path(self, key: EngineKey) -> Path:
        return self.root / f"fused-{key.digest()[:24]}.engine"

    @staticmethod
    def sidecar_path(engine_path: Path) -> Path:
        return engine_path.with_suffix(".json")

    def timing_cache_path(self, key: EngineKey) -> Path:
        """Timing cache shared by every engine for one TensorRT version on one GPU model."""
        ident = json.dumps([key.trt_version, key.gpu_name, key.compute_capability])
        return self.root / f"timing-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.cache"

    def recorded_key(self, engine_path: Path) -> EngineKey | None:
        """The key in the engine's sidecar, or None if it is missing or unreadable."""
        return self._recorded(engine_path)[0]

    def _recorded(self, engine_path: Path) -> tuple[EngineKey | None, str | None]:
        """(key, engine sha256) from the sidecar; (None, None) if it is missing or unreadable."""
        try:
            data = json.loads(self.sidecar_path(engine_path).read_text())
            sha = data.pop(SHA256_FIELD, None)
            return EngineKey.from_dict(data), sha if isinstance(sha, str) else None
        except (OSError, ValueError, TypeError, AttributeError):
            return None, None

    def load_or_build(
        self,
        key: EngineKey,
        build: Callable[[EngineKey], bytes],
        deserialize: Callable[[bytes], Any],
    ) -> CachedEngine:
        """The engine for `key`: loaded when the cached file matches it, else built, saved, loaded."""
        path = self.engine_path(key)
        recorded, sha = self._recorded(path) if path.is_file() else (None, None)
        if recorded == key and sha is not None:
            data = path.read_bytes()
            if hashlib.sha256(data).hexdigest() == sha:
                engine = _try_deserialize(deserialize, data)
                if engine is not None:
                    return CachedEngine(engine, path, key, built=False)
        data = build(key)
        engine = deserialize(data)
        if engine is None:
            raise EngineBuildError(f"{path.name}: TensorRT built an engine it cannot deserialize")
        write_atomic(path, data)
        sidecar = {**key.to_dict(), SHA256_FIELD: hashlib.sha256(data).hexdigest()}
        write_atomic(self.sidecar_path(path), json.dumps(sidecar, indent=1).encode())
        return CachedEngine(engine, path, key, built=True)


def gpu_identity() -> tuple[str, str]:
    """(name, "major.minor" compute capability) of CUDA device 0, via torch or else pycuda."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return torch.cuda.get_device_name(0), f"{major}.{minor}"
    except ImportError:
        pass
    import pycuda.driver as cuda

    cuda.init()
    device = cuda.Device(0)
    major, minor = device.compute_capability()
    return device.name(), f"{major}.{minor}"


def _parse(parser: Any, onnx_path: Path) -> None:
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)).replace("\n", " ") for i in range(parser.num_errors)]
        raise EngineBuildError(f"{onnx_path}: TensorRT's ONNX parser refused it: {'; '.join(errors)[:300]}")


def fp16_flag(trt: Any) -> Any:
    """trt.BuilderFlag.FP16, or a one-line EngineBuildError where this TensorRT has none (11 and later)."""
    flag = getattr(trt.BuilderFlag, "FP16", None)
    if flag is None:
        raise EngineBuildError(
            f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (removed in TensorRT 11): ask for "
            'precision fp32, or install TensorRT 10 with pip install "emostream[tensorrt]"'
        )
    return flag


def set_precision(trt: Any, config: Any, precision: str) -> None:
    """fp16: FP16 on. fp32: TF32 off (TensorRT turns it on by default), so fp32 means fp32."""
    if precision == "fp16":
        config.set_flag(fp16_flag(trt))
    elif getattr(trt.BuilderFlag, "TF32", None) is not None:
        config.clear_flag(trt.BuilderFlag.TF32)


def use_timing_cache(config: Any, path: Path) -> None:
    """Give the builder the timing cache saved at `path`, or an empty one when there is none or
    TensorRT refuses it (a corrupt blob: `create_timing_cache` returns None or raises)."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = _try_deserialize(config.create_timing_cache, blob) if blob else None
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _configure(trt: Any, builder: Any, network: Any, key: EngineKey, timing_cache: Path) -> Any:
    """The builder config for `key`: workspace, precision flags, batch profile, timing cache."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, key.workspace_mb << 20)
    set_precision(trt, config, key.precision)
    crops = network.get_input(0)  # "crops_bgr" (N, S, S, 3) uint8: only the batch axis is dynamic
    tail = tuple(crops.shape)[1:]
    profile = builder.create_optimization_profile()
    profile.set_shape(crops.name, *((n, *tail) for n in key.profile))
    config.add_optimization_profile(profile)
    use_timing_cache(config, timing_cache)
    return config


def build_serialized(onnx_path: Path, key: EngineKey, timing_cache: Path, logger: Any) -> bytes:
    """Parse `onnx_path` and build a serialized engine for `key` (TensorRT 10); timing cache reused."""
    import tensorrt as trt

    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    _parse(parser, onnx_path)
    config = _configure(trt, builder, network, key, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    saved = config.get_timing_cache()
    if saved is not None:
        write_atomic(timing_cache, bytes(saved.serialize()))
    return bytes(serialized)


def ensure_engine(onnx_path: Path, cache_root: Path, options: BuildOptions) -> tuple[CachedEngine, Any]:
    """(cached engine, runtime) for the graph at `onnx_path`: loaded from the cache or built now."""
    import tensorrt as trt

    from engines.store.store import sha256_file

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    fast_fp16 = getattr(builder, "platform_has_fast_fp16", True)  # deprecated late in TensorRT 10
    precision = effective_precision(options.precision, fast_fp16)
    if precision == "fp16":
        fp16_flag(trt)  # TensorRT 11 has none: say so before any work
    options = dataclasses.replace(options, precision=precision)
    key = make_key(sha256_file(onnx_path), options, trt.__version__, gpu_identity())
    cache = EngineCache(cache_root)
    runtime = trt.Runtime(logger)
    cached = cache.load_or_build(
        key,
        lambda k: build_serialized(onnx_path, k, cache.timing_cache_path(k), logger),
        runtime.deserialize_cuda_engine,
    )
    return cached, runtime
