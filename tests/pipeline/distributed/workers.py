"""Test helpers for the Ray engine: kill its worker processes from outside, as the OOM killer or a lost
node would, and wait for a dead driver's workers to be gone."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil

BUSY_TITLE = "ray::Worker.run"
"""The process title Ray gives an actor process of `pipeline.distributed.ray_engine.Worker` while it runs
a unit (an idle one is `ray::Worker`)."""


def ray_workers(busy_only: bool = False) -> list[psutil.Process]:
    """The live processes of the engine's Ray actors on this machine (every node of a simulated cluster)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        title = (p.info["cmdline"] or [""])[0]
        if title == BUSY_TITLE or (not busy_only and title.startswith("ray::Worker")):
            found.append(p)
    return found


class WorkerKiller(threading.Thread):
    """SIGKILLs a busy worker process (one running a video) `times` times, each a different process, once
    `ready()` says so; `killed` lists their pids."""

    def __init__(self, times: int, ready=lambda: True) -> None:
        super().__init__(daemon=True)
        self.times, self.ready, self.killed = times, ready, []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while len(self.killed) < self.times and not self._stop_event.is_set():
            busy = [p for p in ray_workers(busy_only=True) if p.pid not in self.killed]
            if busy and self.ready():
                os.kill(busy[0].pid, signal.SIGKILL)
                self.killed.append(busy[0].pid)
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def wait_workers_gone(timeout_s: float = 60.0) -> None:
    """Wait until no engine worker process is left (a killed driver's actors are ended by Ray)."""
    deadline = time.monotonic() + timeout_s
    while ray_workers() and time.monotonic() < deadline:
        time.sleep(0.1)
