"""Capture on real media from ../shared and on bad inputs generated in tmp_path."""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import InputError
from pipeline.io.capture import CameraSource, ImageSource, VideoSource, open_source
from tests import badinputs

PEXELS = "pexels_woman_emotions.mp4"  # 640x360 h264, 472 frames, moov atom first (SOURCES.md)


def _read_all(source):
    with source:
        return list(source)


# --- real videos -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "frames", "wh", "variable_rate"),
    [
        (PEXELS, 472, (640, 360), False),
        ("pyfeat_face_then_noface.mov", 169, (960, 540), True),
        ("pyfeat_noface_then_face.mov", 169, (960, 540), True),
    ],
)
def test_video_frames_and_presentation_times(media_dir, name, frames, wh, variable_rate):
    source = open_source(media_dir / name)
    got = _read_all(source)
    times = np.array([f.time_s for f in got])
    steps = np.diff(times)
    assert len(got) == frames == source.frames_read == source.info.frame_count
    assert source.decode_errors == 0 and not source.info.is_still and not source.info.is_live
    assert [f.index for f in got] == list(range(frames)) and times[0] == 0.0
    assert (steps > 0).all()
    assert (steps.max() / steps.min() > 1.5) == variable_rate  # VFR keeps its real, uneven timing
    if not variable_rate:
        assert times[-1] == pytest.approx((frames - 1) / source.info.fps, abs=1e-3)
    img = got[-1].image_bgr
    assert img.shape == (wh[1], wh[0], 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    assert (source.info.width, source.info.height) == wh and got[0].source is source.info
    captured = [f.captured_at_s for f in got]
    assert all(b >= a for a, b in itertools.pairwise(captured))


def test_generated_avi_mpeg4_decodes_with_its_pixels(tmp_path):
    path = tmp_path / "gen.avi"
    values = [10 * i for i in range(20)]
    _write_video(path, "mpeg4", values, rate=25)
    source = open_source(path)
    got = _read_all(source)
    assert source.info.codec == "mpeg4" and source.info.frame_count == 20
    assert [f.time_s for f in got] == pytest.approx([i / 25 for i in range(20)])
    means = [float(f.image_bgr.mean()) for f in got]
    assert means == pytest.approx(values, abs=6) and (np.diff(means) > 0).all()  # right frames, in order


def test_frames_without_pts_are_timed_by_frame_rate(tmp_path):
    path = tmp_path / "raw.h264"  # an elementary stream: the demuxer gives no pts
    _write_video(path, "libx264", [50] * 10, rate=25, container_format="h264")
    got = _read_all(open_source(path))
    assert [f.time_s for f in got] == pytest.approx([i / 25 for i in range(10)])


def test_realtime_paces_frames_to_their_timestamps(media_dir):
    with open_source(media_dir / "pyfeat_single_face.mp4", realtime=True) as source:
        got = [f for f, _ in zip(source, range(8), strict=False)]
    elapsed = np.array([f.captured_at_s - got[0].captured_at_s for f in got])
    ahead = np.array([f.time_s for f in got]) - elapsed
    assert (ahead <= 1e-3).all()  # no frame is delivered before its time


def test_close_mid_stream_is_idempotent_and_ends_iteration(media_dir):
    source = open_source(media_dir / PEXELS)
    first = next(iter(source))
    source.close()
    source.close()
    assert first.index == 0 and list(source) == [] and source.frames_read == 1


# --- still images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["pyfeat_multi_face_5.jpg", "fer_justin_smile.jpg", "pyfeat_upside_down_face.png"]
)
def test_still_image_is_one_frame(media_dir, name):
    source = open_source(media_dir / name)
    got = _read_all(source)
    expected = cv2.imread(str(media_dir / name))
    assert isinstance(source, ImageSource) and source.info.is_still and source.info.frame_count == 1
    assert len(got) == 1 and got[0].time_s == 0.0 and got[0].index == 0
    np.testing.assert_array_equal(got[0].image_bgr, expected)


