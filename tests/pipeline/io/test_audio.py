"""annotated.mp4 keeps the input's sound: copied or encoded to AAC, starting with the video and ending
with it, the tone heard when the picture flashes (clips generated here with PyAV)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from pipeline.io.audio import AudioTrack, probe_audio
from pipeline.io.sinks import VideoSink

FPS, RATE, BEEP_S = 25, 48000, 1.0


def tone_clip(path, audio_codec: str, seconds: float = 2.0, audio_from_s: float = 0.0) -> None:
    """Black frames turning white at BEEP_S, with a 440 Hz tone starting at BEEP_S (silence before it);
    the sound stream itself starts at `audio_from_s`."""
    out = av.open(str(path), "w")
    video = out.add_stream("mpeg4", rate=FPS)
    video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
    audio = out.add_stream(audio_codec, rate=RATE)
    audio.layout = "mono"
    for i in range(int(seconds * FPS)):
        img = np.full((48, 64, 3), 255 if i / FPS >= BEEP_S else 0, np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        frame.pts, frame.time_base = i, Fraction(1, FPS)
        out.mux(video.encode(frame))
    pcm = audio_codec.startswith("pcm")
    for s in range(int(audio_from_s * RATE), int(seconds * RATE), 1024):
        t = np.arange(s, min(s + 1024, int(seconds * RATE))) / RATE
        x = np.where(t >= BEEP_S, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0)
        data = (x * 32767).astype(np.int16) if pcm else x.astype(np.float32)
        frame = av.AudioFrame.from_ndarray(data[None], format="s16" if pcm else "fltp", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, s, Fraction(1, RATE)
        out.mux(audio.encode(frame))
    out.mux(video.encode(None))
    out.mux(audio.encode(None))
    out.close()


def annotate(src, dst, keep_frames: int | None = None) -> AudioTrack:
    """What `run` does with the video: every frame (or the first `keep_frames`) into a VideoSink."""
    with av.open(str(src)) as c:
        frames = [(float(f.time), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
    track = AudioTrack(str(src), frames[0][0])
    sink = VideoSink(dst, (64, 48), FPS, audio=track)
    for t, img in frames[:keep_frames]:
        sink.write(img, t)
    sink.close()
    return track


def streams(path):
    """(video times, audio start, audio end, tone onset) of a written file."""
    with av.open(str(path)) as c:
        video = [(float(f.time), f.to_ndarray(format="gray").mean()) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        chunks = list(c.decode(audio=0))
    x = np.concatenate([f.to_ndarray()[0] for f in chunks])
    start = float(chunks[0].time)
    end = float(chunks[-1].time) + chunks[-1].samples / chunks[-1].sample_rate
    onset = start + np.argmax(np.abs(x) > 0.1) / chunks[0].sample_rate if np.abs(x).max() > 0.1 else None
    flash = next((t for t, v in video if v > 128), None)
    return [t for t, _ in video], start, end, onset, flash


@pytest.mark.parametrize(
    ("container", "codec", "mode"), [("avi", "pcm_s16le", "aac"), ("mp4", "aac", "copy")]
)
def test_sound_is_kept_in_sync(tmp_path, container, codec, mode):
    src = tmp_path / f"tone.{container}"
    tone_clip(src, codec)
    track = annotate(src, tmp_path / "annotated.mp4")
    assert track.mode == mode and track.error is None
    times, start, end, onset, flash = streams(tmp_path / "annotated.mp4")
    frame_s = 1 / FPS
    assert start == pytest.approx(times[0], abs=1e-3)
    assert end == pytest.approx(times[-1] + frame_s, abs=frame_s)  # same duration within a frame
    assert flash == pytest.approx(BEEP_S, abs=1e-3) and onset == pytest.approx(flash, abs=frame_s / 2)


def test_sound_that_starts_late_stays_late(tmp_path):
    """Audio beginning 0.5 s after the picture: silence is put before it, the tone still on the flash."""
    tone_clip(tmp_path / "late.mkv", "pcm_s16le", audio_from_s=0.5)  # AVI cannot say "starts late"
    track = annotate(tmp_path / "late.mkv", tmp_path / "annotated.mp4")
    _, start, _, onset, flash = streams(tmp_path / "annotated.mp4")
    assert track.mode == "aac" and start == pytest.approx(0, abs=1e-3)
    assert onset == pytest.approx(flash, abs=0.5 / FPS)


def test_a_run_stopped_early_ends_both_streams_together(tmp_path):
    tone_clip(tmp_path / "tone.mp4", "aac")
    annotate(tmp_path / "tone.mp4", tmp_path / "annotated.mp4", keep_frames=30)
    times, _, end, _, _ = streams(tmp_path / "annotated.mp4")
    assert len(times) == 30 and end == pytest.approx(30 / FPS, abs=1 / FPS)


def test_probe_names_the_codec_or_none(tmp_path, media_dir):
    assert probe_audio(str(media_dir / "pyfeat_single_face.mp4")) in ("mp3", "mp3float")
    assert probe_audio(str(media_dir / "fer_justin_smile.jpg")) is None
    assert probe_audio(str(tmp_path / "missing.mp4")) is None
