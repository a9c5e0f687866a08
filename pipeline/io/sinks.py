"""Output writers: faces.jsonl, tracks.csv, summary.json, annotated.mp4, timeline.png.

Everything is written so that an interrupted run leaves valid files: JSONL lines are written whole and
flushed per frame; the MP4 is fragmented (a playable prefix survives even a hard kill); CSV and JSON are
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from engines.files import write_atomic
from engines.labels import gender_of, top_of
from pipeline.errors import OutputError
from pipeline.frames import EMOTIONS, FaceBatch


def face_records(batch: FaceBatch) -> list[dict]:
    """One JSON-ready dict per face: frame, time, track, box, score, emotions, gender, age.

    A value the net did not give (NaN) is written as null, and no top emotion is named from a NaN row.
    """
    out = batch.outputs
    rows = []
    for i in range(len(batch)):
        r = {
            "frame": batch.frame_index,
            "time_s": round(batch.time_s, 4),
            "track_id": int(batch.track_ids[i]),
            "xyxy": [round(float(v), 1) for v in batch.xyxy[i]],
            "score": _num(batch.scores[i], 4),
            "detected": batch.detected,
        }
        if "emotion" in out:
            probs = out["emotion"][i]
            r["emotion"] = {name: _num(p, 4) for name, p in zip(EMOTIONS, probs, strict=True)}
            top = top_of(probs)
            if top is not None:
                r["top_emotion"], r["top_p"] = top[0], _num(top[1], 4)
        top_smooth = top_of(out["emotion_smooth"][i]) if "emotion_smooth" in out else None
        if top_smooth is not None:
            r["top_emotion_smooth"] = top_smooth[0]
        if "gender" in out:
            p_man = _num(out["gender"][i], 4)
            r["gender"] = gender_of(p_man)
            r["p_man"] = p_man
        if "age" in out:
            r["age"] = _num(out["age"][i], 1)
        if "gender_ssr" in out:
            r["p_man_ssr"] = _num(out["gender_ssr"][i], 4)
        if "contempt" in out:  # AffectNet's eighth class, kept beside the seven FER2013 emotions
            r["contempt"] = _num(out["contempt"][i], 4)
        if "head_label" in out:  # a few-shot head (`run --head`): its class and probability
            r["head"], r["head_p"] = str(out["head_label"][i]), _num(np.max(out["head"][i]), 4)
        rows.append(r)
    return rows


def _num(v, digits: int) -> float | None:
    """A rounded plain float, or None (JSON null) where it is NaN or infinite (JSON has neither)."""
    v = float(v)
    return round(v, digits) if math.isfinite(v) else None


class JsonlSink:
    """faces.jsonl: one object per face per processed frame, written and flushed per frame.

    A frame's lines are written whole or not at all: a write that fails (a full disk) is cut back to the
    end of the last whole frame, and raises OutputError naming the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            raise OutputError(f"{self.path}: cannot be written ({e.strerror})") from None
        self._good = 0  # bytes of whole lines so far
        self.lines = 0

    def write(self, batch: FaceBatch) -> None:
        if self._fd is None or not len(batch):
            return
        rows = face_records(batch)
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode("utf-8")
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._good)
                os.lseek(self._fd, self._good, os.SEEK_SET)
            raise OutputError(
                f"{self.path}: cannot be written ({e.strerror}); it ends with the last whole frame"
            ) from None
        self._good += len(data)
        self.lines += len(rows)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def write_tracks_csv(path: Path, summaries: list) -> None:
    """tracks.csv: one row per track (from `Aggregator.track_summaries()`), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "track_id",
            "first_frame",
            "last_frame",
            "first_time_s",
            "last_time_s",
            "frames_seen",
            *[f"mean_{e}" for e in EMOTIONS],
            "dominant_emotion",
            "gender",
            "mean_p_man",
            "mean_age",
        ]
    )
    for s in summaries:
        w.writerow(
            [
                s.track_id,
                s.first_frame,
                s.last_frame,
                f"{s.first_time_s:.4f}",
                f"{s.last_time_s:.4f}",
                s.frames_seen,
                *[_fmt(p) for p in s.mean_emotion],
                s.dominant_emotion,
                s.gender or "",
                _fmt(s.mean_gender),
                _fmt(s.mean_age, 1),
            ]
        )
    write_atomic(Path(path), buf.getvalue())


def _fmt(v: float | None, digits: int = 4) -> str:
    """A number for the CSV; "" where there is none (None or NaN, numpy floats included)."""
    return "" if v is None or math.isnan(v) else f"{v:.{digits}f}"


def write_json(path: Path, obj: dict) -> None:
    """`obj` as strict JSON (NaN and infinities become null), written atomically."""
    write_atomic(Path(path), json.dumps(_finite(obj), indent=2, default=_json_default) + "\n")


def _finite(o):
    """`o` with every non-finite float (also inside numpy values and arrays) replaced by None."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    if isinstance(o, np.ndarray):
        return _finite(o.tolist())
    if isinstance(o, float | np.floating):
        return float(o) if math.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


