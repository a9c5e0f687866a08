"""Face detectors behind one interface: YuNet (OpenCV, default) and BlazeFace (MediaPipe Tasks).

Every detector runs on a reduced copy of the frame (longest side `max_side`, never upscaled) and maps
boxes and landmarks back to full-resolution pixels. Landmarks follow YuNet's order, which names the
points from the subject's view: right eye, left eye, nose tip, right mouth corner, left mouth corner
(so for a frontal face the image-left eye comes first). MediaPipe uses the same convention.

Each detector names its `high_score` (the score a face needs on its own) and returns faces down to
`low_score` (default: the high score). The analyzer asks for LOW_SCORE: its tracker trusts high-score faces
to start tracks and lets the ones between only continue confirmed tracks (ByteTrack's second stage,
docs/tracking.md); anyone else calling a detector gets only faces it trusts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Protocol

import cv2
import numpy as np

from engines.errors import EmostreamError
from engines.store.store import ModelStore
from pipeline.config import DETECTOR_MODELS
from pipeline.frames import FaceBatch, Frame

DEFAULT_MAX_SIDE = 640
"""Measured with YuNet on 2 CPU cores: all 5 faces of the group photo, 3-8 per 1080p crowd frame
(480 drops to 3-10 with more false hits), ~6 ms per frame for both 640x360 and 1080p video, where
800 costs ~11 ms for little gain. YuNet was trained at 640x640; OpenCV pads the input to a multiple
of 32 itself, so the reduced size need not be one. INTER_LINEAR: same faces as INTER_AREA, 5x cheaper."""

LOW_SCORE = 0.3
"""Lowest score a detector returns for the tracker. YuNet on the 1080p crowd (every 3rd frame): 87 of 425
faces score 0.3-0.6, small faces at the back that the high threshold lost for a pass or two."""

MOUTH_HALF_WIDTH = 0.414
"""Half mouth width as a fraction of the eye-to-eye vector, from the ArcFace 5-point template
(eyes 35.2 px apart, mouth corners 29.2 px apart): BlazeFace gives only the mouth centre."""


class DetectorError(EmostreamError, ValueError):
    """A detector cannot be created (unknown name, missing optional package)."""


class Detector(Protocol):
    """Finds faces in one frame; boxes and landmarks in the frame's full-resolution pixels."""

    def detect(self, frame: Frame, max_side: int | None = None) -> FaceBatch:
        """`max_side` (optional) overrides the detector's input size for this frame."""
        ...

    def close(self) -> None: ...


def set_cv_threads(info, threads: int | None = None) -> None:
    """OpenCV (the detector) threads for frames of `info`'s size, process-wide and not restored: prefer
    `pipeline.runtime.threads.job_threads`, which restores the count after the job. `threads` overrides
    the rule (`detector_threads`: on 2 cores one thread for 720p and up, where decoding and encoding need
    the cores, two below; measured in docs/benchmarks.md: 1080p 21 -> 33 fps with one thread)."""
    from pipeline.runtime.threads import detector_threads

    cv2.setNumThreads(threads or detector_threads(info.width, info.height))


def create_detector(name: str = "yunet", store: ModelStore | None = None, **opts) -> Detector:
    """A detector by name: "yunet" (default), "blazeface" (short range) or "blazeface-full" (full range)."""
    store = store if store is not None else ModelStore()
    if name not in DETECTOR_MODELS:
        raise DetectorError(f"unknown detector {name!r}; valid detectors: {', '.join(DETECTOR_NAMES)}")
    kind = YuNetDetector if name == "yunet" else BlazeFaceDetector
    return kind(store.path(DETECTOR_MODELS[name]), **opts)


DETECTOR_NAMES = tuple(DETECTOR_MODELS)


