"""A corpus of bad and odd inputs, generated on the fly (never committed): name -> path builders.

`UNUSABLE` inputs must give exit code 2 and one line on stderr; `PARTIAL` ones are processed as far as they
decode (exit code 3, the loss reported); `ODD` ones are valid but unusual and must simply work (exit 0).
"""

from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np


def _write_video(
    path: Path, sizes: list[tuple[int, int]], frames_each: int = 12, fmt: str | None = None
) -> Path:
    """An h264 video; several sizes -> one MPEG-TS stream whose resolution changes mid-stream."""
    with open(path, "wb") as out:
        for k, (w, h) in enumerate(sizes):
            part = path.with_name(f"{path.stem}.part{k}.ts")
            with av.open(str(part), "w", format="mpegts") as c:
                s = c.add_stream("libx264", rate=24)
                s.width, s.height, s.pix_fmt = w, h, "yuv420p"
                for i in range(frames_each):
                    img = np.full((h, w, 3), (30 + 9 * i) % 255, np.uint8)
                    cv2.circle(img, (w // 2, h // 2), min(w, h) // 4, (200, 180, 160), -1)
                    f = av.VideoFrame.from_ndarray(img, format="bgr24")
                    f.pts, f.time_base = i + k * frames_each, Fraction(1, 24)
                    c.mux(s.encode(f))
                c.mux(s.encode(None))
            out.write(part.read_bytes())
            part.unlink()
    return path


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("aac", rate=16000)
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            c.mux(s.encode(frame))
        c.mux(s.encode(None))
    return path


def _truncated(media: Path, path: Path, fraction: float, name: str = "pyfeat_single_face.mp4") -> Path:
    """The first `fraction` of a real MP4 (single_face has its index at the end, pexels at the start)."""
    data = (media / name).read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _png(path: Path, img: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", img)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def _photo(
    media: Path, size: tuple[int, int] | None = None, gray: bool = False, deep: bool = False
) -> np.ndarray:
    img = cv2.imread(str(media / "fer_justin_smile.jpg"))
    if size:
        img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    if gray:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if deep:
        img = img.astype(np.uint16) * 257
    return img


def _unreadable(path: Path, media: Path) -> Path:
    shutil.copy(media / "pyfeat_single_face.mp4", path)
    os.chmod(path, 0)
    return path


UNUSABLE = {
    "zero-byte.mp4": lambda d, m: ((d / "zero-byte.mp4").write_bytes(b"") and None) or d / "zero-byte.mp4",
    "random-bytes.mp4": lambda d, m: _bytes(d / "random-bytes.mp4", np.random.default_rng(1).bytes(50_000)),
    "text-file.mp4": lambda d, m: _bytes(d / "text-file.mp4", b"not a video, just some words\n" * 200),
    "truncated-in-header.mp4": lambda d, m: _truncated(m, d / "truncated-in-header.mp4", 0.002),
    "truncated-no-index.mp4": lambda d, m: _truncated(m, d / "truncated-no-index.mp4", 0.6),
    "audio-only.mp4": lambda d, m: _audio_only(d / "audio-only.mp4"),
    "a-directory": lambda d, m: _mkdir(d / "a-directory"),
    "missing.mp4": lambda d, m: d / "missing.mp4",
    "unreadable.mp4": lambda d, m: _unreadable(d / "unreadable.mp4", m),
}
PARTIAL = {
    "truncated-30pct.mp4": lambda d, m: _truncated(
        m, d / "truncated-30pct.mp4", 0.3, "pexels_woman_emotions.mp4"
    ),
    "truncated-70pct.mp4": lambda d, m: _truncated(
        m, d / "truncated-70pct.mp4", 0.7, "pexels_woman_emotions.mp4"
    ),
}
ODD = {
    "still-image-as.mp4": lambda d, m: _bytes(
        d / "still-image-as.mp4", (m / "fer_justin_smile.jpg").read_bytes()
    ),
    "1x1.png": lambda d, m: _png(d / "1x1.png", np.full((1, 1, 3), 128, np.uint8)),
    "8k.png": lambda d, m: _png(d / "8k.png", _photo(m, (7680, 4320))),
    "grayscale.png": lambda d, m: _png(d / "grayscale.png", _photo(m, gray=True)),
    "16-bit.png": lambda d, m: _png(d / "16-bit.png", _photo(m, deep=True)),
    "resolution-change.ts": lambda d, m: _write_video(d / "resolution-change.ts", [(320, 240), (640, 360)]),
    "vfr-hevc.mov": lambda d, m: m / "pyfeat_face_then_noface.mov",
}


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def build(kind: dict, name: str, folder: Path, media: Path) -> Path:
    """Make input `name` of `kind` inside `folder` and return its path."""
    return kind[name](folder, media)


def score_args(dataset: Path, out: Path) -> list[str]:
    """`emostream score` arguments that read every clip of the val split and train nothing (zero-shot):
    how the corpus goes through scoring, in the tests and in tools/robustness_table.py."""
    return ["score", str(dataset), "--protocol", "afew", "--eval", "val", "--classifier", "zeroshot",
            "--out", str(out)]  # fmt: skip
