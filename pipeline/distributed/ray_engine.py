"""The Ray engine: the units of a job spread over Ray actors, on this machine or a cluster.

Each worker is one Ray actor holding the work's state (the analyzer: models load once per worker) and
runs one unit (a whole video) at a time; an idle worker gets the next unit, so at most one video per
worker is in flight. Retries are Ray's own: an actor whose process dies is restarted (`max_restarts`) and
the unit it held is tried again (`max_task_retries`); a unit whose worker died twice is the work's `lost`
result (listed as failed), never the end of the job. Each actor declares `num_cpus` (its CPU share, which
also caps its threads through EMOSTREAM_CPUS) and `num_gpus` (1 when a CUDA backend runs the net).
Imported only when `--engine ray` is chosen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from engines.backends.base import CPUS_ENV
from engines.errors import EmostreamError

WORKER_RETRIES = 1
"""A unit whose worker dies is tried once more; a second death lists it as failed."""
CUDA_BACKENDS = ("torch", "tensorrt")
FORWARDED_ENV_PREFIX = "EMOSTREAM_"
"""The driver's EMOSTREAM_* variables (models folder, cache) go to every worker: same paths everywhere."""


@dataclass(frozen=True)
class Fatal:
    """A worker's answer that ends the whole job: the one line the driver raises."""

    line: str


class Worker:
    """A Ray actor's body: the work's (a `pipeline.distributed.engine.Work`) state built once when the actor
    starts, then one unit per call."""

    def __init__(self, work: Any, cpus: int) -> None:
        os.environ[CPUS_ENV] = str(cpus)  # usable_cpus() in this process: its share of the node
        self.work, self.state, self.error = work, None, None
        try:
            self.state = work.setup()
        except EmostreamError as e:  # raised here it would kill the actor: the driver raises it instead
            self.error = str(e)
        except Exception as e:
            self.error = f"worker could not start ({type(e).__name__}: {e})".splitlines()[0]

    def run(self, task: tuple) -> Any:
        if self.error is not None:
            return Fatal(self.error)
        try:
            return self.work.run(self.state, *task)
        except EmostreamError as e:
            return Fatal(str(e))


class RayEngine:
    """Maps a work over Ray actors. `address`: None starts a local Ray instance (or joins $RAY_ADDRESS when
    set), `auto` joins the cluster running on this machine, `HOST:PORT` (or `ray://HOST:10001`) that one.
    `workers`: actors to start (default: one per CPU of the cluster, or per GPU when each worker needs
    one), never more than there are units. If Ray is already initialised (a caller's own
    `ray.init`), that connection is used and left open."""

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        backend: str = "auto",
        cpus_per_worker: int = 1,
        gpus_per_worker: float | None = None,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or "local"
        self.workers, self.backend = workers, backend
        self.cpus_per_worker, self.gpus_per_worker = cpus_per_worker, gpus_per_worker
        self.started = 0  # actors started by the last map (for reports)

    def map(self, work: Any, tasks: Iterable[tuple]) -> Iterator[Any]:
        tasks = list(tasks)
        if not tasks:
            return
        with self._connected():
            actors = self._start(work, len(tasks))
            try:
                yield from self._dispatch(actors, work, tasks)
            finally:
                for actor in actors:
                    ray.kill(actor)  # an interrupted job stops its workers; unfinished units are redone

    @contextlib.contextmanager
    def _connected(self) -> Iterator[None]:
        """Ray connected for the block: the caller's connection if there is one, else ours, closed after."""
        if ray.is_initialized():
            yield
            return
        options = {"include_dashboard": False} if self.address == "local" else {}
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it; the CLI's handler stays
        try:
            ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR, **options)
        except Exception as e:
            why = " ".join(str(e).split()) or type(e).__name__
            raise EmostreamError(f"--ray-address {self.address}: cannot start or join Ray ({why})") from None
        finally:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was replaced
                signal.signal(signal.SIGTERM, sigterm)
        try:
            yield
        finally:
            ray.shutdown()

    def _start(self, work: Any, units: int) -> list:
        gpus = self._gpus()
        total = ray.cluster_resources()
        room = total.get("GPU", 0) // gpus if gpus else total.get("CPU", 0) // self.cpus_per_worker
        count = min(self.workers or max(1, int(room)), units)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
        actor = ray.remote(Worker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=gpus,
            max_restarts=-1,  # a dead worker comes back for the next unit; each unit is retried only once
            max_task_retries=WORKER_RETRIES,
            runtime_env={"env_vars": env} if env else None,
        )
        self.started = count
        return [actor.remote(work, max(1, int(self.cpus_per_worker))) for _ in range(count)]

    def _gpus(self) -> float:
        """GPUs per worker: as asked, else 1 for a CUDA backend (and for `auto` on a cluster with GPUs)."""
        if self.gpus_per_worker is not None:
            return self.gpus_per_worker
        if self.backend in CUDA_BACKENDS:
            return 1
        return 1 if self.backend == "auto" and ray.cluster_resources().get("GPU", 0) > 0 else 0

    def _dispatch(self, actors: list, work: Any, tasks: list[tuple]) -> Iterator[Any]:
        """Each idle worker gets the next unit; results are yielded as they finish."""
        waiting, idle, running = deque(tasks), list(actors), {}
        while waiting or running:
            while idle and waiting:
                task, actor = waiting.popleft(), idle.pop()
                running[actor.run.remote(task)] = (task, actor)
            [ref], _ = ray.wait(list(running), num_returns=1)
            task, actor = running.pop(ref)
            idle.append(actor)
            yield _outcome(work, task, ref)


def _outcome(work: Any, task: tuple, ref) -> Any:
    """The unit's result; its work's `lost` result when its worker died twice; Fatal raised as one line."""
    try:
        result = ray.get(ref)
    except RayActorError as e:  # the process died (killed, out of memory, crashed in native code)
        return work.lost(
            task, f"its worker died {WORKER_RETRIES + 1} times while running it ({type(e).__name__})"
        )
    except RayTaskError as e:
        return work.lost(task, f"failed on its worker ({type(e.cause).__name__}: {e.cause})".splitlines()[0])
    except RayError as e:  # lost objects, a node gone with the result
        return work.lost(task, f"lost on the cluster ({type(e).__name__})")
    if isinstance(result, Fatal):
        raise EmostreamError(result.line)
    return result
