"""Frame sources: video files and network streams (PyAV), still images (OpenCV), cameras (OpenCV V4L2).

`open_source(path_or_url)` picks the source by content, checks the input up front and turns every
problem into one `InputError` line naming the input. A file that starts decoding and then breaks
(truncated, corrupt packets) is not an error: iteration yields what decodes, stops, and leaves the
loss in `frames_read` / `decode_errors` for the caller to report.

Times: `Frame.time_s` is the presentation time (pts * time_base) relative to the first frame, so
variable-frame-rate files keep their real timing; `Frame.captured_at_s` is `time.monotonic()` when the
frame left the source. `realtime=True` paces file frames to their timestamps, like a camera would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import Frame, SourceInfo

_IMAGE_EXTS = (
    ".jpg .jpeg .jpe .png .bmp .dib .webp .tif .tiff .jp2 .pbm .pgm .ppm .pnm .pxm .sr .ras .exr .hdr .pic"
)
IMAGE_EXTENSIONS = frozenset(_IMAGE_EXTS.split())
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*", b"\x00\x00\x00\x0cjP  ")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt")
DEFAULT_FPS = 30.0  # assumed when a stream declares no rate (only used to time frames without pts)
MAX_CONSECUTIVE_ERRORS = 50  # corrupt packets in a row before a broken file is given up


class Source:
    """An iterable of `Frame`s with `.info`; iterate once, then `close()` (or use `with`)."""

    info: SourceInfo

    def __init__(self, info: SourceInfo, realtime: bool = False) -> None:
        self.info = info
        self.realtime = realtime
        self.frames_read = 0  # frames delivered so far
        self.decode_errors = 0  # packets or reads that failed (a broken tail counts here)
        self.last_error = ""  # the last decode problem, for the caller's report
        self._iterator: Iterator[Frame] | None = None
        self._closed = False
        self._lock = threading.Lock()  # one decode step at a time; close() from any thread waits for it

    def __iter__(self) -> Iterator[Frame]:
        if self._iterator is None:
            self._iterator = self._paced()
        return self._iterator

    def _paced(self) -> Iterator[Frame]:
        """Wrap the raw (time_s, image) pairs into Frames, sleeping to their times if `realtime`."""
        start: float | None = None
        for time_s, image_bgr in self._images():
            if self.realtime:
                now = time.monotonic()
                start = now - time_s if start is None else start
                if (delay := start + time_s - now) > 0:
                    time.sleep(delay)
            frame = Frame(self.frames_read, time_s, image_bgr, self.info, captured_at_s=time.monotonic())
            self.frames_read += 1
            yield frame

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        raise NotImplementedError

    def _next_image(self, step):
        """Run one decode/read step unless the source was closed (then None)."""
        with self._lock:
            return None if self._closed else step()

    def close(self) -> None:
        """Release the file, stream or device (safe to call twice, from any thread)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._release()

    def _release(self) -> None:
        """Free what the source holds (called once, under the lock)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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


class VideoSource(Source):
    """Any file or URL FFmpeg reads, decoded with PyAV (threaded) into BGR frames."""

    def __init__(
        self,
        target: str,
        shown_as: str,
        *,
        realtime: bool = False,
        options: dict | None = None,
        timeout_s: float | None = None,
        is_live: bool = False,
    ) -> None:
        self._container = _open_container(target, shown_as, options, timeout_s)
        try:
            self._stream = _video_stream(self._container, shown_as)
            super().__init__(_video_info(self._container, self._stream, shown_as, is_live), realtime)
            self._decoded = self._decode()
            self._first = self._first_frame(shown_as)
            self._rotate = _ROTATIONS.get(round(self._first.rotation or 0) % 360)
            if self._rotate in (cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE):
                self.info = dataclasses.replace(self.info, width=self.info.height, height=self.info.width)
        except BaseException:
            self._container.close()
            raise
        self._t0 = self._first.pts
        self._last_time_s = -1.0 / self.info.fps

    def _first_frame(self, shown_as: str) -> av.VideoFrame:
        """Decode up front, so a file with no decodable frame fails at open, not mid-run."""
        first = next(self._decoded, None)
        if first is None:
            detail = f" ({self.decode_errors} errors: {self.last_error})" if self.last_error else ""
            raise InputError(f"{shown_as}: no video frame could be decoded{detail}")
        return first

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames in presentation order; corrupt packets are counted and skipped, a broken read ends it."""
        packets = self._container.demux(self._stream)
        decoded = consecutive = 0
        while consecutive < MAX_CONSECUTIVE_ERRORS:
            try:
                frames = next(packets).decode()
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as e:
                self._note_error(e)
                consecutive += 1
                continue
            consecutive = 0
            decoded += len(frames)
            yield from frames
        self._note_shortfall(decoded)

    def _note_shortfall(self, decoded: int) -> None:
        """A stream that ends short of its declared frame count lost its tail (truncated file)."""
        expected = self.info.frame_count
        if expected and decoded < expected:
            self.decode_errors += 1
            cause = f" (last error: {self.last_error})" if self.last_error else ""
            self.last_error = f"stream ended at frame {decoded} of {expected} declared{cause}"

    def _note_error(self, e: BaseException) -> None:
        self.decode_errors += 1
        self.last_error = _one_line(e)

    def _images(self) -> Iterator[tuple[float, np.ndarray]]:
        frame: av.VideoFrame | None = self._first
        self._first = None
        while frame is not None:
            image = frame.to_ndarray(format="bgr24")
            yield self._time_of(frame), image if self._rotate is None else cv2.rotate(image, self._rotate)
            frame = self._next_image(lambda: next(self._decoded, None))
        self.close()  # the end: free the decoder now rather than at garbage collection

    def _time_of(self, frame: av.VideoFrame) -> float:
        """pts * time_base from the first frame; a frame without pts comes one frame period after the last."""
        if frame.pts is not None and self._t0 is not None and frame.time_base is not None:
            t = float((frame.pts - self._t0) * frame.time_base)
        else:
            t = self._last_time_s + 1.0 / self.info.fps
        self._last_time_s = t
        return t

    def _release(self) -> None:
        with contextlib.suppress(Exception):
            self._container.close()


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
        raise InputError(f"{path}: cannot be read ({_one_line(e)})") from None
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


