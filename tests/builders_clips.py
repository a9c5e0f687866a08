"""Small labelled clip datasets cut from the real videos in ../shared/media (PyAV), for scoring tests.

Segment boundaries were chosen by looking at frames of each video (seconds):
- pexels_woman_emotions.mp4: crying (sad) 0-6, pensive with a hand at the mouth 6.5-9.4 (taken as
  neutral, as the video's description has it), laughing (happy) from 10.5.
- pyfeat_single_face.mp4: neutral 0-0.7, smiling from 0.8; the .mov files: the same man neutral then
  smiling (face_then_noface 0-0.9 neutral; noface_then_face 3.9-4.7 neutral, 5-6.4 smiling) and a
  cartoon title without any face (noface_then_face 0.5-2.0).
- facenet_crowd_walking_1080p.mp4: pedestrians, mostly neutral (VGAF "Neutral", 960x540).
VGAF groups that the media lack are synthesised, honestly labelled as such: "Positive" clips pan and
zoom a window over pyfeat_multi_face_5.jpg (5 smiling people); "Negative" clips are a 2x2 mosaic of the
crying woman (two moments of the video) with the posed angry and disgust photos.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

WOMAN, SINGLE = "pexels_woman_emotions.mp4", "pyfeat_single_face.mp4"
FACE_NOFACE, NOFACE_FACE = "pyfeat_face_then_noface.mov", "pyfeat_noface_then_face.mov"
CROWD, GROUP_PHOTO = "facenet_crowd_walking_1080p.mp4", "pyfeat_multi_face_5.jpg"

AFEW_SEGMENTS = {  # split -> class -> [(source, start_s, end_s, clip file name)]
    "Train": {
        "Happy": [(WOMAN, 12.6, 14.0, "w_happy1.mp4"), (WOMAN, 15.0, 16.4, "w_happy2.avi"),
                  (SINGLE, 1.0, 2.4, "m_smile.mp4")],
        "Neutral": [(WOMAN, 6.5, 7.9, "w_pensive1.mp4"), (SINGLE, 0.0, 0.8, "m_neutral1.mp4"),
                    (FACE_NOFACE, 0.0, 0.9, "m_neutral2.mp4")],
        "Sad": [(WOMAN, 1.0, 2.4, "w_sad1.mp4"), (WOMAN, 4.0, 5.4, "w_sad2.avi")],
    },
    "Val": {
        "Happy": [(WOMAN, 17.4, 18.8, "w_happy3.mp4"), (NOFACE_FACE, 5.0, 6.4, "m_smile2.mp4")],
        "Neutral": [(WOMAN, 8.0, 9.4, "w_pensive2.mp4"), (NOFACE_FACE, 3.9, 4.7, "m_neutral3.mp4"),
                    (NOFACE_FACE, 0.5, 2.0, "cartoon_noface.mp4")],
        "Sad": [(WOMAN, 2.5, 3.9, "w_sad3.mp4")],
    },
}  # fmt: skip
AFEW_NO_FACE = {"Val/Neutral/cartoon_noface.mp4"}

VGAF_CLIPS = {  # split -> [(clip name, label number 1/2/3, how it is made)]
    "Train": [("crowd_a", 2, ("cut", CROWD, 0.0, 1.4)), ("crowd_b", 2, ("cut", CROWD, 1.4, 2.8)),
              ("party_pan", 1, ("pan", (0.0, 0.0), (0.25, 0.2), 1.0)),
              ("party_zoom", 1, ("pan", (0.1, 0.1), (0.0, 0.0), 0.8)),
              ("gloom_a", 3, ("mosaic", 1.0)), ("gloom_b", 3, ("mosaic", 3.8))],
    "Val": [("crowd_c", 2, ("cut", CROWD, 2.8, 4.2)),
            ("party_tilt", 1, ("pan", (0.2, 0.0), (0.05, 0.25), 0.85)),
            ("gloom_c", 3, ("mosaic", 2.4))],
}  # fmt: skip
GROUP_DURATION_S, GROUP_FPS = 1.4, 25


class VideoWriter:
    """BGR frames into MPEG-4 Part 2 in .avi (as AFEW ships) or H.264 otherwise."""

    def __init__(self, path: Path, fps: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.fps, self.frames = path, fps, 0
        self._out, self._stream = av.open(str(path), "w"), None

    def write(self, img: np.ndarray) -> None:
        if self._stream is None:
            codec = "mpeg4" if self.path.suffix == ".avi" else "libx264"
            self._stream = self._out.add_stream(codec, rate=Fraction(self.fps).limit_denominator(1001))
            self._stream.height, self._stream.width = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"preset": "ultrafast", "crf": "20"}
        img = img[: self._stream.height, : self._stream.width]
        self._out.mux(self._stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        self.frames += 1

    def close(self) -> None:
        if self._stream is not None:
            self._out.mux(self._stream.encode(None))
        self._out.close()


def write_video(path: Path, frames_bgr, fps: float) -> int:
    writer = VideoWriter(path, fps)
    try:
        for img in frames_bgr:
            writer.write(img)
    finally:
        writer.close()
    return writer.frames


def decode_times(src: Path, start_s: float = 0.0, max_width: int | None = None):
    """(t, BGR frame) from start_s on (seeking to the keyframe before it); t counts from the stream start."""
    with av.open(str(src)) as c:
        stream = c.streams.video[0]
        t0 = stream.start_time or 0
        c.seek(t0 + int(start_s / stream.time_base), stream=stream)
        for f in c.decode(stream):
            t = float((f.pts - t0) * f.time_base)
            if t < start_s:
                continue
            img = f.to_ndarray(format="bgr24")
            if max_width and img.shape[1] > max_width:
                img = cv2.resize(img, None, fx=max_width / img.shape[1], fy=max_width / img.shape[1])
            yield t, img


def video_fps(src: Path) -> float:
    with av.open(str(src)) as c:
        return float(c.streams.video[0].average_rate or 25)


def read_segment(src: Path, start_s: float, end_s: float, max_width: int | None = None):
    """(BGR frames with start_s <= t < end_s, fps)."""
    frames = []
    for t, img in decode_times(src, start_s, max_width):
        if t >= end_s:
            break
        frames.append(img)
    return frames, video_fps(src)


def cut_clips(src: Path, segments: list[tuple[float, float, Path]], max_width: int = 960) -> None:
    """Cut every (start_s, end_s, dst) segment of `src` in one decoding pass."""
    writers = [(a, b, VideoWriter(dst, video_fps(src))) for a, b, dst in segments]
    try:
        last = max(b for _, b, _ in segments)
        for t, img in decode_times(src, min(a for a, _, _ in segments), max_width):
            if t >= last:
                break
            for a, b, w in writers:
                if a <= t < b:
                    w.write(img)
    finally:
        for *_, w in writers:
            w.close()


def pan_clip(photo: Path, dst: Path, start_xy, end_xy, window: float) -> int:
    """A window (`window` x the photo's size) moving from start_xy to end_xy, given as fractions of the room
    it has to move in; frames resized to 640 px wide."""
    img = cv2.imread(str(photo))
    h, w = img.shape[:2]
    ww, wh = int(w * window), int(h * window)
    n = round(GROUP_DURATION_S * GROUP_FPS)
    frames = []
    for k in range(n):
        a = k / max(1, n - 1)
        x = int((start_xy[0] + a * (end_xy[0] - start_xy[0])) * (w - ww))  # fractions of the free range
        y = int((start_xy[1] + a * (end_xy[1] - start_xy[1])) * (h - wh))
        frames.append(cv2.resize(img[y : y + wh, x : x + ww], (640, round(640 * wh / ww))))
    return write_video(dst, frames, GROUP_FPS)


def mosaic_clip(media: Path, dst: Path, start_s: float) -> int:
    """2x2 tiles (320x320 each): crying woman at start_s and start_s+1.5, angry and disgust photos."""
    n = round(GROUP_DURATION_S * GROUP_FPS)
    a, fps = read_segment(media / WOMAN, start_s, start_s + n / 24)
    b, _ = read_segment(media / WOMAN, start_s + 1.5, start_s + 1.5 + n / 24)
    names = ("pyfeat_angry_f13.jpg", "pyfeat_disgust_m7.jpg")
    photos = [cv2.resize(cv2.imread(str(media / p)), (320, 320)) for p in names]

    def tile(img):  # a square around her face, which sits right of the centre
        side = min(img.shape[:2])
        x = min(max(0, int(0.65 * img.shape[1]) - side // 2), img.shape[1] - side)
        return cv2.resize(img[:side, x : x + side], (320, 320))

    frames = []
    for k in range(min(n, len(a), len(b))):
        frames.append(np.vstack([np.hstack([tile(a[k]), photos[0]]), np.hstack([photos[1], tile(b[k])])]))
    return write_video(dst, frames, fps)


def build_afew(media: Path, root: Path) -> Path:
    """root/{Train,Val}/<Class>/<clip> from AFEW_SEGMENTS; returns root."""
    by_source: dict[str, list] = {}
    for split, classes in AFEW_SEGMENTS.items():
        for label, segments in classes.items():
            for src, start, end, name in segments:
                by_source.setdefault(src, []).append((start, end, root / split / label / name))
    for src, segments in by_source.items():
        cut_clips(media / src, segments)
    return root


def build_vgaf(media: Path, root: Path) -> Path:
    """root/{Train,Val}/<clip>.mp4; Train labels in the challenge's 'Vid_name Label' file with 1/2/3,
    Val labels as a CSV `clip,label` with class names (both formats are accepted)."""
    from pipeline.scoring.datasets import VGAF_CLASSES

    cuts = []
    for split, clips in VGAF_CLIPS.items():
        for name, _, (kind, *args) in clips:
            dst = root / split / f"{name}.mp4"
            if kind == "cut":
                cuts.append((args[1], args[2], dst))
            elif kind == "pan":
                pan_clip(media / GROUP_PHOTO, dst, *args)
            else:
                mosaic_clip(media, dst, *args)
    cut_clips(media / CROWD, cuts)
    (root / "Train_labels.txt").write_text(
        "Vid_name Label\n" + "".join(f"{n} {k}\n" for n, k, _ in VGAF_CLIPS["Train"])
    )
    (root / "Val.csv").write_text(
        "clip,label\n" + "".join(f"{n}.mp4,{VGAF_CLASSES[k - 1]}\n" for n, k, _ in VGAF_CLIPS["Val"])
    )
    return root


def cached_dataset(tmp_path_factory, media: Path, name: str) -> Path:
    """Build dataset `name` ("afew" or "vgaf") once per test session (a marker file says it is complete)."""
    root = tmp_path_factory.getbasetemp() / f"emotiw-{name}"
    if not (root / ".complete").is_file():
        (build_afew if name == "afew" else build_vgaf)(media, root)
        (root / ".complete").write_text("ok\n")
    return root
