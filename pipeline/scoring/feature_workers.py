"""Feature extraction over clips: in this process, a pool of worker processes, or an engine such as Ray's.

Each worker builds its own `FaceAnalyzer` with a share of the CPUs; one clip's error is that clip's
(a line in the result), a worker that cannot start gives the same one-line error as one process, and a
worker that dies is one line too (on Ray: the clip is retried, then listed as failed).
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import multiprocessing
import os
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from engines.backends.base import usable_cpus
from engines.errors import EmostreamError
from pipeline.config import AnalyzerConfig
from pipeline.distributed.engine import Engine, portable_config, resolved
from pipeline.scoring.clip_features import ClipFeatures


def extract_clip(path: Path, analyzer, batch_frames: int = 8) -> ClipFeatures:
    """Run `analyzer` (reset first: tracks never carry over between clips) over every frame of `path`."""
    from pipeline.io import capture

    analyzer.reset()
    batches: list = []
    with capture.open_source(path) as src:
        chunk: list = []
        for frame in src:
            chunk.append(frame)
            if len(chunk) == batch_frames:
                batches += analyzer.process(chunk)
                chunk = []
        if chunk:
            batches += analyzer.process(chunk)
        return ClipFeatures.from_batches(batches, src.frames_read, src.decode_errors)


@dataclass(frozen=True)
class FeatureWork:
    """Feature extraction as an engine's work (pipeline/distributed): a FaceAnalyzer built once per worker,
    one clip per unit, answered as (sha256, ClipFeatures or error line, runtime). `cwd`: the driver's
    folder, against which workers on other nodes resolve relative clip paths."""

    config: AnalyzerConfig
    cwd: str | None = None

    def setup(self):
        from pipeline.analyzer import FaceAnalyzer

        return FaceAnalyzer(self.config)

    def run(self, analyzer, digest: str, path: str) -> tuple[str, ClipFeatures | str, dict]:
        where = resolved(path, self.cwd)
        outcome = extract_or_error(Path(where), analyzer)
        if isinstance(outcome, str):  # named as the driver named it
            outcome = outcome.replace(where, path)
        return digest, outcome, started_runtime(analyzer.net)

    def lost(self, task: tuple, why: str) -> tuple[str, str, dict]:
        digest, path = task
        return digest, f"{path}: {why}", {}

    def close(self, analyzer) -> None:
        analyzer.close()


def run_extraction(
    todo: dict[str, list[Path]], config: AnalyzerConfig, workers: int, engine: Engine | None = None
):
    """Yield (sha256, ClipFeatures or error line, runtime that made it) for each clip to extract, in this
    process, a pool of `workers`, or over `engine`; the runtime is the backend that started and its
    precision (`started_runtime`)."""
    if not todo:
        return
    if engine is not None:
        work = FeatureWork(portable_config(config), os.getcwd())
        yield from engine.map(work, ((digest, str(paths[0])) for digest, paths in todo.items()))
        return
    if workers <= 1 or len(todo) == 1:
        from pipeline.analyzer import FaceAnalyzer

        analyzer = FaceAnalyzer(config)
        try:
            runtime = started_runtime(analyzer.net)
            for digest, paths in todo.items():
                yield digest, extract_or_error(paths[0], analyzer), runtime
        finally:
            analyzer.close()
        return
    workers = min(workers, len(todo))
    threads = max(1, usable_cpus() // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads or ORT sessions
    with futures.ProcessPoolExecutor(workers, context, _init_worker, (config, threads)) as pool:
        jobs = {pool.submit(_work, paths[0]): digest for digest, paths in todo.items()}
        try:
            for job in futures.as_completed(jobs):
                yield jobs[job], *job.result()
        except BaseException as e:
            pool.shutdown(wait=True, cancel_futures=True)
            if isinstance(e, BrokenProcessPool):  # killed (out of memory) or crashed in native code
                raise EmostreamError(
                    "a feature worker process died (out of memory or crashed); the clips done so far "
                    "are cached: run again, with fewer --workers if it repeats"
                ) from None
            raise


def started_runtime(net) -> dict:
    """The backend a `MultiTaskNet` actually runs on and its precision (the feature-cache key's part)."""
    from engines.backends import DEFAULT_PRECISION

    name = net.backend_name
    return {"backend": name, "precision": getattr(net.backend, "precision", DEFAULT_PRECISION.get(name, "?"))}


def extract_or_error(path: Path, analyzer) -> ClipFeatures | str:
    """The clip's features, or one line saying why it failed: any error of one clip (a decoder or OpenCV
    error) is that clip's, and must not end the run."""
    try:
        return extract_clip(path, analyzer)
    except EmostreamError as e:
        return str(e)
    except Exception as e:
        return f"{path}: failed while extracting features ({type(e).__name__}: {e})".splitlines()[0]


_WORKER: dict = {}  # "analyzer", or "error": why it could not be built


def _init_worker(config: AnalyzerConfig, threads: int) -> None:
    """Each worker: its own FaceAnalyzer, `threads` threads for OpenCV, onnxruntime and torch."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import cv2

        from pipeline.analyzer import FaceAnalyzer

        cv2.setNumThreads(threads)
        _WORKER["analyzer"] = FaceAnalyzer(dataclasses.replace(config, threads=threads))
    except Exception as e:  # raised here it would only break the pool: `_work` hands it to the parent
        why = e if isinstance(e, EmostreamError) else f"worker could not start ({type(e).__name__}: {e})"
        _WORKER["error"] = str(why).splitlines()[0]


def _work(path: Path) -> tuple[ClipFeatures | str, dict]:
    if "error" in _WORKER:  # the same one line as one process gives, raised in the parent by result()
        raise EmostreamError(_WORKER["error"])
    analyzer = _WORKER["analyzer"]
    return extract_or_error(path, analyzer), started_runtime(analyzer.net)
