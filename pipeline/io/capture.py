"""Frame sources: video files and network streams (PyAV), still images (OpenCV), cameras (OpenCV V4L2).

`open_source(path_or_url)` picks the source by content, checks the input up front and turns every
problem into one `InputError` line naming the input. A file that starts decoding and then breaks
(truncated, corrupt packets) is not an error: iteration yields what decodes, stops, and leaves the
loss in `frames_read` / `decode_errors` for the caller to report.

Times: `Frame.time_s` is the presentation time (pts * time_base) relative to the first frame, so
variable-frame-rate files keep their real timing; `Frame.captured_at_s` is `time.monotonic()` when the
frame left the source. `realtime=True` paces file frames to their timestamps, like a camera would.

Where the parts live: the `Source` base class in `pipeline.io.sources`, `VideoSource` (PyAV) in
`pipeline.io.video_source`, `CameraSource` in `pipeline.io.camera`; this module keeps `open_source`,
`open_stream`, input checks and `ImageSource`, and re-exports the rest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import SourceInfo
from pipeline.io.camera import CameraSource
from pipeline.io.sources import DEFAULT_FPS, Source  # noqa: F401  (re-exported: `from pipeline.io.capture import Source`)
from pipeline.io.video_source import MAX_CONSECUTIVE_ERRORS, VideoSource, one_line  # noqa: F401  (re-exported)

_IMAGE_EXTS = (
    ".jpg .jpeg .jpe .png .bmp .dib .webp .tif .tiff .jp2 .pbm .pgm .ppm .pnm .pxm .sr .ras .exr .hdr .pic"
)
IMAGE_EXTENSIONS = frozenset(_IMAGE_EXTS.split())
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  ")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")


class ImageSource(Source):
    """A still image as one frame (index 0, time 0); `info.fps` is 0 because a still has no rate."""

    def __init__(self, path: str | Path, image_bgr: np.ndarray, realtime: bool = False) -> None:
        h, w = image_bgr.shape[:2]
        codec = Path(path).suffix.lstrip(".").lower() or "image"
        super().__init__(SourceInfo(str(path), w, h, 0.0, 1, 0.0, codec, is_still=True), realtime)
        self._image_bgr = image_bgr

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        if not self._closed:
            yield 0.0, self._image_bgr
        self.close()


def open_source(path_or_url: str | Path | int, *, realtime: bool = False, timeout_s: float = 10.0) -> Source:
    """Open a file, URL (rtsp/http/...) or camera index as a frame source.

    Images are recognised by extension or magic bytes and decoded with OpenCV; everything else
    goes to FFmpeg. `timeout_s` bounds connecting to and reading from network streams.
    """
    if isinstance(path_or_url, int):
        return CameraSource(path_or_url)
    text = str(path_or_url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return open_stream(text, realtime=realtime, timeout_s=timeout_s)
    path = Path(text)
    head = _check_file(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS or head.startswith(_IMAGE_MAGIC) or _is_webp(head):
        image = _decode_image(path)
        if image is not None:
            return ImageSource(text, image, realtime)
    return VideoSource(os.path.abspath(path), text, realtime=realtime)  # absolute: no "a:b" protocol mixups


def open_stream(url: str, *, realtime: bool = False, timeout_s: float = 10.0) -> VideoSource:
    """A network stream through FFmpeg: TCP for RTSP, socket timeouts, `is_live` set."""
    us = str(int(timeout_s * 1e6))
    # microseconds; RTMP reads "timeout" as a listen timeout (server mode), so it gets rw_timeout
    options = {"rw_timeout": us} if url.lower().startswith("rtmp") else {"timeout": us}
    if url.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    return VideoSource(url, url, realtime=realtime, options=options, timeout_s=timeout_s, is_live=True)


def _check_file(path: Path) -> bytes:
    """The first bytes of a readable, non-empty regular file; any other case is an InputError."""
    try:
        if path.is_dir():
            raise InputError(f"{path}: is a directory, expected a video or image file")
        with open(path, "rb") as f:
            head = f.read(16)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{path}: no such file") from None
    except PermissionError:  # the file, or a folder on its path
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({one_line(e)})") from None
    if not head:
        raise InputError(f"{path}: is empty (0 bytes)")
    return head


def _is_webp(head: bytes) -> bool:
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


def _decode_image(path: Path) -> np.ndarray | None:
    """8-bit BGR pixels, or None if OpenCV cannot decode it (read from bytes so any path works).

    IMREAD_COLOR turns grey, 16-bit and alpha images into 8-bit BGR and applies EXIF orientation.
    """
    data = np.frombuffer(path.read_bytes(), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image)
