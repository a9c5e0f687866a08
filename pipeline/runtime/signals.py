"""Ctrl-C and SIGTERM held back while a step that must not be cut in half runs.

A signal that stops a run raises KeyboardInterrupt on the main thread between any two bytecodes. Where a
step has several parts that must all happen or none (a frame written to faces.jsonl, queued for the
encoder and counted; the end-of-run files), `SignalGate.held()` records the signal instead and raises it
when the step is done. `signals_deferred()` does the same for a whole block (the end-of-run files).

Only handlers that are Python callables are wrapped (Python's default SIGINT handler, the CLI's SIGTERM
handler); an ignored or default-action signal is left as it is. Off the main thread (where no signal
handler runs) both are no-ops. The previous handlers are restored on exit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalGate:
    """While entered (on the main thread), SIGINT/SIGTERM act as before except inside `held()` blocks,
    where they are recorded and delivered (their previous handler called) when the block ends."""

    def __init__(self, signums: tuple[int, ...] = STOP_SIGNALS) -> None:
        self.signums = signums
        self._previous: dict[int, object] = {}
        self._depth = 0
        self._pending: int | None = None

    def __enter__(self) -> SignalGate:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signums:
            previous = signal.getsignal(signum)
            if callable(previous):
                self._previous[signum] = previous
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self._depth > 0:
            if self._pending is None:
                self._pending = signum
            return
        self._previous[signum](signum, frame)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """The block runs whole; a stop signal that arrives meanwhile is delivered after it."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._depth == 0 and self._pending is not None:
            signum, self._pending = self._pending, None
            handler = self._previous.get(signum)
            if handler is not None:
                handler(signum, None)


@contextlib.contextmanager
def signals_deferred(signums: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """Run the block with stop signals held; one that arrived is delivered when the block ends without
    an error (so the end-of-run files are whole before Ctrl-C takes effect)."""
    with SignalGate(signums) as gate, gate.held():
        yield
