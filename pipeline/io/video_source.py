"""Video files and network streams decoded with PyAV: `VideoSource` and its open/probe helpers."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import av
import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import SourceInfo
from pipeline.io.sources import DEFAULT_FPS, Source

MAX_CONSECUTIVE_ERRORS = 50  # corrupt packets in a row before a broken file is given up


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
        self.origin_s = float(self._first.time or 0.0)  # input time of frame 0 (time_s 0): audio syncs to it
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
        self.last_error = one_line(e)

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
        raise InputError(f"{shown_as}: cannot be opened ({one_line(e)})") from None


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


def one_line(e: BaseException) -> str:
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return " ".join(str(text).split())
