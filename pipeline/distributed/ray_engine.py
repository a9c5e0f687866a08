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
import sys
import tempfile
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
NODE_HINT = f"and ray=={ray.__version__} must be installed on every node, with the same Python"
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
    set), `local` always starts one, `auto` joins the cluster running on this machine, `HOST:PORT` (or
    `ray://HOST:10001`) that one. `workers`: actors to start (default: one per CPU of the cluster, or per
    GPU when each worker needs one), never more than there are units. If Ray is already initialised (a
    caller's own `ray.init`), that connection is used and left open."""

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

    def map(self, work: Any, tasks: Iterable[tuple]) -> Iterator[Any]:
        tasks = list(tasks)
        if not tasks:
            return
        with self._connected() as ours:
            actors = self._start(work, len(tasks))
            try:
                yield from self._dispatch(actors, work, tasks)
            finally:  # an interrupted job stops its workers at once; unfinished units are redone
                if not ours:  # else closing our connection ends the workers it owns, without Ray's notices
                    for actor in actors:
                        ray.kill(actor)

    @contextlib.contextmanager
    def _connected(self) -> Iterator[bool]:
        """Ray connected for the block: the caller's connection if there is one (False), else ours (True),
        closed after."""
        if ray.is_initialized():
            yield False
            return
        sigterm = signal.getsignal(signal.SIGTERM)  # ray.init replaces it; the CLI's handler stays
        try:
            self._init()
        finally:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was replaced
                signal.signal(signal.SIGTERM, sigterm)
        try:
            yield True
        finally:  # quietly: stopping with a video in flight, Ray's core logs that it had nobody to tell
            with tempfile.TemporaryFile() as log, _stderr_to(log.fileno()):
                ray.shutdown()

    def _init(self) -> None:
        """ray.init, quietly: joining a cluster, Ray's core logs each retry on stderr (20 s of them for a
        wrong address or token); they are kept aside and a failure is one line (naming a refused token)."""
        local = self.address == "local"
        with tempfile.TemporaryFile() as log:
            try:
                with _stderr_to(None if local else log.fileno()):
                    ray.init(
                        address=self.address,
                        log_to_driver=False,
                        logging_level=logging.ERROR,
                        **({"include_dashboard": False} if local else {}),
                    )
            except Exception as e:
                log.seek(0)
                raise EmostreamError(
                    join_error(self.address, e, log.read().decode(errors="replace"))
                ) from None

    def _start(self, work: Any, units: int) -> list:
        total = ray.cluster_resources()
        gpus = worker_gpus(self.backend, total.get("GPU", 0), self.gpus_per_worker)
        count = worker_count(self.workers, units, total, self.cpus_per_worker, gpus)
        env = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIX)}
        actor = ray.remote(Worker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=gpus,
            max_restarts=-1,  # a dead worker comes back for the next unit; each unit is retried only once
            max_task_retries=WORKER_RETRIES,
            runtime_env={"env_vars": env} if env else None,
        )
        return [actor.remote(work, max(1, int(self.cpus_per_worker))) for _ in range(count)]

    def _dispatch(self, actors: list, work: Any, tasks: list[tuple]) -> Iterator[Any]:
        """Each idle worker gets the next unit; results are yielded as they finish. A worker that could
        not start (its node lacks emostream, say) leaves the pool and its unit goes to another."""
        waiting, idle, running, gone = deque(tasks), list(actors), {}, ""
        while waiting or running:
            while idle and waiting:
                task, actor = waiting.popleft(), idle.pop()
                running[actor.run.remote(task)] = (task, actor)
            if not running:
                raise EmostreamError(f"no Ray worker could start ({gone}); emostream {NODE_HINT}")
            [ref], _ = ray.wait(list(running), num_returns=1)
            task, actor = running.pop(ref)
            try:
                result = _outcome(work, task, ref)
            except _NotStarted as e:
                waiting.appendleft(task)
                gone = str(e)
                continue
            idle.append(actor)
            yield result


def worker_gpus(backend: str, cluster_gpus: float, asked: float | None = None) -> float:
    """GPUs each worker asks Ray for: as `asked`, else 1 for a CUDA backend, and for `auto` on a cluster
    with GPUs (auto picks a GPU backend there); 0 otherwise (onnxruntime on the CPU)."""
    if asked is not None:
        return asked
    return 1 if backend in CUDA_BACKENDS or (backend == "auto" and cluster_gpus > 0) else 0


def worker_count(asked: int | None, units: int, total: dict, cpus_per_worker: float, gpus: float) -> int:
    """Workers to start: as `asked`, else one per `cpus_per_worker` CPUs of the cluster (per `gpus` GPUs
    when each needs some); never more than there are units, never none."""
    fits = total.get("GPU", 0) // gpus if gpus else total.get("CPU", 0) // cpus_per_worker
    return max(1, min(asked or int(fits), units))


class _NotStarted(Exception):
    """A worker died in its creation task: it never ran a unit and never will (Ray does not restart it)."""


def _outcome(work: Any, task: tuple, ref) -> Any:
    """The unit's result; its work's `lost` result when its worker died twice; Fatal raised as one line."""
    try:
        result = ray.get(ref)
    except RayActorError as e:  # the process died (killed, out of memory, crashed in native code)
        if e.actor_init_failed:
            raise _NotStarted(_last_line(str(e))) from None
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


def _last_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def join_error(address: str, e: Exception, logged: str) -> str:
    """The one line for a failed ray.init: a refused token named as such (Ray only logs it)."""
    if "InvalidAuthToken" in logged or "Unauthenticated" in logged:
        return (
            f"--ray-address {address}: the cluster uses token authentication and refused this driver: "
            "set RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN, or ~/.ray/auth_token; "
            "`ray get-auth-token` on the head prints it)"
        )
    why = " ".join(str(e).split()) or type(e).__name__
    return f"--ray-address {address}: cannot start or join Ray ({why})"


@contextlib.contextmanager
def _stderr_to(fd: int | None) -> Iterator[None]:
    """File descriptor 2 (C++ logs write there directly) pointed at `fd` for the block; None: unchanged."""
    if fd is None:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