def _open_container(target: str, shown_as: str, options: dict | None, timeout_s: float | None):
    try:
        return av.open(target, options=options or {}, timeout=timeout_s)
    except av.error.EOFError:
        raise InputError(f"{shown_as}: ends inside its header (truncated file?)") from None
    except av.error.InvalidDataError:
        if _looks_like_mp4(target):
            raise InputError(
                f"{shown_as}: an MP4/MOV whose index (moov atom) is missing: the file is truncated "
                "or was not finished; nothing in it can be located"
            ) from None
        raise InputError(f"{shown_as}: not a video or image file (no format FFmpeg knows)") from None
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{shown_as}: cannot be opened ({_one_line(e)})") from None


def _looks_like_mp4(target: str) -> bool:
    """True for an ISO media file (its first box is `ftyp`), so a torn MP4 is named as such."""
    try:
        with open(target, "rb") as f:
            return f.read(12)[4:8] == b"ftyp"
    except OSError:
        return False


def _video_stream(container, shown_as: str):
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise InputError(f"{shown_as}: has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # frame + slice threads: decoding overlaps the rest of the pipeline
    return stream


_ROTATIONS = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}
"""The display matrix's counter-clockwise rotation (PyAV `VideoFrame.rotation`, mod 360) -> the cv2.rotate
that shows the picture upright, as players do: phone videos store sideways frames and this matrix."""


def _video_info(container, stream, shown_as: str, is_live: bool) -> SourceInfo:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else DEFAULT_FPS
    if stream.duration is not None and stream.time_base is not None:
        duration_s = float(stream.duration * stream.time_base)
    else:
        duration_s = container.duration / av.time_base if container.duration else None
    return SourceInfo(
        path=shown_as,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=fps,
        frame_count=stream.frames or None,
        duration_s=duration_s,
        codec=stream.codec_context.name,
        is_live=is_live,
    )


def _open_camera(index: int) -> cv2.VideoCapture:
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # OpenCV warns on stderr; we raise
    try:
        cap = cv2.VideoCapture(index, backend)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not cap.isOpened():
        cap.release()
        where = f"/dev/video{index}" if backend == cv2.CAP_V4L2 else f"index {index}"
        raise InputError(f"camera {index}: cannot be opened (no camera at {where}, or it is busy)")
    return cap


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, :3])


def _one_line(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