@pytest.mark.parametrize(
    ("filename", "pixels", "expected_bgr"),
    [
        ("grey.png", np.full((8, 10), 100, np.uint8), (100, 100, 100)),
        ("deep16.png", np.full((8, 10, 3), 65535, np.uint16), (255, 255, 255)),
        (
            "alpha.png",
            np.dstack([np.full((8, 10, 3), (10, 20, 30), np.uint8), np.full((8, 10), 40, np.uint8)]),
            (10, 20, 30),
        ),
        ("odd name: ü #1.png", np.full((8, 10, 3), (1, 2, 3), np.uint8), (1, 2, 3)),
        ("picture.bmp", np.full((8, 10, 3), 7, np.uint8), (7, 7, 7)),
        ("photo.jpg.mp4", np.full((8, 10, 3), 128, np.uint8), (128, 128, 128)),  # a JPEG by content
    ],
)
def test_images_become_8bit_bgr(tmp_path, filename, pixels, expected_bgr):
    ext = ".jpg" if filename.endswith(".mp4") else Path(filename).suffix
    path = tmp_path / filename
    path.write_bytes(cv2.imencode(ext, pixels)[1].tobytes())
    (frame,) = _read_all(open_source(path))
    assert frame.image_bgr.shape == (8, 10, 3) and frame.image_bgr.dtype == np.uint8
    np.testing.assert_allclose(frame.image_bgr[4, 5], expected_bgr, atol=2)


def test_video_named_like_an_image_is_read_as_video(media_dir, tmp_path):
    path = tmp_path / "clip.jpg"
    path.symlink_to(media_dir / "pyfeat_single_face.mp4")
    source = open_source(path)
    assert isinstance(source, VideoSource) and len(_read_all(source)) == 72


# --- bad inputs -------------------------------------------------------------------------------------


def _zero_bytes(tmp: Path, media: Path) -> Path:
    (tmp / "empty.mp4").write_bytes(b"")
    return tmp / "empty.mp4"


