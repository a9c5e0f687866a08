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

Hostile inputs: a still is checked against a pixel budget (`max_pixels`) from its header, before any
pixel is decoded: a JPEG over it is decoded at 1/2, 1/4 or 1/8 size (libjpeg's scaled decoding, so
memory follows the reduced size), anything else over it is refused in one line. A FIFO or device is
waited on for at most `timeout_s` and then read by FFmpeg through its descriptor, so nothing it sent is
lost and a writer that stalls ends the read. Stream URLs are shown without their credentials.
"""

from __future__ import annotations

import math
import os
import select
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import SourceInfo
from pipeline.io.camera import CameraSource
from pipeline.io.sources import DEFAULT_FPS, Source  # noqa: F401  (re-exported: `from pipeline.io.capture import Source`)
from pipeline.io.urls import redact_urls
from pipeline.io.video_source import VideoSource, one_line

_IMAGE_EXTS = (
    ".jpg .jpeg .jpe .png .bmp .dib .webp .tif .tiff .jp2 .pbm .pgm .ppm .pnm .pxm .sr .ras .exr .hdr .pic"
)
IMAGE_EXTENSIONS = frozenset(_IMAGE_EXTS.split())
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  ")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
DEFAULT_MAX_PIXELS = 100_000_000
"""The pixel budget of a still (`--max-pixels`): 100 MP, ~300 MB decoded, bigger than any camera's photo."""
DEFAULT_TIMEOUT_S = 10.0
"""How long a network stream, FIFO or device may take to open and, after that, to deliver data."""


class ImageSource(Source):
    """A still image as one frame (index 0, time 0); `info.fps` is 0 because a still has no rate."""

    def __init__(
        self, path: str | Path, image_bgr: np.ndarray, realtime: bool = False, scale: int = 1
    ) -> None:
        h, w = image_bgr.shape[:2]
        codec = Path(path).suffix.lstrip(".").lower() or "image"
        super().__init__(SourceInfo(str(path), w, h, 0.0, 1, 0.0, codec, is_still=True), realtime)
        self._image_bgr = image_bgr
        self.scale = scale  # decoded at 1/scale of its stored size to keep within the pixel budget

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        if not self._closed:
            yield 0.0, self._image_bgr
        self.close()


