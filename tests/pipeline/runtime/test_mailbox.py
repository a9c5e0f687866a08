"""The live hand-off: one slot, newest wins, every replaced or refused item counted as dropped."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.runtime.mailbox import Mailbox
from pipeline.runtime.runner import END

# ops: an int puts it, "get" takes with no wait, "close" closes; expected: what each get returned
CASES = [
    ("one item", [1, "get"], [1], 0),
    ("newer replaces older", [1, 2, "get"], [2], 1),
    ("three in a row keep the last", [1, 2, 3, "get", "get"], [3, None], 2),
    ("taken items are not dropped", [1, "get", 2, "get"], [1, 2], 0),
    ("empty get times out", ["get"], [None], 0),
    ("close drains then ends", [1, "close", "get", "get"], [1, END], 0),
    ("put after close is refused", ["close", 1, "get"], [END], 1),
    ("pending replaced then closed", [1, 2, "close", "get", "get"], [2, END], 1),
]


@pytest.mark.parametrize(("name", "ops", "gets", "dropped"), CASES, ids=[c[0] for c in CASES])
def test_mailbox_sequences(name, ops, gets, dropped):
    box: Mailbox[int] = Mailbox()
    got = []
    for op in ops:
        if op == "get":
            got.append(box.get(timeout=0))
        elif op == "close":
            box.close()
        else:
            box.put(op)
    counts = box.counts()
    assert got == gets
    assert counts.dropped == dropped
    assert counts.offered == sum(isinstance(op, int) for op in ops)
    assert counts.offered == counts.taken + counts.dropped + counts.pending


def test_put_reports_whether_the_item_waits():
    box: Mailbox[int] = Mailbox()
    assert box.put(1) is True
    box.close()
    assert box.put(2) is False
    with pytest.raises(ValueError, match="None"):
        box.put(None)


def test_get_wakes_when_another_thread_puts():
    box: Mailbox[str] = Mailbox()
    threading.Timer(0.05, box.put, args=("hello",)).start()
    assert box.get(timeout=5) == "hello"


def test_fast_writer_slow_reader_keeps_order_and_accounts_for_everything():
    """A reader slower than the writer sees a rising subsequence; the rest is counted as dropped."""
    box: Mailbox[int] = Mailbox()
    seen: list[int] = []

    def read():
        while (item := box.get(timeout=5)) is not END and item is not None:
            seen.append(item)
            time.sleep(0.002)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(1, 2001):
        box.put(i)
    box.close()
    reader.join(timeout=10)
    counts = box.counts()
    assert seen == sorted(seen) and seen[-1] == 2000  # newest wins, and the last item is never lost
    assert counts.dropped > 0 and len(seen) + counts.dropped == counts.offered == 2000
