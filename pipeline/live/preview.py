"""Browser preview of a live run: the annotated picture as MJPEG plus each visible track's emotions as JSON.

`PreviewServer(host, port)` serves, from `http.server.ThreadingHTTPServer` on a daemon thread:
  /            the page (pipeline/live/web/index.html with its script and style)
  /stream.mjpg the annotated picture, multipart/x-mixed-replace of JPEGs, one part per published frame
  /frame.jpg   the newest picture as one JPEG
  /state.json  the newest state: tracks with their emotion probabilities, run statistics, colours
The render thread calls `publish(image_bgr, state)`, which only swaps references: JPEG encoding happens
lazily, once per frame, on a viewer's thread, so a run nobody watches pays nothing. Works headless.

Only its owner can watch (pipeline/live/serving.py): off loopback every request needs the access token
(`url` carries it; a visit with `?token=` sets a cookie for the page's own requests), the Host header is
checked, requests run on a bounded pool with a whole-request deadline, at most `max_viewers` streams run
at once (503 beyond, counted in `report()`), and the `Server:` header names no version.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources

import cv2
import numpy as np

from engines.errors import EmostreamError
from pipeline.frames import EMOTIONS
from pipeline.live.serving import WILDCARD_HOSTS, Access, DeadlineReader, PoolServer
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
        *,
        token: str | None = None,
        allow_hosts: tuple[str, ...] = (),
        request_timeout_s: float = 5.0,
        workers: int = 16,
        max_viewers: int = 8,
    ):
        """`client_timeout_s`: a viewer that takes no data for this long is dropped (its worker freed);
        `request_timeout_s`: the time a client has to send its whole request (and take a page);
        `token`: required of every request (default: none on loopback, a random one elsewhere);
        `allow_hosts`: Host header names accepted besides localhost, this machine's and IP literals."""
        self.jpeg_quality, self.max_side = jpeg_quality, max_side
        self._cond = threading.Condition()
        self._image: np.ndarray | None = None
        self._seq = 0
        self._jpeg: tuple[int, bytes] = (0, b"")
        self._state: dict = {}
        self.closing = False
        self.access = Access.for_bind(host, token, allow_hosts)
        self.max_viewers = max(1, min(max_viewers, workers - 1))  # a worker always left for page and state
        self.viewers = self.viewers_peak = self.viewers_refused = self.forbidden = 0
        handler = _handler_for(self, client_timeout_s, request_timeout_s)
        try:
            self._httpd = PoolServer((host, port), handler, workers=workers)
        except OSError as e:
            raise ServeError(f"preview server {host}:{port}: cannot listen ({e.strerror or e})") from None
        self.cookie_name = f"emostream_token_{self.address[1]}"
        serve = self._httpd.serve_forever
        self._thread = threading.Thread(target=serve, name="emostream-preview", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """Where to watch, with the token when one is needed (print it only to the owner)."""
        host, port = self.address
        if host in WILDCARD_HOSTS:  # every address: name this machine, not a loopback it is not only on
            host = socket.gethostname()
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}/" + (f"?token={self.access.token}" if self.access.token else "")

    @property
    def needs_token(self) -> bool:
        return self.access.token is not None

    def viewer_enter(self) -> bool:
        """Count a new stream viewer; False (refused, counted) when `max_viewers` already watch."""
        with self._cond:
            if self.viewers >= self.max_viewers:
                self.viewers_refused += 1
                return False
            self.viewers += 1
            self.viewers_peak = max(self.viewers_peak, self.viewers)
            return True

    def viewer_leave(self) -> None:
        with self._cond:
            self.viewers -= 1

    def report(self) -> dict:
        """For summary.json: where it listened (no token), limits, and who was turned away."""
        host, port = self.address
        return {
            "address": f"{host}:{port}",
            "token_required": self.needs_token,
            "max_viewers": self.max_viewers,
            "viewers_peak": self.viewers_peak,
            "viewers_refused": self.viewers_refused,
            "connections_refused_busy": self._httpd.refused,
            "requests_forbidden": self.forbidden,
        }

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


def _handler_for(preview: PreviewServer, timeout_s: float, request_timeout_s: float) -> type:
    class Handler(_PreviewHandler):
        server_preview = preview
        timeout = timeout_s  # socket timeout: a stalled viewer's blocked write ends instead of hanging
        request_timeout = request_timeout_s

    return Handler


class _PreviewHandler(BaseHTTPRequestHandler):
    server_preview: PreviewServer
    request_timeout: float
    server_version = "emostream"  # and no Python version after it (version_string)

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        """Reading the request line and headers must all end by one deadline."""
        super().setup()
        self.deadline_s = self.server.accepted_at(self.request) + self.request_timeout
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, self.deadline_s))
        self._cookie: str | None = None

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        try:
            if not self._allowed(query):
                return
            # the rest of a page or a picture must go by the same deadline (sendall's timeout is total)
            self.connection.settimeout(max(0.05, self.deadline_s - time.monotonic()))
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

    def _allowed(self, query: str) -> bool:
        """Host header, then token; 403 otherwise. A right token in the query sets the page's cookie."""
        preview = self.server_preview
        access = preview.access
        if not access.host_ok(self.headers.get("Host")):
            why = "Host header not allowed (add the name with --serve-hosts)"
        elif not access.token_ok(query, self.headers.get("Cookie"), preview.cookie_name):
            why = "access token required: open the URL printed by emostream live"
        else:
            if access.given_in_query(query):
                self._cookie = f"{preview.cookie_name}={access.token}; HttpOnly; SameSite=Strict; Path=/"
            return True
        preview.forbidden += 1
        self.send_error(HTTPStatus.FORBIDDEN, why)
        return False

    def end_headers(self) -> None:
        if self._cookie:
            self.send_header("Set-Cookie", self._cookie)
        super().end_headers()

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
        """At most `max_viewers` at once (503 beyond): each holds a worker for as long as it watches."""
        if not self.server_preview.viewer_enter():
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "too many viewers")
            return
        try:
            self.connection.settimeout(self.timeout)
            self._parts()
        finally:
            self.server_preview.viewer_leave()

    def _parts(self) -> None:
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