def open_source(
    path_or_url: str | Path | int,
    *,
    realtime: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Source:
    """Open a file, URL (rtsp/http/...) or camera index as a frame source.

    Images are recognised by extension or magic bytes and decoded with OpenCV within `max_pixels`;
    everything else goes to FFmpeg. `timeout_s` bounds opening and reading network streams, FIFOs and
    devices.
    """
    if isinstance(path_or_url, int):
        return CameraSource(path_or_url)
    text = str(path_or_url)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return open_stream(text, realtime=realtime, timeout_s=timeout_s)
    path = Path(text)
    if _is_special(path):
        return _open_special(path, realtime, timeout_s)
    head = _check_file(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS or head.startswith(_IMAGE_MAGIC) or _is_webp(head):
        decoded = _decode_image(path, max_pixels)
        if decoded is not None:
            image, scale = decoded
            return ImageSource(text, image, realtime, scale=scale)
    return VideoSource(os.path.abspath(path), text, realtime=realtime)  # absolute: no "a:b" protocol mixups


def open_stream(url: str, *, realtime: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S) -> VideoSource:
    """A network stream through FFmpeg: TCP for RTSP, socket timeouts, `is_live` set; shown without the
    credentials its URL may carry."""
    us = str(int(timeout_s * 1e6))
    # microseconds; RTMP reads "timeout" as a listen timeout (server mode), so it gets rw_timeout
    options = {"rw_timeout": us} if url.lower().startswith("rtmp") else {"timeout": us}
    if url.lower().startswith("rtsp"):
        options["rtsp_transport"] = "tcp"
    shown = redact_urls(url)
    return VideoSource(url, shown, realtime=realtime, options=options, timeout_s=timeout_s, is_live=True)


def _is_special(path: Path) -> bool:
    """A FIFO, character or block device: opening or reading it can block forever."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # reported by _check_file
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def _open_special(path: Path, realtime: bool, timeout_s: float) -> VideoSource:
    """A FIFO or device through FFmpeg's `pipe:FD`: opened without blocking, waited on for `timeout_s`,
    never read here (what it sends is all FFmpeg's); a read that then stalls times out the same way."""
    kind = "FIFO" if stat.S_ISFIFO(path.stat().st_mode) else "device"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise InputError(f"{path}: cannot be opened ({one_line(e)})") from None
    try:
        poll = select.poll()
        poll.register(fd, select.POLLIN)
        if not poll.poll(int(timeout_s * 1000)):
            writer = "nothing is writing to it" if kind == "FIFO" else "it gives no data"
            raise InputError(f"{path}: {kind} gave no data within {timeout_s:g} s (open timed out: {writer})")
        us = str(int(timeout_s * 1e6))
        return VideoSource(
            f"pipe:{fd}", str(path), realtime=realtime, options={"rw_timeout": us}, timeout_s=timeout_s, fd=fd
        )
    except BaseException:
        os.close(fd)
        raise


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


_PIL_LOCK = threading.Lock()


def image_size_wh(path: Path) -> tuple[tuple[int, int], str] | None:
    """(width, height) and format from the image's header, decoding no pixel; None if PIL cannot tell.
    PIL's own bomb limit is lifted meanwhile: the budget here is the caller's, `max_pixels`."""
    from PIL import Image

    with _PIL_LOCK:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                return im.size, str(im.format)
        except Exception:  # not a format PIL knows (EXR, HDR, ...), or a damaged header: OpenCV decides
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip


def _decode_image(path: Path, max_pixels: int) -> tuple[np.ndarray, int] | None:
    """8-bit BGR pixels and the reduction they were decoded at, or None if OpenCV cannot decode it (read
    from bytes so any path works). Over `max_pixels` by its header: a JPEG at the smallest reduction
    that fits, anything else an InputError; OpenCV's own limit (2^30 pixels) is an InputError too.

    IMREAD_COLOR turns grey, 16-bit and alpha images into 8-bit BGR and applies EXIF orientation.
    """
    header = image_size_wh(path)
    scale = 1
    if header is not None:
        (w, h), fmt = header
        scale = _reduction(path, w, h, fmt, max_pixels)
    data = np.frombuffer(path.read_bytes(), np.uint8)
    try:
        image = cv2.imdecode(data, _REDUCED[scale])
    except cv2.error as e:
        raise InputError(f"{path}: image too large for the decoder ({_cv_reason(e)})") from None
    if image is None:
        return None
    h, w = image.shape[:2]
    if w * h > max_pixels:  # a format whose header PIL could not read
        raise InputError(_over_budget(path, w, h, max_pixels))
    return np.ascontiguousarray(image), scale


def _reduction(path: Path, w: int, h: int, fmt: str, max_pixels: int) -> int:
    """1 within the budget; 2, 4 or 8 for a JPEG over it (the first that fits); else an InputError."""
    if w * h <= max_pixels:
        return 1
    if fmt in ("JPEG", "MPO"):
        for scale in (2, 4, 8):
            if math.ceil(w / scale) * math.ceil(h / scale) <= max_pixels:
                return scale
    raise InputError(_over_budget(path, w, h, max_pixels))


def _over_budget(path: Path, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), over the pixel budget of {max_pixels / 1e6:g} MP; "
        "shrink it or raise --max-pixels"
    )


def _cv_reason(e: cv2.error) -> str:
    text = " ".join((getattr(e, "err", None) or str(e)).split())
    return "over OpenCV's limit of 2^30 pixels" if "CV_IO_MAX_IMAGE_PIXELS" in text else text[:200]
