"""The stateful middle of the pipeline, composed: shots -> detect -> track -> align -> infer -> aggregate.

Composition only: each stage owns its policy (`ShotDetector` where a scene cuts, `DetectionSchedule` when
and at what size to detect, `AttributeRefresh` when gender/age are recomputed, `MinFace` which faces are
inferred, the tracker its ids and their appearance, the aggregator its smoothing). Appearance runs one
step behind the boxes: `infer` hands each inferred batch back to the tracker (`Tracker.observe`, a
thread-safe queue), whose next `update` uses its embeddings (docs/tracking.md).
One `FaceAnalyzer` lives on one thread (tracking and smoothing are stateful), or on two in live mode:
`locate` (shots, detector, schedule, tracker) on one, `infer` and `aggregate` (net, attribute refresh,
aggregator) on the other. Tracks that end are handed from the first to the second by message (a queue of
ended ids), never by touching the other thread's state. `process(frames)` takes a short run of
consecutive frames and makes ONE inference call for all of their faces.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from pipeline.config import AnalyzerConfig
from pipeline.frames import FaceBatch, Frame
from pipeline.runtime.timing import StageTimer


class FaceAnalyzer:
    """Wires the detector, schedule, tracker, network, attribute refresh, head and aggregator."""

    def __init__(self, config: AnalyzerConfig, store=None, timer: StageTimer | None = None) -> None:
        from engines.multitask import MultiTaskNet, NetConfig
        from engines.store.store import ModelStore
        from pipeline.stages.attributes import attribute_refresh_for
        from pipeline.stages.detect import LOW_SCORE, create_detector
        from pipeline.stages.schedule import DetectionSchedule

        self.config = config
        self.store = store or ModelStore(mirror_dir=config.models_dir)
        self.timer = timer or StageTimer()
        self.detector = create_detector(config.detector, self.store, low_score=LOW_SCORE)
        max_side = self.detector.max_side
        self.schedule = DetectionSchedule(config.detect_every, config.coarse_detection, max_side)
        threads = {} if config.threads is None else {"intra_op_threads": config.threads}

        def net(heads: tuple[str, ...]):
            cfg = NetConfig(heads=heads, quality=config.quality)
            return MultiTaskNet(cfg, self.store, config.backend, **threads)

        self.net = net(config.heads)
        self.head = None
        if config.extra_head:
            from pipeline.stages.head import load_head

            self.head = load_head(config.extra_head, config)
        self.refresh = attribute_refresh_for(config, self.net, lambda: net(("emotion",)), head=self.head)
        self.aggregator = None
        self._new_clip_state()

    def _new_clip_state(self) -> None:
        """Everything one clip accumulates, new: tracks, smoothing, shots and the counts summary.json
        reports (faces below --min-face, cuts), so a reused analyzer answers as a fresh one."""
        from pipeline.stages.aggregate import Aggregator
        from pipeline.stages.appearance import default_window_s
        from pipeline.stages.minface import MinFace
        from pipeline.stages.shots import ShotDetector
        from pipeline.stages.track import Tracker

        self.shots = ShotDetector() if self.config.cut_detection else None
        self.min_face = MinFace(self.config.min_face_px)
        self.tracker = Tracker(
            high_score=self.detector.high_score,
            low_score=self.detector.low_score,
            min_hits=self.config.track_min_hits,
            reid_window_s=(
                default_window_s(self.net.config.quality)
                if self.config.reid_window_s is None
                else self.config.reid_window_s
            ),
        )
        if self.aggregator is not None:
            self.aggregator.close()
        self.aggregator = Aggregator(smoothing_s=self.config.smoothing_s)
        self.schedule.reset()
        if self.refresh is not None:
            self.refresh.clear()
        # ended tracks: (frame index at which they ended, ids), sent by `locate`, taken by `infer`
        self._ended: deque[tuple[int, list[int]]] = deque()
        self._retiring: list[tuple[int, list[int]]] = []  # taken, released from the aggregator once passed

    def locate(self, frame: Frame) -> FaceBatch:
        """Detect (when the schedule says so) or predict, then track: boxes with stable ids for one frame.
        A shot boundary ends every track and makes this frame a full-size detection."""
        if self.shots is not None:
            cut = self._test_cut(frame) if frame.cut is None else self._count_cut(frame.cut)
            if cut:
                self.tracker.cut()
                self.schedule.reset()
        detect_now, side = self.schedule.plan(frame, self.tracker.active_boxes)
        if not detect_now:
            with self.timer("track"):
                return self.tracker.predict(frame.index, frame.time_s, frame.size_wh)
        with self.timer("detect"):
            found = self.detector.detect(frame, max_side=side)
        with self.timer("track"):
            located = self.tracker.update(found)
            ended = self.tracker.pop_ended()
        if ended:
            self._ended.append((frame.index, ended))  # a message to whichever thread runs `infer`
        return located

    def _test_cut(self, frame: Frame) -> bool:
        """The cut test here, for frames whose source did not run it (live, scoring, tests)."""
        with self.timer("shots"):
            return self.shots.update(frame)

    def _count_cut(self, cut: bool) -> bool:
        """A cut the source found (offline: `stages.shots.with_cuts`), counted for summary.json."""
        self.shots.cuts += int(cut)
        return cut

    def infer(self, frames: list[Frame], batches: list[FaceBatch]) -> list[FaceBatch]:
        """Crop every face of every frame, run the network once, split the outputs back per frame.

        A backend offering `run_frames` (the GPU ones) cuts the crops on its device from the crop
        matrices, each frame uploaded once; otherwise the crops are cut here on the CPU. Faces under
        `min_face_px` are left out and get NaN outputs; the tracker gets the results back (appearance).
        """
        from pipeline.stages.minface import scatter

        if not frames:
            return []
        taken = self._take_ended()
        keep = [self.min_face.keep(b) for b in batches]
        outputs = self._run_net(
            frames, [b if k.all() else b.select(k) for b, k in zip(batches, keep, strict=True)]
        )
        if self.refresh is not None:
            for _, ids in taken:
                self.refresh.forget(ids)
        if self.head is not None:
            outputs = {**outputs, **self.head.outputs(outputs)}
        bounds = np.cumsum([0, *(int(k.sum()) for k in keep)])
        inferred = [
            b.with_outputs(**{name: scatter(v[lo:hi], k) for name, v in outputs.items()})
            for b, k, lo, hi in zip(batches, keep, bounds[:-1], bounds[1:], strict=True)
        ]
        for batch in inferred:
            self.tracker.observe(batch)
        return inferred

    def _run_net(self, frames: list[Frame], batches: list[FaceBatch]) -> dict[str, np.ndarray]:
        from pipeline.stages.align import crop_faces, crop_matrices

        size, scale = self.net.crop_size, self.net.crop_scale
        run_frames = getattr(self.net.backend, "run_frames", None)
        if run_frames is not None and sum(len(b) for b in batches):
            with self.timer("align"):
                matrices = [crop_matrices(b, size, scale) for b in batches]
            with self.timer("infer"):
                return run_frames([f.image_bgr for f in frames], matrices, size)
        with self.timer("align"):
            crops = [crop_faces(f.image_bgr, b, size, scale) for f, b in zip(frames, batches, strict=True)]
        with self.timer("infer"):
            return self._infer_crops(np.concatenate(crops), batches)

    def _infer_crops(self, crops: np.ndarray, batches: list[FaceBatch]) -> dict[str, np.ndarray]:
        if self.refresh is None:
            return self.net.infer(crops)
        track_ids = np.concatenate([b.track_ids for b in batches])
        times_s = np.concatenate([np.full(len(b), b.time_s) for b in batches])
        return self.refresh.infer(crops, track_ids, times_s)

    def aggregate(self, batch: FaceBatch) -> FaceBatch:
        """Smooth and record one inferred batch; tracks that ended by this frame are then released."""
        with self.timer("aggregate"):
            out = self.aggregator.update(batch)
            if self._retiring and self._retiring[0][0] <= batch.frame_index:
                done = [e for e in self._retiring if e[0] <= batch.frame_index]
                self._retiring = [e for e in self._retiring if e[0] > batch.frame_index]
                for _, ids in done:
                    self.aggregator.retire(ids)
            return out

    def _take_ended(self) -> list[tuple[int, list[int]]]:
        """The ended-track messages sent since the last call (kept to release them from the aggregator)."""
        taken = []
        while self._ended:
            taken.append(self._ended.popleft())
        self._retiring += taken
        return taken

    def process(self, frames: list[Frame]) -> list[FaceBatch]:
        """Locate faces frame by frame (tracking is sequential), infer them together, aggregate in order."""
        located = [self.locate(f) for f in frames]
        return [self.aggregate(b) for b in self.infer(frames, located)]

    def tracking_facts(self) -> dict:
        """What the identity stages did, for summary.json."""
        return {
            "min_face_px": self.min_face.min_px,
            "faces_below_min_face": self.min_face.skipped,
            "shot_cuts": None if self.shots is None else self.shots.cuts,
            "reidentified": self.tracker.book.reids,
            "appearance_vetoes": self.tracker.book.vetoes,
        }

    def reset(self) -> None:
        """Forget every track and statistic (the next frame starts a new clip); models stay loaded."""
        self._new_clip_state()

    def close(self) -> None:
        """Close the detector and the nets' backends; the aggregator and the nets' facts stay readable."""
        try:
            self.detector.close()
        finally:
            for net in (self.net, getattr(self.refresh, "emotion", None)):
                getattr(net, "close", lambda: None)()
