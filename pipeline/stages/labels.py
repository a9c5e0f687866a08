"""Where each face's label goes: inside the frame, clear of the other labels and of the other faces.

`place_labels(boxes_xyxy, label_wh, frame_wh)` is pure geometry (no drawing), so it is tested on generated
layouts. Each face tries, in order: above its box, below it, inside its top or bottom edge, then further
away above or below, sideways, joined to its box by a leader line. The first spot that is inside the frame
and overlaps no placed label, no other face's box and (outside the box itself) not its own face wins;
when no spot is free (a packed crowd), the one that overlaps least does. Faces are placed top to bottom,
left to right, so a picture's layout does not depend on detection order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GAP = 2  # pixels between a label and the box it belongs to
FAR_ROWS = 4  # how many label heights away from its box a label may go (with a leader line)


@dataclass(frozen=True)
class Placement:
    """A label's rectangle (x1, y1, x2, y2, pixels, inside the frame) and whether it needs a leader line
    to its box (it does not touch the box)."""

    xyxy: tuple[int, int, int, int]
    leader: bool


def place_labels(
    boxes_xyxy: np.ndarray, label_wh: list[tuple[int, int]], frame_wh: tuple[int, int]
) -> list[Placement]:
    """One `Placement` per box (same order as `boxes_xyxy`), see the module docstring."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4).round().astype(int)
    order = sorted(range(len(boxes)), key=lambda i: (boxes[i, 1], boxes[i, 0]))
    placed: dict[int, tuple[int, int, int, int]] = {}
    out: dict[int, Placement] = {}
    for i in order:
        others = [tuple(boxes[j]) for j in range(len(boxes)) if j != i]
        best = _best_spot(tuple(boxes[i]), label_wh[i], frame_wh, others, list(placed.values()))
        placed[i] = best
        out[i] = Placement(best, not _touches(best, tuple(boxes[i])))
    return [out[i] for i in range(len(boxes))]


def _best_spot(box, wh, frame_wh, other_boxes, labels) -> tuple[int, int, int, int]:
    """The first free candidate spot, else the one that overlaps least (labels weigh most)."""
    best, best_cost = None, None
    for rect, inside in _candidates(box, wh, frame_wh):
        own = 0 if inside else _overlap(rect, _shrunk(box))
        cost = (10 * sum(_overlap(rect, r) for r in labels), sum(_overlap(rect, b) for b in other_boxes), own)
        if cost == (0, 0, 0):
            return rect
        if best_cost is None or (cost[0], cost[1] + cost[2]) < best_cost:
            best, best_cost = rect, (cost[0], cost[1] + cost[2])
    return best


def _candidates(box, wh, frame_wh):
    """(rect, is-inside-the-box) spots for a label of size `wh` near `box`, best first, all clamped into
    the frame."""
    x1, y1, x2, y2 = box
    w, h = wh
    above, below = y1 - GAP - h, y2 + GAP
    spots = [((x1, above), False), ((x1, below), False)]
    if w <= x2 - x1 and 2 * h <= y2 - y1:  # inside only when it leaves most of the face visible
        spots += [((x1 + GAP, y1 + GAP), True), ((x1 + GAP, y2 - GAP - h), True)]
    cx = (x1 + x2) // 2
    for row in range(1, FAR_ROWS + 1):
        for dx in (0, -w // 2, w // 2 - (x2 - x1), -w, x2 - x1):
            spots += [
                ((x1 + dx, above - row * (h + GAP)), False),
                ((x1 + dx, below + row * (h + GAP)), False),
            ]
    mid = (y1 + y2) // 2 - h // 2
    spots += [((x2 + GAP, mid), False), ((x1 - GAP - w, mid), False), ((cx - w // 2, above), False)]
    for (x, y), inside in spots:
        yield _clamped(x, y, w, h, frame_wh), inside


def _clamped(x: int, y: int, w: int, h: int, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
    fw, fh = frame_wh
    x = min(max(0, x), max(0, fw - w))
    y = min(max(0, y), max(0, fh - h))
    return int(x), int(y), int(x + w), int(y + h)


def _shrunk(box) -> tuple[int, int, int, int]:
    """The box less the line drawn around it: a label may touch the outline, not cover the face."""
    x1, y1, x2, y2 = box
    return x1 + GAP, y1 + GAP, x2 - GAP, y2 - GAP


def _overlap(a, b) -> int:
    """Overlap area of two (x1, y1, x2, y2) rectangles, 0 when they only touch."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0, w) * max(0, h)


def _touches(rect, box) -> bool:
    """True when the label is next to (or inside) its box, so no leader line is needed."""
    x1, y1, x2, y2 = box
    grown = (x1 - GAP - 1, y1 - GAP - 1, x2 + GAP + 1, y2 + GAP + 1)
    return _overlap(rect, grown) > 0


def leader_line(rect, box) -> tuple[tuple[int, int], tuple[int, int]]:
    """From the label's edge nearest the box to the nearest point of the box outline."""
    lx = min(max((rect[0] + rect[2]) // 2, box[0]), box[2])
    ly = box[1] if rect[3] <= box[1] else box[3] if rect[1] >= box[3] else (box[1] + box[3]) // 2
    sx = min(max(lx, rect[0]), rect[2])
    sy = rect[3] if rect[3] <= ly else rect[1] if rect[1] >= ly else (rect[1] + rect[3]) // 2
    return (int(sx), int(sy)), (int(lx), int(ly))
