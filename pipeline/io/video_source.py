"""Video files and network streams decoded with PyAV: `VideoSource` and its open/probe helpers.

Damage does not end decoding: a packet that fails to decode is counted and the packets after it are
skipped up to the next keyframe (where the picture is whole again), however long the damaged run is; a
file whose last stretch holds no packet at all (trailing garbage) is reported too. Both leave their
account in `last_error` (the caller exits 3). Network, FIFO and device reads that stall past `timeout_s`
are named as timeouts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Generator, Iterator

import av
import cv2
import numpy as np

from pipeline.errors import InputError
from pipeline.frames import SourceInfo
from pipeline.io.sources import DEFAULT_FPS, Source

RESYNC_LIMIT_PACKETS = 600
"""Packets skipped waiting for a keyframe before decoding resumes anyway (streams that flag none)."""
TRAILING_MIN_BYTES = 1 << 20
TRAILING_MIN_FRACTION = 0.05
"""An unread tail this large (both) after the last packet is reported: an index (moov) is far smaller."""


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
        fd: int | None = None,
    ) -> None:
        """`fd`: the descriptor `target` ("pipe:FD") reads, closed with the source."""
        self._fd, self._timeout_s = fd, timeout_s
        self._file_bytes = os.path.getsize(target) if not is_live and os.path.isfile(target) else None
        self._reach_bytes = 0  # the end of the furthest packet read
        self.packets_skipped = 0  # undecodable packets plus those skipped to the next keyframe
        self._damaged_runs: list[float] = []  # the time each damaged run began
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
        """Frames in presentation order; a damaged packet starts a resync at the next keyframe, a broken
        read ends it. Every stream is demuxed (only video decoded) so packet positions cover the file."""
        packets = self._container.demux()
        decoded, resync, skipped = 0, False, 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as e:  # the demuxer cannot go on: the end
                self._note_read_error(e)
                decoded += yield from self._drain()
                break
            self._note_reach(packet)
            if packet.stream.index != self._stream.index:  # (flush packets carry no stream_index)
                continue
            if resync and packet.size and not packet.is_keyframe and skipped < RESYNC_LIMIT_PACKETS:
                self.packets_skipped, skipped = self.packets_skipped + 1, skipped + 1
                continue
            try:
                frames = packet.decode()
            except (av.FFmpegError, OSError) as e:
                self._note_damage(e, packet, resync)
                self._stream.codec_context.flush_buffers()  # a threaded decoder would fail on, late
                resync, skipped = True, 0
                continue
            resync = False
            decoded += len(frames)
            yield from frames
        self._note_losses(decoded)

    def _drain(self) -> Generator[av.VideoFrame, None, int]:
        """The frames a threaded decoder still holds when reading stops early; returns how many."""
        try:
            frames = self._stream.codec_context.decode(None)
        except (av.FFmpegError, OSError):
            return 0
        yield from frames
        return len(frames)

    def _note_reach(self, packet) -> None:
        """Track the furthest byte a real packet (video or audio: not a stream garbage made up) came from."""
        if packet.pos is not None and packet.pos >= 0 and packet.stream.type in ("video", "audio"):
            self._reach_bytes = max(self._reach_bytes, packet.pos + packet.size)

    def _note_damage(self, e: BaseException, packet, in_run: bool) -> None:
        self._note_error(e)
        self.packets_skipped += 1
        if not in_run:
            pts, tb = packet.pts, packet.time_base
            start = self._stream.start_time or 0
            self._damaged_runs.append(float((pts - start) * tb) if pts is not None and tb else float("nan"))

    def _note_read_error(self, e: BaseException) -> None:
        """A read that failed; one that waited past the timeout (PyAV's interrupt) is named as such."""
        if isinstance(e, av.error.ExitError) and self._timeout_s:
            self.decode_errors += 1
            self.last_error = f"no data for {self._timeout_s:g} s (read timed out)"
        else:
            self._note_error(e)

    def _note_losses(self, decoded: int) -> None:
        """What was lost, in one account: damaged runs skipped, a short stream, trailing garbage."""
        parts = []
        if self._damaged_runs:
            runs = len(self._damaged_runs)
            parts.append(
                f"skipped {self.packets_skipped} damaged packets in {runs} run{'s' if runs > 1 else ''} "
                f"from {self._damaged_runs[0]:.1f} s, resuming at the next keyframe"
            )
        expected = self.info.frame_count
        if expected and decoded < expected:
            self.decode_errors += 0 if self._damaged_runs else 1
            if self._damaged_runs:
                parts.append(f"decoded {decoded} of {expected} declared frames")
            else:
                parts.append(f"stream ended at frame {decoded} of {expected} declared")
        unread = (self._file_bytes or 0) - self._reach_bytes
        if self._file_bytes and unread >= max(TRAILING_MIN_BYTES, TRAILING_MIN_FRACTION * self._file_bytes):
            self.decode_errors += 1
            parts.append(
                f"the last {unread / 1e6:.1f} MB ({100 * unread / self._file_bytes:.0f}% of the file) hold "
                "no readable packet (trailing garbage?)"
            )
        if parts:
            if self.last_error:
                parts.append(f"last error: {self.last_error}")
            self.last_error = "; ".join(parts)

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
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)


def _open_container(target: str, shown_as: str, options: dict | None, timeout_s: float | None):
    t0 = time.monotonic()
    try:
        return av.open(target, options=options or {}, timeout=timeout_s)
    except av.error.EOFError:
        raise InputError(f"{shown_as}: ends inside its header (truncated file?)") from None
    except (av.FFmpegError, OSError) as e:
        if timeout_s and (isinstance(e, av.error.ExitError) or time.monotonic() - t0 >= 0.9 * timeout_s):
            # PyAV's interrupt ("Immediate exit requested"), or a protocol's own socket timeout that
            # FFmpeg reports as bad data (RTSP): either way, nothing answered in time
            raise InputError(f"{shown_as}: no answer within {timeout_s:g} s (open timed out)") from None
        if not isinstance(e, av.error.InvalidDataError):
            raise InputError(f"{shown_as}: cannot be opened ({one_line(e)})") from None
    if _looks_like_mp4(target):
        raise InputError(
            f"{shown_as}: an MP4/MOV whose index (moov atom) is missing: the file is truncated "
            "or was not finished; nothing in it can be located"
        )
    raise InputError(f"{shown_as}: not a video or image file (no format FFmpeg knows)")


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
