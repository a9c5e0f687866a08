"""download_verified against a real HTTP server on 127.0.0.1 serving real model bytes from the mirror."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import pytest

from engines.errors import ModelStoreError
from engines.store.download import download_url, download_verified
from engines.store.registry import get_spec
from engines.store.store import sha256_file

YUNET = get_spec("yunet")


class ModelServer:
    """A threaded HTTP server on an ephemeral 127.0.0.1 port serving in-memory files by name.

    `serve(filename, body, declared_len=...)` registers a file; a declared length larger than the body makes
    the server send that Content-Length, write the short body and close (a truncated download). Unknown paths
    get 404. `hits` lists the paths asked for, so tests can tell whether the network was used.
    """

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, int]] = {}
        self.hits: list[str] = []
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def serve(self, filename: str, body: bytes, declared_len: int | None = None) -> str:
        self.files[f"/{filename}"] = (body, len(body) if declared_len is None else declared_len)
        return f"{self.base_url}/{filename}"

    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                if self.path not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body, declared_len = server.files[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(declared_len))
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler


@pytest.fixture
def server():
    with ModelServer() as s:
        yield s


@pytest.fixture(scope="module")
def yunet_bytes(models_dir: Path) -> bytes:
    return (models_dir / YUNET.filename).read_bytes()


def closed_port_url(filename: str) -> str:
    """A URL on a 127.0.0.1 port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{filename}"


def test_good_file_lands_verified_and_leaves_no_part_file(server, yunet_bytes, tmp_path):
    url = server.serve(YUNET.filename, yunet_bytes)
    dest = tmp_path / "models" / YUNET.filename
    assert download_verified(YUNET, dest, url=url) == dest
    assert sha256_file(dest) == YUNET.sha256
    assert server.hits == [f"/{YUNET.filename}"]
    assert sorted(p.name for p in dest.parent.iterdir()) == [YUNET.filename]


def _flipped(body: bytes) -> bytes:
    return body[:100] + bytes([body[100] ^ 0xFF]) + body[101:]


# case -> expected fragment of the one-line message ({size}: the real file's size)
FAILURES = {
    "wrong_hash": "sha256 mismatch",
    "truncated": "truncated after 1000 of {size} bytes",
    "http_404": "HTTP 404",
    "refused": "connection refused",
}


def _failing_url(case: str, server: ModelServer, body: bytes) -> str:
    if case == "wrong_hash":
        return server.serve(YUNET.filename, _flipped(body))
    if case == "truncated":
        return server.serve(YUNET.filename, body[:1000], declared_len=len(body))
    if case == "http_404":
        return f"{server.base_url}/{YUNET.filename}"
    return closed_port_url(YUNET.filename)


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_failure_is_one_line_naming_file_url_problem_and_offline_fix(case, server, yunet_bytes, tmp_path):
    url = _failing_url(case, server, yunet_bytes)
    dest = tmp_path / YUNET.filename
    dest.write_bytes(b"previous contents")
    with pytest.raises(ModelStoreError) as err:
        download_verified(YUNET, dest, url=url)
    msg = str(err.value)
    assert "\n" not in msg
    problem = FAILURES[case].format(size=len(yunet_bytes))
    for fragment in (problem, YUNET.filename, url, "EMOSTREAM_MODELS_DIR"):
        assert fragment in msg
    assert dest.read_bytes() == b"previous contents"  # the old file is never half-replaced
    assert not list(tmp_path.glob("*.part"))


def test_silent_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/{YUNET.filename}"
        with pytest.raises(ModelStoreError, match=r"no answer within 0\.2 s"):
            download_verified(YUNET, tmp_path / YUNET.filename, url=url, timeout_s=0.2)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        (None, YUNET.url),
        ("", YUNET.url),
        ("http://mirror.example/models", f"http://mirror.example/models/{YUNET.filename}"),
        ("http://mirror.example/models/", f"http://mirror.example/models/{YUNET.filename}"),
    ],
)
def test_download_base_env_replaces_upstream_url(base, expected, monkeypatch):
    if base is None:
        monkeypatch.delenv("EMOSTREAM_DOWNLOAD_BASE", raising=False)
    else:
        monkeypatch.setenv("EMOSTREAM_DOWNLOAD_BASE", base)
    assert download_url(YUNET) == expected


def test_download_base_env_is_used_when_no_url_given(server, yunet_bytes, tmp_path, monkeypatch):
    server.serve(YUNET.filename, yunet_bytes)
    monkeypatch.setenv("EMOSTREAM_DOWNLOAD_BASE", server.base_url)
    download_verified(YUNET, tmp_path / YUNET.filename)
    assert server.hits == [f"/{YUNET.filename}"]


@pytest.mark.parametrize(("progress", "bar_shown"), [(True, True), (False, False), (None, False)])
def test_progress_bar_only_when_asked_or_on_a_tty(progress, bar_shown, server, yunet_bytes, tmp_path, capsys):
    url = server.serve(YUNET.filename, yunet_bytes)
    download_verified(YUNET, tmp_path / YUNET.filename, url=url, progress=progress)
    assert (YUNET.filename in capsys.readouterr().err) is bar_shown  # captured stderr is not a TTY
