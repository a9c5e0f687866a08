"""A corpus of bad and odd inputs, generated on the fly (never committed): name -> path builders.

`UNUSABLE` inputs must give exit code 2 and one line on stderr; `PARTIAL` ones are processed as far as they
decode (exit code 3, the loss reported); `DAMAGED` ones too, the damage being mid-file or after the video
(issue 16); `ODD` ones are valid but unusual and must simply work (exit 0).
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zlib
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


def _h264_mp4(
    path: Path, frames: int = 400, wh: tuple[int, int] = (160, 120), fmt: str | None = None
) -> Path:
    """A small h264 clip whose frames differ (a counter drawn on a changing grey), keyframe every 24."""
    w, h = wh
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": "24", "preset": "ultrafast"}
        for i in range(frames):
            img = np.full((h, w, 3), (i * 3) % 255, np.uint8)
            cv2.putText(img, str(i), (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts, f.time_base = i, Fraction(1, 24)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    return path


CORRUPT_RUN = range(50, 150)
"""The packets of `corrupt-run-mid.mp4` overwritten with noise: 100 in a row, twice the old give-up limit."""


def _corrupt_run(path: Path) -> Path:
    """400 frames with packets 50-149 replaced by random bytes of the same size (the index stays valid)."""
    _h264_mp4(path)
    with av.open(str(path)) as c:
        spans = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(16)
    for pos, size in spans[CORRUPT_RUN.start : CORRUPT_RUN.stop]:
        data[pos : pos + size] = rng.bytes(size)
    path.write_bytes(bytes(data))
    return path


def _trailing_garbage(path: Path, megabytes: int = 20) -> Path:
    """A valid MPEG-TS start (48 frames) followed by `megabytes` of noise."""
    _h264_mp4(path, frames=48, fmt="mpegts")
    with open(path, "ab") as f:
        f.write(np.random.default_rng(7).bytes(megabytes << 20))
    return path


def huge_png(path: Path, wh: tuple[int, int] = (40000, 40000)) -> Path:
    """A complete 1-bit grey PNG of `wh` (1.6 gigapixels, ~200 KB), written row by row: nothing large is
    ever in memory here, but a decoder that trusts it allocates gigabytes."""
    w, h = wh
    row = b"\0" * (1 + (w + 7) // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def _panorama(path: Path, media: Path, wh: tuple[int, int] = (16400, 1200)) -> Path:
    """A JPEG wider than H.264 allows (16,384 px): the smiling face at its left end, grey beside it."""
    w, h = wh
    face = _photo(media, (h, h))
    img = cv2.copyMakeBorder(face, 0, 0, 0, w - h, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    path.write_bytes(buf.tobytes())
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
    "huge-40000x40000.png": lambda d, m: huge_png(d / "huge-40000x40000.png"),
}
PARTIAL = {
    "truncated-30pct.mp4": lambda d, m: _truncated(
        m, d / "truncated-30pct.mp4", 0.3, "pexels_woman_emotions.mp4"
    ),
    "truncated-70pct.mp4": lambda d, m: _truncated(
        m, d / "truncated-70pct.mp4", 0.7, "pexels_woman_emotions.mp4"
    ),
}
DAMAGED = {
    "corrupt-run-mid.mp4": lambda d, m: _corrupt_run(d / "corrupt-run-mid.mp4"),
    "trailing-garbage.ts": lambda d, m: _trailing_garbage(d / "trailing-garbage.ts"),
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
    "panorama-16400x1200.jpg": lambda d, m: _panorama(d / "panorama-16400x1200.jpg", m),
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


_SPAWNER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""
"""Forks the command from a fresh, small interpreter: Linux keeps the resident peak of the process that
forked across exec, so forking from a big test process would report its memory, not the command's."""


def run_measured(cmd: list[str], env: dict | None = None, timeout_s: float = 900) -> tuple[int, str, float]:
    """Exit code, stderr and peak resident memory in MB (the command's own rusage) of `cmd`; past
    `timeout_s` it is killed (exit code -9: a hang is a finding, not the end of the run)."""
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "err", "w+b") as err:
        facts = Path(tmp) / "facts"
        spawner = [sys.executable, "-c", _SPAWNER, str(facts), *cmd]
        proc = subprocess.Popen(
            spawner, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9, "", 0.0
        code, peak_kb = facts.read_text().split()
        err.seek(0)
        return int(code), err.read().decode(errors="replace"), int(peak_kb) / 1024
