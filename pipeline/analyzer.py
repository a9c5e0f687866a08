"""The stateful middle of the pipeline: detect -> track -> align -> infer -> aggregate.

One `FaceAnalyzer` lives on one thread (tracking and smoothing are stateful). `process(frames)` takes a
short run of consecutive frames and makes ONE inference call for all of their faces.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import AnalyzerConfig
from pipeline.frames import FaceBatch, Frame
from pipeline.runtime.timing import StageTimer

COARSE_MIN_FACE_PX = 48
"""The smallest tracked face, in the detector's input pixels, when detecting at a reduced size."""
COARSE_MIN_SIDE = 160
FULL_SCAN_EVERY_S = 1.0
"""Longest time between full-size detections while coarse ones run (new small faces appear within it)."""


class FaceAnalyzer:
    """Owns the detector, tracker, network and aggregator; turns frames into annotated FaceBatches."""

    def __init__(self, config: AnalyzerConfig, store=None, timer: StageTimer | None = None) -> None:
        from engines.multitask import MultiTaskNet, NetConfig
        from engines.store.store import ModelStore
        from pipeline.stages.aggregate import Aggregator
        from pipeline.stages.detect import create_detector
        from pipeline.stages.track import Tracker

        self.config = config
        self.store = store or ModelStore(mirror_dir=config.models_dir)
        self.timer = timer or StageTimer()
        self.detector = create_detector(config.detector, self.store)
        self.tracker = Tracker()
        threads = {} if config.threads is None else {"intra_op_threads": config.threads}
        self.net = MultiTaskNet(
            NetConfig(heads=config.heads, quality=config.quality), self.store, config.backend, **threads
        )
        self.aggregator = Aggregator(smoothing_s=config.smoothing_s)
        self._frames_seen = 0
        self._full_scan_s = -np.inf
        self.head = None
        if config.extra_head:
            from pipeline.stages.head import load_head

            self.head = load_head(config.extra_head, config)
        self.refresh = self._attribute_refresh(threads)

    def _attribute_refresh(self, threads: dict):
        """Per-track gender/age refresh, where it applies: attribute heads present, CPU crops, and no
        few-shot head (which reads every face's full embedding)."""
        from engines.multitask import MultiTaskNet, NetConfig
        from pipeline.stages.attributes import AttributeRefresh

        cfg = self.config
        device_crops = getattr(self.net.backend, "run_frames", None) is not None
        if (
            cfg.attributes_every_s <= 0
            or set(cfg.heads) <= {"emotion"}
            or self.head is not None
            or device_crops
        ):
            return None
        emotion = MultiTaskNet(
            NetConfig(heads=("emotion",), quality=cfg.quality), self.store, cfg.backend, **threads
        )
        return AttributeRefresh(self.net, emotion, cfg.attributes_every_s)

    def locate(self, frame: Frame) -> FaceBatch:
        """Detect (every Nth frame) or predict, then track: boxes with stable ids for one frame."""
        detect_now = self._frames_seen % self.config.detect_every == 0
        self._frames_seen += 1
        if detect_now:
            side = self._coarse_side(frame)
            with self.timer("detect"):
                found = self.detector.detect(frame, max_side=side)
            if side is None:
                self._full_scan_s = frame.time_s
            with self.timer("track"):
                located = self.tracker.update(found)
                ended = self.tracker.pop_ended()
            if self.refresh is not None and ended:
                self.refresh.forget(ended)
            return located
        with self.timer("track"):
            return self.tracker.predict(frame.index, frame.time_s, frame.wh)

    def _coarse_side(self, frame: Frame) -> int | None:
        """A smaller detector input when every tracked face is large, else None (the detector's default).

        Detection cost grows with input pixels; a 200 px face is still found at a quarter of the size. The
        smallest tracked face is kept at >= COARSE_MIN_FACE_PX on the detector's input, and a full-size
        scan runs at least every FULL_SCAN_EVERY_S so that new, smaller faces are still found.
        """
        cfg = self.config
        boxes = self.tracker.active_boxes()
        stale = frame.time_s - self._full_scan_s >= FULL_SCAN_EVERY_S
        if not cfg.coarse_detection or boxes is None or not len(boxes) or stale:
            return None
        smallest = float(np.min(boxes[:, 2:] - boxes[:, :2]))
        long_side = max(frame.wh)
        side = max(COARSE_MIN_SIDE, int(long_side * COARSE_MIN_FACE_PX / max(smallest, 1.0)))
        side = -(-side // 32) * 32  # a few sizes only: each new size reconfigures the detector
        return side if side < min(long_side, self.detector.max_side) else None

    def infer(self, frames: list[Frame], batches: list[FaceBatch]) -> list[FaceBatch]:
        """Crop every face of every frame, run the network once, split the outputs back per frame.

        A backend offering `run_frames` (the GPU ones) cuts the crops on its device from the crop
        matrices, each frame uploaded once; otherwise the crops are cut here on the CPU.
        """
        from pipeline.stages.align import crop_faces, crop_matrices

        if not frames:
            return []
        run_frames = getattr(self.net.backend, "run_frames", None)
        if run_frames is not None and sum(len(b) for b in batches):
            size, scale = self.net.crop_size, self.net.crop_scale
            with self.timer("align"):
                matrices = [crop_matrices(b, size, scale) for b in batches]
            with self.timer("infer"):
                outputs = run_frames([f.image_bgr for f in frames], matrices, size)
        else:
            with self.timer("align"):
                crops = [
                    crop_faces(f.image_bgr, b, self.net.crop_size, self.net.crop_scale)
                    for f, b in zip(frames, batches, strict=True)
                ]
            with self.timer("infer"):
                outputs = self._infer_crops(np.concatenate(crops), batches)
        if self.head is not None:
            outputs = {**outputs, **self.head.outputs(outputs)}
        bounds = np.cumsum([0, *(len(b) for b in batches)])
        return [
            b.with_outputs(**{k: v[lo:hi] for k, v in outputs.items()})
            for b, lo, hi in zip(batches, bounds[:-1], bounds[1:], strict=True)
        ]

    def _infer_crops(self, crops: np.ndarray, batches: list[FaceBatch]) -> dict[str, np.ndarray]:
        if self.refresh is None:
            return self.net.infer(crops)
        track_ids = np.concatenate([b.track_ids for b in batches])
        times_s = np.concatenate([np.full(len(b), b.time_s) for b in batches])
        return self.refresh.infer(crops, track_ids, times_s)

    def aggregate(self, batch: FaceBatch) -> FaceBatch:
        with self.timer("aggregate"):
            return self.aggregator.update(batch)

    def process(self, frames: list[Frame]) -> list[FaceBatch]:
        """Locate faces frame by frame (tracking is sequential), infer them together, aggregate in order."""
        located = [self.locate(f) for f in frames]
        return [self.aggregate(b) for b in self.infer(frames, located)]

    def reset(self) -> None:
        """Forget every track and statistic (the next frame starts a new clip); models stay loaded."""
        from pipeline.stages.aggregate import Aggregator
        from pipeline.stages.track import Tracker

        self.tracker = Tracker()
        self.aggregator = Aggregator(smoothing_s=self.config.smoothing_s)
        self._frames_seen = 0
        self._full_scan_s = -np.inf
        if self.refresh is not None:
            self.refresh.clear()

    def close(self) -> None:
        self.detector.close()
