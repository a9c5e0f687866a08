"""The preview server over real HTTP with real frames, and the page in a real headless Chromium fed by a
real live run: the screenshot must show a decoded video frame and emotion bars in the renderer's colours."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from pipeline.io.capture import open_source
from pipeline.live.preview import BOUNDARY, PreviewServer, ServeError, emotion_colors_hex
from pipeline.live.run import LiveJob, run_live
from pipeline.stages.render import EMOTION_COLORS_BGR

WOMAN = "pexels_woman_emotions.mp4"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def frames_bgr(media_dir) -> list[np.ndarray]:
    """The first 120 decoded frames of the single-woman video."""
    with open_source(media_dir / WOMAN) as src:
        return [f.image_bgr for f, _ in zip(src, range(120), strict=False)]


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def _jpeg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


@pytest.mark.parametrize(("emotion", "bgr"), list(EMOTION_COLORS_BGR.items()))
def test_page_colours_are_the_renderers(emotion, bgr):
    css = emotion_colors_hex()[emotion]
    assert tuple(int(css[i : i + 2], 16) for i in (5, 3, 1)) == bgr


def test_endpoints_serve_page_state_and_pictures(frames_bgr):
    with PreviewServer() as server:
        server.publish(frames_bgr[0], {"frame": 0, "tracks": [{"id": 1, "top": "sad"}]})
        page = _get(server.url).decode()
        assert 'src="stream.mjpg"' in page and 'src="app.js"' in page
        assert b"state.json" in _get(server.url + "app.js") and _get(server.url + "style.css")
        state = json.loads(_get(server.url + "state.json"))
        assert state["tracks"] == [{"id": 1, "top": "sad"}] and state["colors"] == emotion_colors_hex()
        picture = _jpeg(_get(server.url + "frame.jpg"))
        assert picture.shape == frames_bgr[0].shape
        assert np.abs(picture.astype(int) - frames_bgr[0]).mean() < 4  # the same picture, JPEG-compressed
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(server.url + "nothing-here")


def _read_part(stream) -> bytes:
    """One JPEG part of the MJPEG stream (after its boundary line)."""
    headers = {}
    while (line := stream.readline().strip()) != b"":
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower()] = v.strip()
    data = stream.read(int(headers[b"content-length"]))
    assert stream.readline() == b"\r\n" and stream.readline().strip() == f"--{BOUNDARY}".encode()
    return data


def test_mjpeg_stream_sends_each_published_frame_and_ends_on_close(frames_bgr):
    server = PreviewServer()
    try:
        server.publish(frames_bgr[0], {})
        with urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) as stream:
            assert stream.headers["Content-Type"] == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
            assert stream.readline().strip() == f"--{BOUNDARY}".encode()
            first = _jpeg(_read_part(stream))
            server.publish(frames_bgr[100], {})
            second = _jpeg(_read_part(stream))
            for got, sent in ((first, frames_bgr[0]), (second, frames_bgr[100])):
                assert np.abs(got.astype(int) - sent).mean() < 4
            server.close()
            assert stream.read() == b""  # the stream ends instead of hanging
    finally:
        server.close()


def test_a_taken_port_is_a_one_line_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServeError, match=f"127.0.0.1:{port}: cannot listen"):
            PreviewServer("127.0.0.1", port)


# ---- the page in a real browser, fed by a real live run ---------------------------------------------


def _screenshot(url: str, tmp_path) -> np.ndarray:
    png = tmp_path / "page.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}", "--window-size=1000,700",
           "--virtual-time-budget=3000", url]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, timeout=120)
    assert png.exists(), done.stderr.decode()[-2000:]
    return cv2.imread(str(png), cv2.IMREAD_COLOR)


def _picture_box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """x1, y1, x2, y2 of the largest area unlike the page background: the video picture."""
    background = shot[-5:, :5].reshape(-1, 3).mean(0)
    unlike = (np.abs(shot.astype(int) - background).sum(-1) > 40).astype(np.uint8)
    unlike = cv2.morphologyEx(unlike, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    _, _, stats, _ = cv2.connectedComponentsWithStats(unlike)
    x, y, w, h, _ = stats[1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])]
    rows = np.flatnonzero(unlike[y : y + h, x : x + w].mean(1) > 0.5)
    runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)  # the picture, not the caption's text
    picture = max(runs, key=len)
    assert w > 200 and len(picture) > 100, "no picture on the page"
    return x, y + picture[0], x + w, y + picture[-1] + 1


def _best_match(picture: np.ndarray, frames: list[np.ndarray]) -> float:
    """Highest correlation between the picture and any frame, both reduced to 160x90 grey."""
    small = lambda img: cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), (160, 90)).ravel()  # noqa: E731
    p = small(picture).astype(float)
    return max(np.corrcoef(p, small(f).astype(float))[0, 1] for f in frames)


@pytest.mark.browser
def test_page_in_headless_chromium_shows_a_decoded_frame_and_emotion_bars(media_dir, tmp_path, frames_bgr):
    if CHROMIUM is None:
        pytest.skip("browser: chromium is not installed (apt-get install -y chromium)")
    ready, stop = threading.Event(), threading.Event()
    urls: list[str] = []
    job = LiveJob(source=str(media_dir / WOMAN), realtime=True, serve=("127.0.0.1", 0), max_seconds=60)
    runner = threading.Thread(
        target=run_live,
        args=(job,),
        kwargs={"on_ready": lambda u: (urls.append(u), ready.set()), "stop": stop},
    )
    runner.start()
    try:
        assert ready.wait(60), "live run never became ready"
        _wait_for_a_face(urls[0])
        shot = _screenshot(urls[0], tmp_path)
    finally:
        stop.set()
        runner.join(timeout=60)
    x1, y1, x2, y2 = _picture_box(shot)
    assert 1.6 < (x2 - x1) / (y2 - y1) < 1.95, "the picture keeps the video's 16:9 shape"
    assert _best_match(shot[y1:y2, x1:x2], frames_bgr) > 0.9, "the picture is not a frame of the video"
    panel = shot[:, x2 + 10 :].reshape(-1, 3).astype(int)
    coloured = [np.sum(np.abs(panel - bgr).max(1) < 12) for bgr in EMOTION_COLORS_BGR.values()]
    assert max(coloured) > 200, "no emotion bar in a renderer colour beside the picture"


def _wait_for_a_face(url: str) -> None:
    for _ in range(600):  # a hang guard, not a timing claim
        state = json.loads(_get(url + "state.json"))
        if any(t.get("top") for t in state.get("tracks", [])):
            return
        threading.Event().wait(0.05)
    pytest.fail("the live run never showed a face with an emotion")


def test_a_viewer_that_stops_reading_is_dropped_not_kept_forever():
    noise = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)  # big JPEGs
    server = PreviewServer(client_timeout_s=0.5)
    try:
        with socket.create_connection(server.address) as viewer:
            viewer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            viewer.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            handlers = set()
            for _ in range(200):  # until the viewer's buffers are full and its handler blocks on a write
                server.publish(noise, {})
                time.sleep(0.01)
                handlers |= {t for t in threading.enumerate() if "emostream-preview-worker" in t.name}
            server.close()
            deadline = time.monotonic() + 5
            while any(t.is_alive() for t in handlers) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert handlers and not any(t.is_alive() for t in handlers)
    finally:
        server.close()


def test_state_with_a_missing_age_is_still_valid_json():
    from pipeline.live.summary import track_states
    from tests.builders import make_batch

    known = make_batch([[0, 0, 10, 10]], track_ids=[1]).with_outputs(
        gender=np.array([np.nan], np.float32), age=np.array([np.nan], np.float32)
    )
    with PreviewServer() as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {"tracks": track_states(known, known.select([]))})
        body = server.state_json().decode()
    state = json.loads(body, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
    assert "age" not in state["tracks"][0] and "gender" not in state["tracks"][0]


# ---- only its owner can watch (issue 16) --------------------------------------------------------------


def _request(
    address, path: str = "/state.json", host: str | None = None, cookie: str = ""
) -> tuple[int, dict]:
    """Status and headers of one GET, with the Host header as given (default: the address itself)."""
    with socket.create_connection(address, timeout=10) as s:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host or '{}:{}'.format(*address)}", "Connection: close"]
        s.sendall(("\r\n".join([*lines, *([f"Cookie: {cookie}"] if cookie else []), "", ""])).encode())
        head = b""
        while b"\r\n\r\n" not in head and (chunk := s.recv(4096)):
            head += chunk
    status, *fields = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    return int(status.split()[1]), {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}


@pytest.mark.parametrize(
    ("host", "status"),
    [("evil.example", 403), ("evil.example:8080", 403), ("localhost:1", 200), ("127.0.0.1", 200),
     ("10.1.2.3:80", 403), ("cam.lan", 200), ("CAM.LAN.:99", 200), (None, 200)],
)  # fmt: skip
def test_the_host_header_must_name_this_server(host, status):
    """DNS rebinding: a page on evil.example that resolves to 127.0.0.1 sends Host: evil.example."""
    with PreviewServer(allow_hosts=("cam.lan",)) as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {})
        assert _request(server.address, host=host)[0] == status
        assert server.report()["requests_forbidden"] == (status == 403)


def test_a_token_is_required_and_a_visit_with_it_sets_the_pages_cookie():
    with PreviewServer(token="s3cr3t-token") as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {})
        assert server.url.endswith("/?token=s3cr3t-token")
        for path in ("/", "/state.json", "/frame.jpg", "/stream.mjpg", "/state.json?token=wrong"):
            assert _request(server.address, path)[0] == 403, path
        status, headers = _request(server.address, "/?token=s3cr3t-token")
        cookie = headers["set-cookie"].split(";")[0]
        assert (
            status == 200
            and "HttpOnly" in headers["set-cookie"]
            and "SameSite=Strict" in headers["set-cookie"]
        )
        assert _request(server.address, "/state.json", cookie=cookie)[0] == 200  # the page's own requests
        assert server.report()["token_required"] and server.report()["requests_forbidden"] == 5


@pytest.mark.parametrize(
    ("host", "token"),
    [("0.0.0.0", True), ("192.168.1.20", True), ("::", True), ("127.0.0.1", False), ("::1", False),
     ("localhost", False)],
)  # fmt: skip
def test_every_address_but_loopback_gets_a_random_token(host, token):
    """(Checked without binding: the tests' servers listen on 127.0.0.1 only.)"""
    from pipeline.live.serving import Access

    first, second = Access.for_bind(host), Access.for_bind(host)
    assert (first.token is not None) == token
    if token:
        assert len(first.token) >= 20 and first.token != second.token
    assert Access.for_bind(host, token="mine").token == "mine"


def test_the_server_header_names_no_version():
    with PreviewServer() as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {})
        for path in ("/", "/nothing-here"):
            assert _request(server.address, path)[1]["server"] == "emostream"


