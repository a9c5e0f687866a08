"""Browser preview of a live run: the annotated picture as MJPEG plus each visible track's emotions as JSON.

`PreviewServer(host, port)` serves, from `http.server.ThreadingHTTPServer` on a daemon thread:
  /            the page (pipeline/live/web/index.html with its script and style)
  /stream.mjpg the annotated picture, multipart/x-mixed-replace of JPEGs, one part per published frame
  /frame.jpg   the newest picture as one JPEG
  /state.json  the newest state: tracks with their emotion probabilities, run statistics, colours
The render thread calls `publish(image_bgr, state)`, which only swaps references: JPEG encoding happens
lazily, once per frame, on a viewer's thread, so a run nobody watches pays nothing. Works headless.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

import cv2
import numpy as np

from engines.errors import EmostreamError
from pipeline.frames import EMOTIONS
from pipeline.stages.render import EMOTION_COLORS_BGR

BOUNDARY = "emostream-frame"
_STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/style.css": "style.css"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css"}


class ServeError(EmostreamError):
    """The preview server cannot listen where asked (port taken, address not local, no permission)."""


def emotion_colors_hex() -> dict[str, str]:
    """The renderer's emotion colours (BGR) as CSS '#rrggbb', so page and overlay agree."""
    return {name: "#{2:02x}{1:02x}{0:02x}".format(*bgr) for name, bgr in EMOTION_COLORS_BGR.items()}


class PreviewServer:
    """Serves the newest published picture and state; `close()` stops it and ends open streams."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        jpeg_quality: int = 80,
        max_side: int = 1280,
        client_timeout_s: float = 10.0,
    ):
        """`client_timeout_s`: a viewer that takes no data for this long is dropped (its thread ends)."""
        self.jpeg_quality, self.max_side = jpeg_quality, max_side
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._state: dict = {}
        self.closing = False
        try:
            self._httpd = ThreadingHTTPServer((host, port), _handler_for(self, client_timeout_s))
        except OSError as e:
            raise ServeError(f"preview server {host}:{port}: cannot listen ({e.strerror or e})") from None
        self._httpd.daemon_threads = True
        serve = self._httpd.serve_forever
        self._thread = threading.Thread(target=serve, name="emostream-preview", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def publish(self, image_bgr: np.ndarray, state: dict) -> None:
        """Make `image_bgr` (not copied: never draw on it afterwards) and `state` the newest."""
        with self._cond:
            self._image, self._state, self._seq = image_bgr, state, self._seq + 1
            self._cond.notify_all()

    def state_json(self) -> bytes:
        with self._cond:
            state = dict(self._state)
        state.update(emotions=list(EMOTIONS), colors=emotion_colors_hex(), closing=self.closing)
        return json.dumps(state, separators=(",", ":")).encode()

    def wait_jpeg(self, after_seq: int, timeout_s: float) -> tuple[int, bytes] | None:
        """(seq, JPEG) of a picture newer than `after_seq`; None on timeout or when closing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > after_seq or self.closing, timeout_s):
                return None
            if self.closing:
                return None
            seq, image = self._seq, self._image
        return seq, self._encoded(seq, image)

    def _encoded(self, seq: int, image: np.ndarray) -> bytes:
        """The JPEG of picture `seq`, encoded once for all viewers (an older one never replaces a newer)."""
        cached_seq, data = self._jpeg
        if cached_seq == seq:
            return data
        data = self._encode(image)
        with self._cond:
            if seq > self._jpeg[0]:
                self._jpeg = (seq, data)
        return data

    def _encode(self, image: np.ndarray) -> bytes:
        h, w = image.shape[:2]
        if max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
            image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return buf.tobytes() if ok else b""

    def close(self) -> None:
        """Stop serving: open MJPEG streams end, the listening socket is released."""
        with self._cond:
            self.closing = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=2)

    def __enter__(self) -> PreviewServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler_for(preview: PreviewServer, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(_PreviewHandler):
        server_preview = preview
        timeout = timeout_s  # socket timeout: a stalled viewer's blocked write ends instead of hanging

    return Handler


class _PreviewHandler(BaseHTTPRequestHandler):
    server_preview: PreviewServer

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in _STATIC:
                self._static(_STATIC[path])
            elif path == "/state.json":
                self._send(self.server_preview.state_json(), "application/json")
            elif path == "/frame.jpg":
                self._snapshot()
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self.send_error(HTTPStatus.NOT_FOUND)
        except OSError:
            self.close_connection = True  # the viewer went away, or stopped reading (socket timeout)

    def _static(self, name: str) -> None:
        data = resources.files("pipeline.live").joinpath("web", name).read_bytes()
        self._send(data, _TYPES[name[name.rfind(".") :]])

    def _snapshot(self) -> None:
        got = self.server_preview.wait_jpeg(0, timeout_s=2.0)
        if got is None:
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no frame yet")
        else:
            self._send(got[1], "image/jpeg")

    def _stream(self) -> None:
        """Each part is followed at once by the next boundary, so browsers show it without waiting."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache, no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(f"--{BOUNDARY}\r\n".encode())
        seq = 0
        while not self.server_preview.closing:
            got = self.server_preview.wait_jpeg(seq, timeout_s=0.5)
            if got is None:
                continue
            seq, data = got
            head = f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n".encode()
            self.wfile.write(head + data + f"\r\n--{BOUNDARY}\r\n".encode())
            self.wfile.flush()

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # quiet: no request log on stderr
        pass
