"""The one interface every inference backend offers to the pipeline."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
"""The precisions a GPU backend (torch, TensorRT) can run the net in; onnxruntime on the CPU is fp32."""


@runtime_checkable
class Backend(Protocol):
    """Runs the fused net: (N,S,S,3) uint8 BGR crops -> {output name: (N,...) array}."""

    name: str

    def run(self, crops_bgr: np.ndarray) -> dict[str, np.ndarray]: ...


class NetSource(Protocol):
    """What a backend is built from: the fused net as an ONNX file and/or a torch module."""

    @property
    def onnx_path(self) -> Path: ...

    def torch_module(self) -> Any: ...


CPUS_ENV = "EMOSTREAM_CPUS"
"""Caps `usable_cpus` for this process: a distributed worker's share of its node (Ray sets no affinity)."""


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask where the OS has one (a container's cpuset, a
    `taskset`), which `os.cpu_count()` ignores; at most $EMOSTREAM_CPUS when that is set."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    cap = os.environ.get(CPUS_ENV, "")
    return max(1, min(cpus, int(cap))) if cap.isdigit() else cpus