def _slow_client(address, interval_s: float, stop: threading.Event) -> float:
    """Send a request one byte per `interval_s`; seconds until the server closed the connection."""
    t0 = time.monotonic()
    with socket.create_connection(address, timeout=10) as s:
        for byte in b"GET /state.json HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 1000:
            if stop.wait(interval_s):
                break
            try:
                s.sendall(bytes([byte]))
            except OSError:
                break
            s.settimeout(0.001)
            try:
                if s.recv(1) == b"":
                    break
            except TimeoutError:
                pass
            except OSError:
                break
    return time.monotonic() - t0


def test_a_client_sending_a_byte_at_a_time_is_dropped_at_the_request_deadline():
    stop = threading.Event()
    with PreviewServer(request_timeout_s=1.0) as server:
        try:
            held_s = _slow_client(server.address, 0.25, stop)  # well inside any per-read timeout
        finally:
            stop.set()
    assert held_s < 2.5, f"a slow client held its connection for {held_s:.1f} s"


def test_a_flood_of_slow_clients_costs_no_thread_each_and_the_page_still_answers():
    stop = threading.Event()
    with PreviewServer(request_timeout_s=1.0, workers=4) as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {})
        before = threading.active_count()
        clients = [threading.Thread(target=_slow_client, args=(server.address, 0.2, stop)) for _ in range(40)]
        try:
            for c in clients:
                c.start()
            time.sleep(0.5)
            grown = threading.active_count() - before - len(clients)
            t0 = time.monotonic()
            status = _request(server.address)[0]
            waited_s = time.monotonic() - t0
        finally:
            stop.set()
            for c in clients:
                c.join(10)
        assert grown <= 0, f"{grown} server threads for 40 clients"
        assert status in (200, 503) and waited_s < 3  # one deadline, not 40 in a row
        assert server._httpd.request_queue_size >= 128  # the listen backlog (socketserver's default is 5)


def test_stream_viewers_past_the_cap_get_503_and_are_counted():
    with PreviewServer(max_viewers=2) as server:
        server.publish(np.zeros((8, 8, 3), np.uint8), {})
        viewers = [urllib.request.urlopen(server.url + "stream.mjpg", timeout=10) for _ in range(2)]
        try:
            with pytest.raises(urllib.error.HTTPError, match="503"):
                _get(server.url + "stream.mjpg")
            assert _get(server.url + "state.json")  # page and state still answer
            report = server.report()
        finally:
            for v in viewers:
                v.close()
    assert report["viewers_refused"] == 1 and report["viewers_peak"] == 2 and report["max_viewers"] == 2
