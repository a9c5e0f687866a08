"""Local cameras through OpenCV (V4L2 on Linux): `CameraSource`."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import SourceInfo
from pipeline.io.sources import DEFAULT_FPS, Source


class CameraSource(Source):
    """A local camera through OpenCV (V4L2 on Linux); times are monotonic capture times, never paced."""

    def __init__(self, index: int) -> None:
        self._cap = _open_camera(index)
        ok, first = self._cap.read()
        if not ok or first is None:
            self._cap.release()
            raise InputError(f"camera {index}: opened but delivered no frame (busy, or not a capture device)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0) or DEFAULT_FPS
        h, w = first.shape[:2]
        super().__init__(SourceInfo(f"camera:{index}", w, h, fps, None, None, "camera", is_live=True), False)

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        """Fresh frames only: the probe frame read at open is seconds old once the models have loaded."""
        t0 = time.monotonic()
        image = self._next_image(self._read)
        while image is not None:
            yield time.monotonic() - t0, _to_bgr(image)
            image = self._next_image(self._read)
        self.close()

    def _read(self) -> np.ndarray | None:
        ok, image = self._cap.read()
        if not ok:
            self.decode_errors += 1
            self.last_error = "camera stopped delivering frames"
        return image if ok else None

    def _release(self) -> None:
        self._cap.release()


def _open_camera(index: int) -> cv2.VideoCapture:
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    logging = getattr(cv2.utils, "logging", None)  # OpenCV 4 wheels have no log-level API
    level = logging.getLogLevel() if logging else None
    if logging:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)  # OpenCV warns on stderr; we raise
    try:
        cap = cv2.VideoCapture(index, backend)
    finally:
        if logging:
            logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        where = f"/dev/video{index}" if backend == cv2.CAP_V4L2 else f"index {index}"
        raise InputError(f"camera {index}: cannot be opened (no camera at {where}, or it is busy)")
    return cap


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, :3])
