"""A one-slot, newest-wins hand-off between two live threads, with exact drop accounting.

A live stage that falls behind must not build a backlog: the writer never waits, a newer item replaces
an older one the reader has not taken yet, and every replaced or refused item is counted. At any moment
`offered == taken + dropped + pending`, so "every frame was either used or counted as dropped" holds by
construction and can be checked.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.runtime.runner import END

T = TypeVar("T")


@dataclass(frozen=True)
class MailboxCounts:
    """A consistent snapshot of a mailbox's counters (taken under its lock)."""

    offered: int
    taken: int
    dropped: int
    pending: int


class Mailbox(Generic[T]):
    """One slot: `put` never blocks and replaces an untaken item; `get` waits for one.

    After `close()`, `get` still hands out the pending item (the reader drains) and then returns `END`;
    a `put` after close is refused and counted as dropped. `None` cannot be sent: `get` returns None
    when its timeout passes with nothing to take.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self._offered = self._taken = self._dropped = 0

    def put(self, item: T) -> bool:
        """Offer `item`; True if it now waits in the slot (an older untaken item was dropped for it)."""
        if item is None:
            raise ValueError("Mailbox.put: None is reserved for 'nothing arrived in time'")
        with self._cond:
            self._offered += 1
            if self._closed:
                self._dropped += 1
                return False
            if self._item is not None:
                self._dropped += 1
            self._item = item
            self._cond.notify()
            return True

    def get(self, timeout: float | None = None) -> T | object | None:
        """The pending item; `END` once closed and empty; None if `timeout` seconds pass first."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            if self._item is None:
                return END
            item, self._item = self._item, None
            self._taken += 1
            return item

    def close(self) -> None:
        """No more puts; the reader gets what is pending, then `END` (safe to call twice)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def counts(self) -> MailboxCounts:
        with self._cond:
            pending = int(self._item is not None)
            return MailboxCounts(self._offered, self._taken, self._dropped, pending)
