"""A real HTTP server on 127.0.0.1 with scripted replies and fault injection, for tests.

    from httpserver import LoopbackServer, Reply

    with LoopbackServer() as srv:
        srv.route("GET", "/TAP/sync", Reply(503), Reply(200, body=b"pl_name\\n\\"x\\"\\n"))
        ... srv.url("/TAP/sync") ...
        assert len(srv.hits("/TAP/sync")) == 2

Replies for a route are served in order; the last one repeats. A route can also be a function
`handler(request) -> Reply` (for stateful services such as UWS jobs). Every request is recorded
(method, path, query, headers, body). Faults a Reply can inject: a delay before the headers,
a body cut short after `send_bytes` bytes (closed cleanly, or reset with RST when `reset`, or
after hanging for `stall` seconds),
Range support (`ranges=True`), a wrong Content-Range (`bad_range=True`), a slow drip (`drip`
seconds before each body byte, `header_drip` before each byte of the status line and headers).

Fixtures using it live in tests/net/conftest.py and tests/fetch/conftest.py (`loopback`).
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain; charset=utf-8"
    delay: float = 0.0  # seconds before the status line
    send_bytes: int | None = None  # send only this many body bytes, then close
    reset: bool = False  # close with RST instead of FIN after send_bytes
    stall: float = 0.0  # after send_bytes, wait this long before closing (a hung transfer)
    content_length: bool = True  # send a Content-Length header (the full body's length)
    ranges: bool = False  # honour `Range: bytes=N-` with 206
    bad_range: bool = False  # answer a Range request with a Content-Range that starts elsewhere
    drip: float = 0.0  # send the body one byte at a time, this many seconds before each
    header_drip: float = 0.0  # the same for the status line and headers


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""  # the request target exactly as sent (path?query)

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True)

    def q(self, name: str) -> str | None:
        """A query or form parameter, case-insensitive name."""
        for src in (self.query, self.form):
            for k, v in src.items():
                if k.lower() == name.lower():
                    return v[0]
        return None


Route = list[Reply] | Callable[[Request], Reply]


class LoopbackServer:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Route] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                req = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query, keep_blank_values=True),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    self.path,
                )
                reply = server._reply_for(req)
                server._send(self, req, reply)

            do_GET = do_POST = do_DELETE = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- scripting ---------------------------------------------------------------------------

    def route(self, method: str, path: str, *replies: Reply | Callable[[Request], Reply]) -> None:
        if len(replies) == 1 and callable(replies[0]) and not isinstance(replies[0], Reply):
            self.routes[(method.upper(), path)] = replies[0]
        else:
            self.routes[(method.upper(), path)] = list(replies)  # type: ignore[arg-type]

    def url(self, path: str = "") -> str:
        return self.base_url + path

    def hits(self, path: str, method: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path == path and (method is None or r.method == method)
            ]

    # -- serving -----------------------------------------------------------------------------

    def _reply_for(self, req: Request) -> Reply:
        with self._lock:
            self.requests.append(req)
            route = self.routes.get((req.method, req.path))
            if route is None:
                return Reply(
                    404, b"<html><title>404 Not Found</title></html>", content_type="text/html"
                )
            if callable(route):
                pass
            elif len(route) > 1:
                return route.pop(0)
            else:
                return route[0]
        return route(req)  # outside the lock: handlers may be slow

    def _send(self, h: BaseHTTPRequestHandler, req: Request, reply: Reply) -> None:
        if reply.delay:
            time.sleep(reply.delay)
        body, status = reply.body, reply.status
        headers = {"Content-Type": reply.content_type, **reply.headers}
        rng = req.headers.get("range", "")
        if reply.ranges and status == 200 and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            shown = start + 7 if reply.bad_range else start
            headers["Content-Range"] = f"bytes {shown}-{len(body) - 1}/{len(body)}"
            body, status = body[start:], 206
        if reply.ranges:
            headers["Accept-Ranges"] = "bytes"
        if reply.content_length:
            headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close"
        try:
            if reply.header_drip:
                head = f"HTTP/1.1 {status} {h.responses.get(status, ('',))[0]}\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()
                )
                for byte in (head + "\r\n").encode():
                    time.sleep(reply.header_drip)
                    h.wfile.write(bytes([byte]))
                    h.wfile.flush()
                h.close_connection = True
            else:
                h.send_response(status)
                for k, v in headers.items():
                    h.send_header(k, v)
                h.end_headers()
            if req.method == "HEAD":
                return
            if reply.drip:
                for byte in body[: reply.send_bytes]:
                    time.sleep(reply.drip)
                    h.wfile.write(bytes([byte]))
                    h.wfile.flush()
                h.close_connection = True
                return
            if reply.send_bytes is None:
                h.wfile.write(body)
                h.wfile.flush()
                return
            h.wfile.write(body[: reply.send_bytes])
            h.wfile.flush()
            if reply.stall:
                time.sleep(reply.stall)
            if reply.reset:  # SO_LINGER 0: close() sends RST, the client sees "connection reset"
                h.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                h.connection.close()
            h.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