class YuNetDetector:
    """OpenCV's FaceDetectorYN on a reduced frame; `setInputSize` only when the frame size changes."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        low_score: float | None = None,
    ) -> None:
        self.max_side, self.high_score = max_side, score_threshold
        self.low_score = low_score = min(low_score or score_threshold, score_threshold)
        self._input_wh = (max_side, max_side)
        with _quiet_opencv():  # OpenCV 5 warns about targets on every create
            self._net = cv2.FaceDetectorYN.create(
                str(model_path), "", self._input_wh, low_score, nms_threshold, top_k
            )

    def detect(self, frame: Frame, max_side: int | None = None) -> FaceBatch:
        small, scale_xy = _reduced(frame.image_bgr, max_side or self.max_side)
        input_wh = (small.shape[1], small.shape[0])
        if input_wh != self._input_wh:
            self._net.setInputSize(input_wh)
            self._input_wh = input_wh
        _, rows = self._net.detect(small)
        rows = np.zeros((0, 15), np.float32) if rows is None else rows
        xywh, landmarks, scores = rows[:, :4], rows[:, 4:14].reshape(-1, 5, 2), rows[:, 14]
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return _batch(frame, xyxy * np.tile(scale_xy, 2), scores, landmarks * scale_xy)

    def close(self) -> None:
        self._net = None


class BlazeFaceDetector:
    """MediaPipe Tasks FaceDetector (IMAGE mode) on a reduced RGB copy of the frame.

    Its 6 keypoints are right eye, left eye, nose tip, mouth centre, right and left ear tragion
    (subject's view, like YuNet). Mouth corners are estimated as mouth centre -/+ MOUTH_HALF_WIDTH x
    the eye-to-eye vector, so they follow head roll; good enough for 5-point alignment, not for
    measuring the mouth.
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        max_side: int = DEFAULT_MAX_SIDE,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        low_score: float | None = None,
    ) -> None:
        self.max_side, self.high_score = max_side, score_threshold
        self.low_score = min(low_score or score_threshold, score_threshold)
        self._mp, vision, base_options = _import_mediapipe()
        options = vision.FaceDetectorOptions(
            base_options=base_options(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=self.low_score,
            min_suppression_threshold=nms_threshold,
        )
        _hook_shutdown()
        with _quiet_stderr():  # LiteRT prints INFO/WARNING lines straight to fd 2 on create and first run
            self._task = vision.FaceDetector.create_from_options(options)
            self._task.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=_BLANK_RGB))
        _OPEN_TASKS.add(self)

    def detect(self, frame: Frame, max_side: int | None = None) -> FaceBatch:
        small, scale_xy = _reduced(frame.image_bgr, max_side or self.max_side)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=rgb)
        found = self._task.detect(image).detections
        in_wh = np.array([small.shape[1], small.shape[0]], np.float32)
        xyxy = np.array([_xyxy(d.bounding_box) for d in found], np.float32).reshape(-1, 4)
        scores = np.array([d.categories[0].score for d in found], np.float32)
        points = np.array([[(k.x, k.y) for k in d.keypoints[:4]] for d in found], np.float32)
        landmarks = _five_points(points.reshape(-1, 4, 2) * in_wh)
        return _batch(frame, xyxy * np.tile(scale_xy, 2), scores, landmarks * scale_xy)

    def close(self) -> None:
        """Close the MediaPipe task now: its own __del__ raises if left to interpreter exit."""
        task, self._task = getattr(self, "_task", None), None
        _OPEN_TASKS.discard(self)
        if task is None:
            return
        try:
            with _quiet_stderr():
                task.close()
        except RuntimeError:  # its dispatcher thread is already gone (interpreter shutting down)
            task._handle = None  # let the C object go with the process instead of raising in __del__

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


_BLANK_RGB = np.zeros((64, 64, 3), np.uint8)
_OPEN_TASKS: weakref.WeakSet[BlazeFaceDetector] = weakref.WeakSet()


def _close_open_tasks() -> None:
    """Close BlazeFace tasks before concurrent.futures stops the executors they dispatch through."""
    for detector in list(_OPEN_TASKS):
        detector.close()


_HOOKED: list[bool] = []


def _hook_shutdown() -> None:
    """Once, when the first BlazeFace task is made (never at import): threading's pre-shutdown hook runs
    before the executors shut down; atexit runs after (too late)."""
    if not _HOOKED:
        _HOOKED.append(True)
        getattr(threading, "_register_atexit", lambda f: None)(_close_open_tasks)


def _import_mediapipe():
    """mediapipe, its vision tasks and BaseOptions; imported only when a BlazeFace detector is made."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # before the import: silence glog INFO/WARNING
    try:
        import mediapipe
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as e:
        raise DetectorError(
            f"BlazeFace detectors need mediapipe ({e}): pip install 'mediapipe>=0.10.33'"
        ) from None
    return mediapipe, vision, BaseOptions


def _reduced(image_bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """The image shrunk so its longest side is at most `max_side`, and the (x, y) factors back."""
    h, w = image_bgr.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return np.ascontiguousarray(image_bgr), np.ones(2, np.float32)
    small_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(image_bgr, small_wh, interpolation=cv2.INTER_LINEAR)
    return small, np.array([w / small_wh[0], h / small_wh[1]], np.float32)


def _batch(frame: Frame, xyxy: np.ndarray, scores: np.ndarray, landmarks: np.ndarray) -> FaceBatch:
    """Boxes clipped to the frame (empty ones dropped) in a FaceBatch for this frame."""
    w, h = frame.size_wh
    xyxy = np.clip(xyxy.reshape(-1, 4), 0, [w, h, w, h]).astype(np.float32)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return FaceBatch.from_boxes(
        frame.index,
        frame.time_s,
        xyxy[keep],
        scores=np.asarray(scores, np.float32)[keep],
        landmarks=np.asarray(landmarks, np.float32).reshape(-1, 5, 2)[keep],
        frame_wh=(w, h),
    )


def _xyxy(box) -> tuple[float, float, float, float]:
    return box.origin_x, box.origin_y, box.origin_x + box.width, box.origin_y + box.height


def _five_points(points: np.ndarray) -> np.ndarray:
    """(N,4,2) eyes, nose, mouth centre -> (N,5,2) with mouth corners estimated along the eye axis."""
    eye_vector = points[:, 1] - points[:, 0]
    mouth = points[:, 3]
    corners = (mouth - MOUTH_HALF_WIDTH * eye_vector, mouth + MOUTH_HALF_WIDTH * eye_vector)
    return np.stack([points[:, 0], points[:, 1], points[:, 2], *corners], axis=1)


@contextlib.contextmanager
def _quiet_opencv():
    logging = getattr(cv2.utils, "logging", None)  # OpenCV 4 wheels have none (and print no such warning)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)


@contextlib.contextmanager
def _quiet_stderr():
    """Send fd 2 to /dev/null for a moment (C++ loggers that no setting reaches)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
