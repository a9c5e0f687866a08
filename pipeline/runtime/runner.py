"""Offline scheduling: decode thread -> main thread (stateful stages) -> render/encode thread.

Queues are bounded (memory stays flat for any video length), frame order is preserved, an end marker
closes each queue, and threads are joined in `finally` so Ctrl-C still leaves complete, valid outputs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipeline.frames import FaceBatch, Frame
from pipeline.runtime.signals import SignalGate
from pipeline.runtime.timing import StageTimer

END = object()
"""End-of-stream marker passed through every queue."""


@dataclass
class Failure:
    """An exception raised on a worker thread, carried to the main thread to be re-raised there."""

    error: BaseException


def put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Put with back-pressure that still notices `stop` (a consumer that died must not hang us)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Producer(threading.Thread):
    """Iterates `frames` on its own thread into a bounded queue, timing each step as `stage`."""

    def __init__(
        self,
        frames: Iterable,
        q: queue.Queue,
        stop: threading.Event,
        timer: StageTimer,
        stage: str = "decode",
    ) -> None:
        super().__init__(name=f"emostream-{stage}", daemon=True)
        self.frames, self.q, self.stop, self.timer, self.stage = frames, q, stop, timer, stage

    def run(self) -> None:
        try:
            it = iter(self.frames)
            while not self.stop.is_set():
                t0 = time.perf_counter()
                item = next(it, END)
                self.timer.add(self.stage, time.perf_counter() - t0)
                if item is END or not put(self.q, item, self.stop):
                    break
        except BaseException as e:  # carried to the main thread
            put(self.q, Failure(e), self.stop)
        finally:
            put(self.q, END, self.stop)


class Consumer(threading.Thread):
    """Applies `handle(item)` to each item of a queue until the end marker; keeps the first error."""

    def __init__(self, handle: Callable, q: queue.Queue, name: str) -> None:
        super().__init__(name=f"emostream-{name}", daemon=True)
        self.handle, self.q = handle, q
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.q.get()) is not END:
            if self.error is None:
                try:
                    self.handle(item)
                except BaseException as e:  # reported by the main thread
                    self.error = e


@dataclass
class RunStats:
    frames: int = 0
    faces: int = 0
    wall_s: float = 0.0
    interrupted: bool = False
    timings: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def take(q: queue.Queue, n: int) -> tuple[list[Frame], bool, BaseException | None]:
    """Up to n frames from the decode queue; True once the stream ended, with the decoder's error if it
    failed (the frames decoded before the error are still returned, to be processed first)."""
    frames: list[Frame] = []
    while len(frames) < n:
        item = q.get()
        if item is END:
            return frames, True, None
        if isinstance(item, Failure):
            return frames, True, item.error
        frames.append(item)
    return frames, False, None


def run_offline(
    frames: Iterable[Frame],
    process: Callable[[list[Frame]], list[FaceBatch]],
    emit: Callable[[Frame, FaceBatch], None],
    encode: Callable[[tuple[Frame, FaceBatch]], None] | None = None,
    *,
    batch_frames: int = 4,
    queue_size: int = 8,
    timer: StageTimer | None = None,
) -> RunStats:
    """Run frames through `process` in order; `emit` on the main thread, `encode` on its own thread.

    KeyboardInterrupt (Ctrl-C, SIGTERM through the CLI) stops decoding, lets the encoder finish what it was
    handed, and returns stats with `interrupted=True`. Each frame is passed to `emit`, queued for `encode`
    and counted as one step that a signal does not cut (it takes effect between frames), so the frames
    counted, emitted and encoded are always the same; an `emit` that raises leaves its frame out of all
    three.
    """
    timer = timer or StageTimer()
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=queue_size)
    q_out: queue.Queue = queue.Queue(maxsize=queue_size)
    decoder = Producer(frames, q_in, stop, timer)
    encoder = Consumer(encode, q_out, "encode") if encode else None
    stats, t0 = RunStats(), time.perf_counter()
    decoder.start()
    if encoder:
        encoder.start()
    try:
        with SignalGate() as gate:
            done = False
            while not done:
                chunk, done, error = take(q_in, batch_frames)
                for frame, batch in zip(chunk, process(chunk), strict=True):
                    with gate.held():  # written, queued and counted, or none of the three
                        emit(frame, batch)
                        if encoder:
                            _hand_over(encoder, q_out, (frame, batch))
                        stats.frames += 1
                        stats.faces += len(batch)
                if error is not None:
                    raise error
    except KeyboardInterrupt:
        stats.interrupted = True
    finally:
        stop.set()
        if encoder:
            _drain(encoder, q_out, stats)
        decoder.join(timeout=5)
        stats.wall_s = time.perf_counter() - t0
        stats.timings = timer.summary(stats.frames)
    if encoder:
        _check(encoder)
    return stats


def _hand_over(encoder: Consumer, q_out: queue.Queue, item) -> None:
    """Queue `item` for the encoder, waiting while the queue is full, but never for an encoder that
    failed or ended (its error is raised)."""
    while True:
        _check(encoder)
        if not encoder.is_alive():
            raise RuntimeError("the encoder thread ended before the end of the stream")
        try:
            q_out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _drain(encoder: Consumer, q_out: queue.Queue, stats: RunStats) -> None:
    """Hand the encoder its end marker and wait for it, even through further Ctrl-C: the caller closes
    the files the encoder writes right after this."""
    sent = False
    while True:
        try:
            if not sent:
                q_out.put(END)
                sent = True  # a Ctrl-C just before this line sends a second END, which nobody reads
            encoder.join()
            return
        except KeyboardInterrupt:
            stats.interrupted = True


def _check(worker: Consumer) -> None:
    if worker.error is not None:
        raise worker.error
