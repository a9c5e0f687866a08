"""Engines: how the units of a many-input job (a video to run, a clip to extract features from) are spread
over workers. One small Protocol, chosen by name (`ENGINES`); Ray is imported only when it is chosen.

A `Work` says what a worker builds once (`setup`: the analyzer, so models load once per worker, not once
per video) and what one unit is (`run`: one video from start to end, so tracking state never splits). An
`Engine` maps a work over the units: `LocalEngine` one after another in this process, `RayEngine`
(`ray_engine.py`) over Ray actors, yielding results as they finish (any order).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from engines.errors import EmostreamError

LOCAL, RAY = "local", "ray"
ENGINES: tuple[str, ...] = (LOCAL, RAY)
RAY_INSTALL_HINT = 'pip install "emostream[ray]"'


class Work(Protocol):
    """One kind of unit. `setup` runs once per worker (it may raise `EmostreamError`: the job cannot start,
    one line); `run` never raises for a bad unit (the error is its result), only `EmostreamError` to end the
    job; `lost` is the result of a unit whose worker died twice; `close` ends the worker."""

    def setup(self) -> Any: ...

    def run(self, state: Any, *task: Any) -> Any: ...

    def lost(self, task: tuple, why: str) -> Any: ...

    def close(self, state: Any) -> None: ...


class Engine(Protocol):
    """Runs `work` over `tasks` (argument tuples of `work.run`), yielding each unit's result."""

    def map(self, work: Work, tasks: Iterable[tuple]) -> Iterator[Any]: ...


class LocalEngine:
    """Runs the units one after another in this process, with one worker state for all of them."""

    def map(self, work: Work, tasks: Iterable[tuple]) -> Iterator[Any]:
        state = work.setup()
        try:
            for task in tasks:
                yield work.run(state, *task)
        finally:
            work.close(state)


def distributed_engine(
    name: str, *, address: str | None = None, workers: int | None = None, backend: str = "auto"
) -> Engine | None:
    """The engine `name` spreads work with beyond this process: None for `local` (the caller runs on this
    machine in its own way: one process, or its process pool). Ray is imported here, only for `ray`; a
    missing Ray is one line naming the extra to install."""
    if name not in ENGINES:
        raise EmostreamError(f"unknown engine {name!r}; valid: {', '.join(ENGINES)}")
    if workers is not None and workers < 1:
        raise EmostreamError(f"--workers must be >= 1, got {workers}")
    if name == LOCAL:
        if address is not None:
            raise EmostreamError("--ray-address needs --engine ray")
        return None
    try:
        from pipeline.distributed.ray_engine import RayEngine
    except ImportError as e:
        if (e.name or "ray").split(".")[0] != "ray":
            raise
        raise EmostreamError(f"--engine ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None
    return RayEngine(address=address, workers=workers, backend=backend)


def resolved(path: str, cwd: str | None) -> str:
    """`path` as a worker elsewhere must open it: relative paths joined to the driver's folder `cwd` (a
    worker's own folder differs on another node); URLs and absolute paths as they are."""
    if cwd is None or "://" in path or os.path.isabs(path):
        return path
    return os.path.join(cwd, path)


def portable_config(config):
    """An AnalyzerConfig whose files (--models-dir, --head) are absolute, for workers on other nodes."""
    paths = {
        k: os.path.abspath(v) for k in ("models_dir", "extra_head") if (v := getattr(config, k)) is not None
    }
    return dataclasses.replace(config, **paths)