def _random_bytes(tmp: Path, media: Path) -> Path:
    (tmp / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    return tmp / "noise.mp4"


def _text(tmp: Path, media: Path) -> Path:
    (tmp / "notes.mp4").write_text("this is a text file, not a video\n" * 100)
    return tmp / "notes.mp4"


def _directory(tmp: Path, media: Path) -> Path:
    (tmp / "folder.mp4").mkdir()
    return tmp / "folder.mp4"


def _missing(tmp: Path, media: Path) -> Path:
    return tmp / "never_written.mp4"


def _audio_only(tmp: Path, media: Path) -> Path:
    return badinputs.build(badinputs.UNUSABLE, "audio-only.mp4", tmp, media)


def _zeroed_media_data(tmp: Path, media: Path) -> Path:
    data = bytearray((media / PEXELS).read_bytes())
    start, _ = _atom(data, b"mdat")
    data[start + 8 :] = bytes(len(data) - start - 8)  # the container is intact, every packet is garbage
    (tmp / "zeroed.mp4").write_bytes(data)
    return tmp / "zeroed.mp4"


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (_zero_bytes, "empty (0 bytes)"),
        (_random_bytes, "not a video or image"),
        (_text, "not a video or image"),
        (_directory, "is a directory"),
        (_missing, "no such file"),
        (_audio_only, "no video stream (streams: audio)"),
        (_zeroed_media_data, "no video frame could be decoded"),
    ],
    ids=lambda v: getattr(v, "__name__", "").strip("_") or None,
)
def test_bad_input_is_one_line_naming_file_and_problem(tmp_path, media_dir, make, problem):
    path = make(tmp_path, media_dir)
    with pytest.raises(InputError) as err:
        open_source(path)
    message = str(err.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_unreadable_file_is_permission_denied(tmp_path, media_dir):
    path = tmp_path / "locked.mp4"
    path.write_bytes((media_dir / "pyfeat_single_face.mp4").read_bytes())
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: permissions do not stop reading, so no permission error to test")
        with pytest.raises(InputError, match="permission denied"):
            open_source(path)
    finally:
        path.chmod(0o600)


def _cut_points(data: bytes) -> dict[str, int]:
    moov_start, moov_size = _atom(data, b"moov")
    mdat_start, _ = _atom(data, b"mdat")
    return {
        "in_ftyp": 16,
        "in_moov": moov_start + moov_size // 2,
        "mdat_start": mdat_start + 64,
        "quarter": len(data) // 4,
        "half": len(data) // 2,
        "near_end": len(data) - 200_000,
    }


@pytest.mark.parametrize(
    ("cut", "expect"),
    [
        ("in_ftyp", "error"),
        ("in_moov", "error"),
        ("mdat_start", "either"),
        ("quarter", "partial"),
        ("half", "partial"),
        ("near_end", "partial"),
    ],
)
def test_truncated_file_gives_error_or_partial_frames(media_dir, tmp_path, cut, expect):
    data = (media_dir / PEXELS).read_bytes()
    path = tmp_path / f"cut_{cut}.mp4"
    path.write_bytes(data[: _cut_points(data)[cut]])
    try:
        source = open_source(path)
    except InputError as e:
        assert expect in ("error", "either") and str(e).startswith(str(path)) and "\n" not in str(e)
        return
    assert expect in ("partial", "either")
    got = _read_all(source)  # must not raise mid-stream
    assert 0 < len(got) == source.frames_read < source.info.frame_count
    assert source.decode_errors >= 1 and f"of {source.info.frame_count}" in source.last_error
    assert (np.diff([f.time_s for f in got]) > 0).all()


def test_missing_camera_is_a_clear_error():
    with pytest.raises(InputError, match=r"^camera 99: cannot be opened") as err:
        CameraSource(99)
    assert "\n" not in str(err.value)


# --- network streams ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def media_server(media_dir):
    """An HTTP server on 127.0.0.1 serving ../shared/media in place (port picked by the OS)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(media_dir)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_http_stream_is_live_and_decodes(media_server):
    with open_source(f"{media_server}/{PEXELS}", timeout_s=5) as source:
        got = [f for f, _ in zip(source, range(48), strict=False)]
    assert source.info.is_live and (source.info.width, source.info.height) == (640, 360)
    assert [f.index for f in got] == list(range(48))
    assert [f.time_s for f in got] == pytest.approx([i / source.info.fps for i in range(48)], abs=1e-3)


@pytest.mark.parametrize("what", ["refused", "not_found"])
def test_unreachable_url_is_input_error(media_server, what):
    if what == "refused":
        with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
            s.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{s.getsockname()[1]}/clip.mp4"
    else:
        url = f"{media_server}/no_such_clip.mp4"
    with pytest.raises(InputError) as err:
        open_source(url, timeout_s=2)
    assert str(err.value).startswith(url) and "\n" not in str(err.value)


# --- helpers ---------------------------------------------------------------------------------------------


def _write_video(path: Path, codec: str, values: list[int], rate: int, container_format: str | None = None):
    """A small video whose frame i is a flat grey of values[i]."""
    with av.open(str(path), "w", format=container_format) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.bit_rate = 4_000_000  # near-lossless, so the decoded greys can be checked
        for i, value in enumerate(values):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), value, np.uint8), format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def _atom(data: bytes, kind: bytes) -> tuple[int, int]:
    """(offset, size) of a top-level MP4 atom."""
    offset = 0
    while offset + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[offset : offset + 8])
        if name == kind:
            return offset, size
        offset += size
    raise AssertionError(f"no {kind!r} atom")


def _phone_video(path: Path, upright_bgr: np.ndarray, stored: int, rotation: int, frames: int = 6) -> Path:
    """Frames stored turned by the cv2 code `stored`, with a display matrix of `rotation` degrees
    counter-clockwise that turns them upright again: what phones write when held upright."""
    sideways = cv2.rotate(upright_bgr, stored)
    h, w = sideways.shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(sideways, format="bgr24")))
        out.mux(stream.encode())
    return path


@pytest.mark.skipif(
    not hasattr(av.video.stream.VideoStream, "set_display_rotation"),
    reason="writing a display matrix needs PyAV 17.1+ (reading it, what the code does, needs 14.1)",
)
@pytest.mark.parametrize(
    ("stored", "rotation"),
    [(cv2.ROTATE_90_CLOCKWISE, 90), (cv2.ROTATE_90_COUNTERCLOCKWISE, -90), (cv2.ROTATE_180, 180)],
    ids=["cw-stored", "ccw-stored", "upside-down"],
)
def test_display_rotation_is_applied_so_faces_come_out_upright(tmp_path, media_dir, stored, rotation):
    upright = cv2.resize(cv2.imread(str(media_dir / "pyfeat_happy_f15.jpg")), (320, 240))
    with open_source(_phone_video(tmp_path / "phone.mp4", upright, stored, rotation)) as src:
        frame = next(iter(src))
    assert (src.info.width, src.info.height) == (320, 240) == frame.size_wh
    error = np.abs(frame.image_bgr.astype(np.float32) - upright).mean()
    upside_down = np.abs(frame.image_bgr.astype(np.float32) - cv2.rotate(upright, cv2.ROTATE_180)).mean()
    assert error < 8 < upside_down, f"the picture must come out as shot: {error:.1f} vs {upside_down:.1f}"


# --- hostile inputs (issue 16) ------------------------------------------------------------------------


def test_an_image_over_the_pixel_budget_is_refused_from_its_header(tmp_path):
    path = badinputs.huge_png(tmp_path / "huge.png")  # 40000x40000: OpenCV alone raised cv2.error
    with pytest.raises(InputError, match=r"40000x40000 \(1600 MP\), over the pixel budget of 100 MP") as err:
        open_source(path)
    assert str(err.value).startswith(str(path)) and "--max-pixels" in str(err.value)


def test_an_image_past_the_decoders_own_limit_is_one_line_even_within_the_budget(tmp_path):
    path = badinputs.huge_png(tmp_path / "huge.png")
    with pytest.raises(InputError, match="too large for the decoder") as err:
        open_source(path, max_pixels=2_000_000_000)
    assert "\n" not in str(err.value)


def test_a_jpeg_over_the_budget_is_decoded_at_a_reduced_size(tmp_path, media_dir):
    photo = cv2.resize(cv2.imread(str(media_dir / "fer_justin_smile.jpg")), (4000, 3000))
    path = tmp_path / "big.jpg"
    path.write_bytes(cv2.imencode(".jpg", photo)[1].tobytes())
    with open_source(path, max_pixels=2_000_000) as source:  # 12 MP; 1/2 is 3 MP, 1/4 fits
        (frame,) = list(source)
    assert frame.size_wh == (1000, 750) and source.scale == 4
    small = cv2.resize(photo, (1000, 750), interpolation=cv2.INTER_AREA)
    assert np.abs(frame.image_bgr.astype(int) - small).mean() < 6  # the same picture, smaller


def test_a_long_run_of_corrupt_packets_is_skipped_and_decoding_resumes(tmp_path):
    source = open_source(badinputs.build(badinputs.DAMAGED, "corrupt-run-mid.mp4", tmp_path, tmp_path))
    got = _read_all(source)
    lost = len(badinputs.CORRUPT_RUN)
    assert 400 - lost - 24 <= len(got) < 400 - lost  # the good tail decodes; only the damaged GOPs go
    assert source.packets_skipped >= lost and source.decode_errors >= 1
    assert "damaged packets" in source.last_error and "of 400 declared" in source.last_error
    assert (np.diff([f.time_s for f in got]) > 0).all() and got[-1].time_s == pytest.approx(399 / 24)


def test_trailing_garbage_after_the_video_is_reported(tmp_path):
    source = open_source(badinputs.build(badinputs.DAMAGED, "trailing-garbage.ts", tmp_path, tmp_path))
    assert len(_read_all(source)) == 48
    assert source.decode_errors >= 1 and "trailing garbage" in source.last_error


@pytest.fixture
def silent_listener():
    """A TCP listener on 127.0.0.1 that accepts (the kernel does) and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_a_server_that_never_answers_is_an_open_timeout(silent_listener, scheme):
    url = f"{scheme}://admin:s3cret@127.0.0.1:{silent_listener}/live"
    with pytest.raises(InputError, match=r"no answer within 1 s \(open timed out\)") as err:
        open_source(url, timeout_s=1)
    assert "s3cret" not in str(err.value) and str(err.value).startswith(f"{scheme}://***@127.0.0.1")


def _in_thread(fn):
    """Run `fn` on a daemon thread; (done, result or exception) after at most 5 s."""
    box: list = []
    t = threading.Thread(target=lambda: box.append(_call(fn)), daemon=True)
    t.start()
    t.join(5)
    return (not t.is_alive()), (box[0] if box else None)


def _call(fn):
    try:
        return fn()
    except Exception as e:
        return e


def test_a_fifo_nobody_writes_to_is_an_open_timeout(tmp_path):
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    done, got = _in_thread(lambda: open_source(fifo, timeout_s=0.5))
    if not done:  # release the blocked open (the old behaviour) before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert done, "opening a FIFO with no writer blocked"
    assert isinstance(got, InputError) and "FIFO gave no data within 0.5 s (open timed out" in str(got)


def test_a_fifo_writer_that_stalls_ends_in_a_read_timeout_with_every_byte_read(tmp_path):
    clip = badinputs.build(badinputs.DAMAGED, "trailing-garbage.ts", tmp_path, tmp_path)
    ts = clip.read_bytes()[: -(20 << 20)]  # the 48 frames, not the garbage
    fifo = tmp_path / "stream.fifo"
    os.mkfifo(fifo)
    stop = threading.Event()

    def writer() -> None:
        with open(fifo, "wb") as f:
            f.write(ts)
            f.flush()
            stop.wait(10)  # keeps the FIFO open and silent

    threading.Thread(target=writer, daemon=True).start()
    try:
        done, source = _in_thread(lambda: open_source(fifo, timeout_s=1))
        assert done and not isinstance(source, Exception), source
        done, got = _in_thread(lambda: _read_all(source))
    finally:
        stop.set()
    assert done and len(got) == 48  # nothing the writer sent was lost to a look at its first bytes
    assert source.decode_errors == 1 and source.last_error == "no data for 1 s (read timed out)"
