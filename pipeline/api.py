"""The Python API in two calls: `analyze(path)` yields (frame, faces) pairs; `run_job` writes every output."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from pipeline.analyzer import FaceAnalyzer
from pipeline.config import AnalyzerConfig
from pipeline.frames import FaceBatch, Frame
from pipeline.runtime.runner import Producer, take
from pipeline.runtime.timing import StageTimer


def analyze(
    source: str | Path, config: AnalyzerConfig | None = None, batch_frames: int = 4
) -> Iterator[tuple[Frame, FaceBatch]]:
    """Decode `source` on a background thread and yield each frame with its tracked, inferred faces."""
    from pipeline.io.capture import open_source

    stop = threading.Event()
    q: queue.Queue = queue.Queue(maxsize=8)
    with open_source(source) as src:  # a bad input fails here, before the models load
        analyzer = FaceAnalyzer(config or AnalyzerConfig())
        decoder = Producer(src, q, stop, StageTimer())
        decoder.start()
        try:
            done = False
            while not done:
                frames, done, error = take(q, batch_frames)
                yield from zip(frames, analyzer.process(frames), strict=True)
                if error is not None:
                    raise error
        finally:
            stop.set()
            decoder.join(timeout=5)
            analyzer.close()