ENCODER_MAX_SIDE = 16384
ENCODER_MAX_PIXELS = 16384 * 16000
"""The largest picture libx264 opens: 16,384 per side, and a bit under 2^28 pixels in all (measured)."""


def encodable_wh(wh: tuple[int, int]) -> tuple[int, int]:
    """`wh` scaled down (aspect kept) to what the H.264 encoder accepts, with the even sides yuv420p needs."""
    w, h = wh
    scale = min(1.0, ENCODER_MAX_SIDE / max(w, h), math.sqrt(ENCODER_MAX_PIXELS / (w * h)))
    if scale < 1.0:  # rounded, then made even downwards: never past a limit
        w, h = (max(2, min(ENCODER_MAX_SIDE, round(v * scale)) // 2 * 2) for v in (w, h))
    return w + w % 2, h + h % 2


class VideoSink:
    """annotated.mp4 through PyAV/libx264, keeping each frame's own presentation time (VFR-safe).

    Fragmented MP4 so the file stays playable up to the last fragment even if the process dies. A picture
    larger than the encoder accepts (a panorama wider than 16,384 px) is scaled down to fit.
    """

    TIME_BASE = Fraction(1, 90000)

    def __init__(
        self,
        path: Path,
        wh: tuple[int, int],
        fps: float,
        preset: str = "ultrafast",
        audio=None,
        threads: int = 2,
    ) -> None:
        """`audio`: an `pipeline.io.audio.AudioTrack` muxed beside the video, in step with it (or None)."""
        import av

        self.path = Path(path)
        self.wh = encodable_wh(wh)
        try:
            self._container = av.open(str(self.path), "w", options={"movflags": "frag_keyframe+empty_moov"})
        except OSError as e:
            raise OutputError(f"{self.path}: cannot be written ({e.strerror or e})") from None
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
        self._stream = self._container.add_stream("libx264", rate=rate)
        self._stream.width, self._stream.height = self.wh
        self._stream.pix_fmt = "yuv420p"
        self._stream.codec_context.time_base = self.TIME_BASE
        self._stream.time_base = self.TIME_BASE
        # a keyframe, hence an MP4 fragment, every ~2 s: a hard kill loses at most that much video
        # `threads` (pipeline.runtime.threads.encoder_threads): x264's default (1.5 per core) starved the
        # other stages on 2 cores
        self._stream.options = {
            "preset": preset,
            "crf": "23",
            "g": str(max(1, round(2 * float(rate)))),
            "threads": str(threads),
        }
        self._period_s = 1 / float(rate)
        self.audio = audio
        if audio is not None:
            audio.add_to(self._container)
        self._last_pts = -1
        self._first_s: float | None = None  # the first frame's time: time 0 of the file
        self.frames = 0

    def write(self, image_bgr: np.ndarray, time_s: float) -> None:
        import av

        img = _pad_even(image_bgr, self.wh)
        frame = av.VideoFrame.from_ndarray(img, format="bgr24")
        self._first_s = time_s if self._first_s is None else self._first_s
        pts = max(round((time_s - self._first_s) / self.TIME_BASE), self._last_pts + 1)  # increasing
        frame.pts, frame.time_base, self._last_pts = pts, self.TIME_BASE, pts
        with self._named_errors():
            self._container.mux(self._stream.encode(frame))
            if self.audio is not None:  # sound up to this frame's time: the file ends with both streams
                self.audio.mux_until(self._container, float(pts * self.TIME_BASE))
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        container, self._container = self._container, None
        with self._named_errors():
            try:
                if self.audio is not None:  # the last frame lasts one period: so does the sound after it
                    end_s = float(max(self._last_pts, 0) * self.TIME_BASE) + self._period_s
                    self.audio.close(container, end_s if self.frames else 0.0)
                container.mux(self._stream.encode(None))
            finally:
                container.close()

    @contextlib.contextmanager
    def _named_errors(self):
        """A failed write (a full disk) as one line naming annotated.mp4 (PyAV's own names no file)."""
        try:
            yield
        except OSError as e:
            raise OutputError(f"{self.path}: cannot be written ({e.strerror or e})") from None


def _pad_even(img: np.ndarray, wh: tuple[int, int]) -> np.ndarray:
    h, w = img.shape[:2]
    if (w, h) == wh:
        return img
    import cv2

    if (w + w % 2, h + h % 2) != wh:  # resolution changed mid-stream: fit the first frame's size
        return cv2.resize(img, wh, interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(img, 0, wh[1] - h, 0, wh[0] - w, cv2.BORDER_REPLICATE)
