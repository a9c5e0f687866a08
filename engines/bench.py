"""Backend benchmark: faces/s of the fused net per backend and batch size, split into phases.

One workload per batch size B: a 1920x1080 frame holding B faces of about 160 px (so the crops come
from the first pyrDown level, as for typical video faces). Each timed run does, per backend:
- pre: the crops: cv2 on the CPU for host backends; frame upload + device crops for backends that
  offer `crops_on_device` / `run_device` (synchronised before the clock stops);
- infer: the net, outputs back on the host;
- post: decoding the outputs (top emotion, gender labels).
Each figure is the median over `runs` timed runs after one warm-up run; faces/s = B / median total.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.backends.device_crops import warp_crops_cv2
from engines.labels import gender_label, top_emotion

FRAME_WH = (1920, 1080)
FACE_PX = 160.0


@dataclass(frozen=True)
class BenchRow:
    """One backend at one batch size: median ms per phase and faces per second."""

    backend: str
    batch: int
    pre_ms: float
    infer_ms: float
    post_ms: float
    median_total_ms: float | None = None  # median of the runs' totals; None: the phases' sum

    @property
    def total_ms(self) -> float:
        """The median run's whole time (not the sum of each phase's median, which mixes runs)."""
        if self.median_total_ms is not None:
            return self.median_total_ms
        return self.pre_ms + self.infer_ms + self.post_ms

    @property
    def faces_per_s(self) -> float:
        return self.batch / (self.total_ms / 1000.0) if self.total_ms > 0 else float("inf")

    def share(self, phase: str) -> float:
        """Fraction of the phases' median times spent in `phase` ("pre", "infer" or "post")."""
        phases = self.pre_ms + self.infer_ms + self.post_ms
        return getattr(self, f"{phase}_ms") / phases if phases > 0 else 0.0


def synthetic_frame(wh: tuple[int, int] = FRAME_WH, seed: int = 0) -> np.ndarray:
    """(H,W,3) uint8 noise: the nets' cost does not depend on what the pixels show."""
    return np.random.default_rng(seed).integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)


def face_matrices(
    n: int, size: int, scale: float, wh: tuple[int, int] = FRAME_WH, face_px: float = FACE_PX, seed: int = 0
) -> np.ndarray:
    """(n,2,3) image->crop matrices of faces of `face_px` at random places, rolled up to +-20 degrees."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform((face_px, face_px), (wh[0] - face_px, wh[1] - face_px), (n, 2))
    angles = np.radians(rng.uniform(-20, 20, n))
    k = size / (scale * face_px)  # crop pixels per image pixel
    rot = k * np.stack(
        [np.stack([np.cos(angles), -np.sin(angles)], -1), np.stack([np.sin(angles), np.cos(angles)], -1)], 1
    )
    shift = size / 2 - np.einsum("nij,nj->ni", rot, centers)
    return np.concatenate([rot, shift[..., None]], axis=2).astype(np.float32)


def decode_outputs(outputs: Mapping[str, np.ndarray]) -> None:
    """The postprocessing every frame gets: labels from the probabilities."""
    if "emotion" in outputs:
        top_emotion(outputs["emotion"])
    if "gender" in outputs:
        gender_label(outputs["gender"])


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - t0) * 1000.0


def _sync(backend: Any) -> None:
    sync = getattr(backend, "synchronize", None)
    if sync is not None:
        sync()


def one_run(net: Any, image: np.ndarray, matrices: np.ndarray) -> tuple[float, float, float]:
    """(pre, infer, post) ms for the faces of `matrices` in `image` through `net`'s backend."""
    backend, size = net.backend, net.crop_size
    if hasattr(backend, "run_device"):

        def pre() -> Any:
            crops = backend.crops_on_device([image], [matrices], size)
            _sync(backend)
            return crops

        crops, pre_ms = _timed(pre)
        outputs, infer_ms = _timed(lambda: backend.run_device(crops))
    else:
        crops, pre_ms = _timed(lambda: warp_crops_cv2(image, matrices, size))
        outputs, infer_ms = _timed(lambda: net.infer(crops))
    _, post_ms = _timed(lambda: decode_outputs(outputs))
    return pre_ms, infer_ms, post_ms


def backend_label(net: Any) -> str:
    """The backend that ran (resolved, never "auto"), with its precision where it has one."""
    precision = getattr(net.backend, "precision", None)
    return f"{net.backend_name} {precision}" if precision else net.backend_name


def bench_net(net: Any, batches: Sequence[int], runs: int, image: np.ndarray) -> list[BenchRow]:
    """One row per batch size for `net` (medians over `runs` after a warm-up run)."""
    label, rows = backend_label(net), []
    for batch in batches:
        matrices = face_matrices(batch, net.crop_size, net.crop_scale, (image.shape[1], image.shape[0]))
        one_run(net, image, matrices)  # warm-up: lazy allocations, kernel selection, graph capture
        times = [one_run(net, image, matrices) for _ in range(runs)]
        pre, infer, post = (statistics.median(col) for col in zip(*times, strict=True))
        rows.append(BenchRow(label, batch, pre, infer, post, statistics.median(sum(t) for t in times)))
    return rows


def run_bench(
    nets: Sequence[Any], batches: Sequence[int], runs: int, image: np.ndarray | None = None
) -> list[BenchRow]:
    """Rows for every (net, batch size); each net is a MultiTaskNet on one backend."""
    if runs < 1 or not batches or min(batches) < 1:
        raise ValueError(f"need runs >= 1 and batch sizes >= 1, got runs={runs}, batches={list(batches)}")
    frame = synthetic_frame() if image is None else image
    return [row for net in nets for row in bench_net(net, batches, runs, frame)]


def markdown_table(rows: Sequence[BenchRow]) -> str:
    """The rows as a markdown table (faces/s, ms per batch, phase shares in percent)."""
    lines = [
        "| backend | batch | faces/s | ms/batch | pre % | infer % | post % |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.batch} | {r.faces_per_s:,.0f} | {r.total_ms:.2f} | "
            f"{100 * r.share('pre'):.0f} | {100 * r.share('infer'):.0f} | {100 * r.share('post'):.0f} |"
        )
    return "\n".join(lines)
