"""Inference backends behind one Protocol, created by name; each imported only when asked for.

`BACKENDS` lists the names; `_REGISTRY` maps each to "module:Class". The class is called as
`Class(net_source, **options)`. A backend whose module or runtime is missing raises
`BackendUnavailable` with a one-line reason.
"""

from __future__ import annotations

import importlib
from typing import Any

from engines.backends.base import Backend, NetSource
from engines.errors import BackendUnavailable

BACKENDS: tuple[str, ...] = ("onnxruntime", "torch", "tensorrt")

_REGISTRY: dict[str, str] = {
    "onnxruntime": "engines.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "engines.backends.torch_cuda:TorchCudaBackend",
    "tensorrt": "engines.backends.tensorrt:TensorRTBackend",
}

__all__ = ["BACKENDS", "Backend", "NetSource", "backend_class", "create_backend"]


def backend_class(name: str) -> type:
    """The class registered for backend `name`, imported now."""
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}; valid backends: {', '.join(BACKENDS)}")
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


def create_backend(name: str, net_source: NetSource, **options: Any) -> Backend:
    """A ready backend named `name` running the net described by `net_source`."""
    return backend_class(name)(net_source, **options)
