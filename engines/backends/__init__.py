"""Inference backends behind one Protocol, created by name; each imported only when asked for.

`BACKENDS` lists the names; `_REGISTRY` maps each to "module:Class". The class is called as
`Class(net_source, **options)`. A backend whose module or runtime is missing raises
`BackendUnavailable` with a one-line reason.

`auto` (the CLI default) picks the first backend that can run here, in `AUTO_ORDER`: TensorRT
(importable and a CUDA GPU present), then torch on CUDA, then onnxruntime on CPU. The probes in
`_PROBES` say why a backend cannot run (a one-line reason) or None when it can; they are cheap and
never build anything, so `resolve_backend` can be tested with monkeypatched probes.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from typing import Any

from engines.backends.base import PRECISIONS, Backend, NetSource
from engines.errors import BackendUnavailable

BACKENDS: tuple[str, ...] = ("onnxruntime", "torch", "tensorrt")
AUTO = "auto"
BACKEND_CHOICES: tuple[str, ...] = (AUTO, *BACKENDS)
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "torch", "onnxruntime")
TENSORRT_INSTALL_HINT = 'pip install "emostream[tensorrt]"'
DEFAULT_PRECISION: dict[str, str] = {"onnxruntime": "fp32", "torch": "fp16", "tensorrt": "fp16"}
"""What each backend computes in unless told otherwise (on a GPU; torch on a CPU runs fp32, and TensorRT
falls back to fp32 on a GPU without fast fp16)."""

_REGISTRY: dict[str, str] = {
    "onnxruntime": "engines.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "engines.backends.torch_cuda:TorchCudaBackend",
    "tensorrt": "engines.backends.tensorrt.backend:TensorRTBackend",
}

__all__ = [
    "AUTO",
    "BACKENDS",
    "BACKEND_CHOICES",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "Backend",
    "NetSource",
    "backend_class",
    "chunk_bounds",
    "create_backend",
    "resolve_backend",
    "unavailable_reason",
]


def _probe_onnxruntime() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return "the onnxruntime package is not installed"
    return None


def _torch_cuda_reason() -> str | None:
    """Why torch cannot reach a CUDA GPU here, or None when it can."""
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if torch.version.cuda is None:
        return "this torch build is CPU-only (torch.version.cuda is None); install a CUDA build of torch"
    if not torch.cuda.is_available():
        return "no CUDA device visible to torch (torch.cuda.is_available() is False)"
    return None


def _pycuda_device_count() -> int:
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device.count()
    except Exception:
        return 0


def _probe_tensorrt() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return f"the tensorrt module is not installed; {TENSORRT_INSTALL_HINT}"
    except Exception as exc:  # a wheel without its libraries raises OSError and friends
        return f"the tensorrt module does not load ({type(exc).__name__}: {exc})".splitlines()[0]
    if _torch_cuda_reason() is None or _pycuda_device_count() > 0:
        return None
    return "no CUDA device found (neither torch nor pycuda sees an NVIDIA GPU)"


_PROBES: dict[str, Callable[[], str | None]] = {
    "onnxruntime": _probe_onnxruntime,
    "torch": _torch_cuda_reason,
    "tensorrt": _probe_tensorrt,
}


def unavailable_reason(name: str) -> str | None:
    """Why backend `name` cannot run on this machine (one line), or None when it can."""
    return _PROBES[name]()


def _unknown(name: str) -> BackendUnavailable:
    return BackendUnavailable(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)} (or auto)")


def resolve_backend(name: str) -> str:
    """`name` itself for a concrete backend; for `auto` the first in AUTO_ORDER that can run here."""
    if name != AUTO:
        if name not in _REGISTRY:
            raise _unknown(name)
        return name
    reasons = {}
    for candidate in AUTO_ORDER:
        reasons[candidate] = unavailable_reason(candidate)
        if reasons[candidate] is None:
            return candidate
    detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
    raise BackendUnavailable(f"no inference backend can run here ({detail})")


def backend_class(name: str) -> type:
    """The class registered for backend `name`, imported now."""
    if name not in _REGISTRY:
        raise _unknown(name)
    module_name, class_name = _REGISTRY[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BackendUnavailable(
                f"backend {name!r} is not available in this version yet; use one of: onnxruntime"
            ) from None
        raise BackendUnavailable(
            f"backend {name!r} needs the Python package {exc.name!r}, not installed"
        ) from None
    return getattr(module, class_name)


def chunk_bounds(n: int, max_batch: int) -> list[tuple[int, int]]:
    """[lo, hi) row ranges of at most `max_batch` rows covering `n` rows (batches above an engine's max)."""
    return [(lo, min(lo + max_batch, n)) for lo in range(0, n, max_batch)]


def _accepted(cls: type, options: dict[str, Any]) -> dict[str, Any]:
    """The options `cls` takes (auto passes each backend only what it understands)."""
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def create_backend(name: str, net_source: NetSource, **options: Any) -> Backend:
    """A ready backend named `name` (or the first that runs here, for `auto`) for `net_source`.

    With `auto`, a candidate whose probe passed but whose construction still raises
    BackendUnavailable (say, TensorRT refuses the graph) gives way to the next one.
    """
    if name != AUTO:
        cls = backend_class(resolve_backend(name))
        return cls(net_source, **_accepted(cls, options))
    failures = []
    for candidate in AUTO_ORDER[AUTO_ORDER.index(resolve_backend(AUTO)) :]:
        if unavailable_reason(candidate) is not None:
            continue
        try:
            cls = backend_class(candidate)
            return cls(net_source, **_accepted(cls, options))
        except BackendUnavailable as exc:
            failures.append(f"{candidate}: {exc}")
    raise BackendUnavailable(f"no inference backend can run here ({'; '.join(failures)})")
