"""The preview's HTTP plumbing, hardened for a network: who may watch, and how much any one client may hold.

`Access`: a random token is required on any address that is not loopback (or wherever one is given), and
the Host header must name this server (an IP literal it listens on, localhost, this machine's name, or a
name the user allows), so a page on another site cannot read the preview through DNS rebinding.
`PoolServer`: a fixed pool of worker threads behind a bounded queue and a real listen backlog: a flood
of clients costs queued sockets, never threads, and past the queue each gets 503 at once. `DeadlineReader`
bounds reading a whole request, so a client sending a byte a second holds a worker for seconds, not forever.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import ipaddress
import queue
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from http.server import HTTPServer
from urllib.parse import parse_qs

WILDCARD_HOSTS = ("", "0.0.0.0", "::")
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost: only this machine can connect."""
    ip = _ip(host)
    return host.lower() == "localhost" if ip is None else ip.is_loopback


@dataclass(frozen=True)
class Access:
    """Who may watch: `token` (None: none needed) and the Host names allowed besides IP literals."""

    bound: str
    token: str | None
    names: frozenset[str]

    @classmethod
    def for_bind(cls, host: str, token: str | None = None, allow_hosts: tuple[str, ...] = ()) -> Access:
        """Loopback needs no token unless one is given; any other address gets a random one."""
        if token is None and not is_loopback(host):
            token = secrets.token_urlsafe(18)
        names = {"localhost", socket.gethostname(), socket.getfqdn(), *allow_hosts}
        if _ip(host) is None and host not in WILDCARD_HOSTS:
            names.add(host)
        return cls(host, token or None, frozenset(n.lower().rstrip(".") for n in names if n))

    def host_ok(self, header: str | None) -> bool:
        """The Host header names this server: a name allowed, or an IP literal it listens on."""
        if not header:
            return False
        name = header.strip().lower()
        if name.startswith("["):  # [v6]:port
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.split(":", 1)[0]
        ip = _ip(name)
        if ip is None:
            return name.rstrip(".") in self.names
        bound = _ip(self.bound)
        wildcard = self.bound in WILDCARD_HOSTS
        return wildcard or ip == bound or (ip.is_loopback and bound is not None and bound.is_loopback)

    def token_ok(self, query: str, cookie_header: str | None, cookie_name: str) -> bool:
        """No token needed, or the right one in `?token=` or in the cookie an earlier visit set."""
        if self.token is None:
            return True
        given = parse_qs(query).get("token", [""])[0] or _cookie(cookie_header, cookie_name)
        return hmac.compare_digest(given.encode(), self.token.encode())

    def given_in_query(self, query: str) -> bool:
        return bool(self.token) and bool(parse_qs(query).get("token"))


def _cookie(header: str | None, name: str) -> str:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


class DeadlineReader(io.RawIOBase):
    """Socket reads that all end by one `deadline` (time.monotonic()): a whole-request time limit, which a
    per-read timeout is not (a byte a second resets it forever)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self.sock, self.deadline = sock, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left_s = self.deadline - time.monotonic()
        if left_s <= 0:
            raise TimeoutError("the request took longer than its deadline")
        self.sock.settimeout(left_s)
        return self.sock.recv_into(buffer)


class PoolServer(HTTPServer):
    """An HTTPServer whose requests run on `workers` threads; `pending` more wait, the rest get 503."""

    request_queue_size = 128  # the listen backlog (socketserver's default is 5)
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler, workers: int = 16, pending: int = 64) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.refused = 0  # connections turned away because every worker was busy and the queue full
        self._queue: queue.Queue = queue.Queue(pending)
        self._stopping = threading.Event()
        self._accepted_s: dict[int, float] = {}  # id(connection) -> when accepted: deadlines start there
        self._workers = [
            threading.Thread(target=self._work, name=f"emostream-preview-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        super().__init__(address, handler)  # binds and listens (closes itself if it cannot)
        for t in self._workers:
            t.start()

    def accepted_at(self, request) -> float:
        """When `request` was accepted (time.monotonic()): its deadline counts from there, not from the
        moment a worker got to it, so a queue of slow clients drains at once."""
        return self._accepted_s.pop(id(request), time.monotonic())

    def process_request(self, request, client_address) -> None:
        self._accepted_s[id(request)] = time.monotonic()
        try:
            self._queue.put_nowait((request, client_address))
        except queue.Full:
            self._accepted_s.pop(id(request), None)
            self.refused += 1
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_BUSY)
            self.shutdown_request(request)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                request, client_address = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.finish_request(request, client_address)
            except Exception:  # a client that misbehaved: its connection ends, the worker goes on
                pass
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket, drop queued connections, end the workers (each within its deadline)."""
        super().server_close()
        self._stopping.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.shutdown_request(self._queue.get_nowait()[0])
        end_s = time.monotonic() + 3.0
        for t in self._workers:
            if t.ident is not None:  # (not started when binding failed)
                t.join(timeout=max(0.0, end_s - time.monotonic()))
