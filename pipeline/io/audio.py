"""The input's sound in annotated.mp4: `AudioTrack` muxes the first audio stream of the input beside the
annotated video, packets copied as they are when MP4 accepts the codec, else decoded and encoded to AAC.

Sync: the input time of the first video frame written becomes time 0 of both streams, so a clip trimmed
with --start, or whose audio starts later than its video, keeps its sound where it was. Audio is muxed
only up to the last video frame written (plus one frame period at the end), so an interrupted run still
closes into a playable file whose two streams end together.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

import av

from pipeline.io.video_source import one_line

LEAD_IN_S = 0.05
"""Sound that starts this much after the first video frame is encoded (to AAC) with silence before it:
MP4 fragments cannot say "this track starts later" and players would pull it forward."""

MP4_AUDIO_CODECS = ("aac", "mp3", "ac3", "eac3", "alac")
"""Audio codecs the MP4 muxer takes as they are (copied); any other is encoded to AAC."""

_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
"""Channel count -> the layout given to the AAC encoder (an input may leave its layout unspecified)."""

_COPY_IDS = frozenset(av.Codec(name, "r").id for name in MP4_AUDIO_CODECS)


def probe_audio(path: str) -> str | None:
    """The codec name of `path`'s first audio stream, or None when it has none (or is no media file)."""
    try:
        with av.open(path) as c:
            return c.streams.audio[0].codec_context.codec.name if c.streams.audio else None
    except (av.FFmpegError, OSError):
        return None


class AudioTrack:
    """One audio stream read from `path` and written into an output container next to its video.

    `start_s` is the input time (the container's timeline, in seconds) shown at output time 0: the first
    video frame's presentation time.
    """

    def __init__(self, path: str, start_s: float) -> None:
        self._in = av.open(path)
        try:
            self._src = self._in.streams.audio[0]
        except IndexError:
            self._in.close()
            raise ValueError(f"{path}: has no audio stream") from None
        self.codec = self._src.codec_context.codec.name
        self.start_s = start_s
        # sound that starts after the first frame is led in with silence, which only an encoder can make
        self._lead_s = max(0.0, _start_of(self._src) - start_s)
        copy = self._src.codec_context.codec.id in _COPY_IDS and self._lead_s < LEAD_IN_S
        self.mode = "copy" if copy else "aac"
        self._packets = self._in.demux(self._src)
        self._pending: list = []  # packets (copy) or frames (aac) read but not yet due
        self._out = None
        self._ended = False
        self.written_s = 0.0  # output time up to which audio was written
        self.error: str | None = None

    def add_to(self, container) -> None:
        """Add the output stream; must run before the container's first packet is muxed."""
        if self.mode == "copy":
            self._out = container.add_stream_from_template(self._src)
        else:
            rate = self._src.codec_context.sample_rate or 48000
            self._out = container.add_stream("aac", rate=rate)
            self._out.codec_context.layout = _LAYOUTS.get(self._src.codec_context.channels, "stereo")
            self._out.codec_context.format = "fltp"  # the only sample format FFmpeg's AAC encoder takes
            self._out.codec_context.time_base = Fraction(1, rate)

    def mux_until(self, container, until_s: float) -> None:
        """Mux every audio piece that starts before output time `until_s`."""
        if self._out is None:
            return
        try:
            for item in self._due(until_s):
                container.mux(item if self.mode == "copy" else self._encoded(item))
        except (av.FFmpegError, OSError, ValueError) as e:  # sound is a bonus: keep the video going
            self.error = self.error or one_line(e)
            self._ended = True
        self.written_s = max(self.written_s, until_s)

    def close(self, container, end_s: float) -> None:
        """Mux up to output time `end_s` (the video's end), flush the encoder and close the input."""
        try:
            self.mux_until(container, end_s)
            if self._out is not None and self.mode == "aac" and self.error is None:
                container.mux(self._encoded(None))
        except (av.FFmpegError, OSError, ValueError) as e:
            self.error = self.error or one_line(e)
        finally:
            with contextlib.suppress(Exception):
                self._in.close()

    def _encoded(self, frame) -> list:
        """AAC packets of `frame` (None: the encoder's tail), without the encoder's priming packet:
        its negative time would make the muxer shift the whole track late by one frame of samples."""
        return [p for p in self._out.encode(frame) if p.pts is None or p.pts >= 0]

    def _due(self, until_s: float):
        """Packets (copy) or frames (aac) with output start time in [0, until_s), retimed."""
        while True:
            while not self._pending and not self._ended:
                self._read()
            if not self._pending or self._time_of(self._pending[0]) >= until_s:
                return
            item = self._pending.pop(0)
            yield self._retimed(item)

    def _read(self) -> None:
        try:
            packet = next(self._packets)
        except StopIteration:
            self._ended = True
            return
        except (av.FFmpegError, OSError) as e:  # a broken audio tail: the video is still whole
            self.error, self._ended = one_line(e), True
            return
        if packet.pts is None or packet.size == 0:  # a flush packet, or one no player can place
            return
        items = [packet] if self.mode == "copy" else packet.decode()
        items = [i for i in items if i.pts is not None and self._time_of(i) >= 0]
        if items and self._lead_s and self.mode == "aac":  # silence from time 0 to the first sound
            items.insert(0, _silence(items[0], self.start_s, self._time_of(items[0])))
            self._lead_s = 0.0
        self._pending += items

    def _time_of(self, item) -> float:
        return float(item.pts * item.time_base) - self.start_s

    def _retimed(self, item):
        """Output time: packets shifted in their own time base; frames counted in samples (1/rate), the
        one time base the encoder's resampler takes from every frame."""
        if self.mode == "copy":
            shift = round(self.start_s / item.time_base)
            item.pts -= shift
            if item.dts is not None:
                item.dts -= shift
            item.stream = self._out
        else:
            pts = round(self._time_of(item) * item.sample_rate)
            item.pts, item.time_base = pts, Fraction(1, item.sample_rate)
        return item


def _start_of(stream) -> float:
    """The input time (seconds) a stream starts at, 0 when it does not say."""
    return float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0


def _silence(like, start_s: float, seconds: float):
    """A silent frame in the format and layout of decoded frame `like` (the encoder takes one format
    throughout), at input time `start_s`, `seconds` long."""
    rate = like.sample_rate
    frame = av.AudioFrame(format=like.format.name, layout=like.layout, samples=max(1, round(seconds * rate)))
    quiet = b"\x80" if like.format.name.startswith("u8") else b"\x00"  # unsigned 8-bit: silent at mid-scale
    for plane in frame.planes:
        plane.update(quiet * plane.buffer_size)
    frame.sample_rate, frame.time_base, frame.pts = rate, Fraction(1, rate), round(start_s * rate)
    return frame
