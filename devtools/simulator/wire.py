"""The simulator's wire: the HTTP server and handler, and the Request and Response a
route sees and gives, with the answers every route shares (JSON, empty, the error shapes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("devtools.simulator")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    host: str


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    #: a body sent as it is produced (chunked), instead of ``body``
    chunks: Iterable[bytes] | None = None


def json_response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    merged = {"Content-Type": "application/json"}
    if headers:
        merged.update(headers)
    return Response(status, body, merged)


def empty_response(status: int) -> Response:
    return Response(status)


def twilio_error(status: int, code: int, message: str) -> Response:
    return json_response(
        status,
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


_STATUS_ERRORS = {
    400: "bad_request",
    403: "forbidden",
    401: "invalid_token",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def error_response(kind: str | None, status: int, retry_after: str | None = None) -> Response:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if kind == "lookup":
        code = {401: 20003, 429: 20429}.get(status, 20500)
        resp = twilio_error(status, code, _STATUS_ERRORS.get(status, "error"))
        resp.headers.update(headers)
        return resp
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return json_response(status, {"error": _STATUS_ERRORS.get(status, "error")}, headers)


def invalid_client() -> Response:
    return json_response(401, {"error": "invalid_client"}, {"WWW-Authenticate": "Basic"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Benchmarks open many connections at once; the default backlog of 5 drops them.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], handle: Callable[[Request], Response]) -> None:
        self.handle = handle
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK and every response costs ~40 ms.
    disable_nagle_algorithm = True
    server_version = "cxsweep-simulator/1"
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_DELETE = do_PUT = do_HEAD = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(json_response(400, {"error": "unreadable body"}))
            return
        split = urlsplit(self.path)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers=self.headers,
            body=body,
            host=host,
        )
        try:
            response = self.server.handle(request)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, self.path)
            response = json_response(500, {"error": "simulator_bug"})
        self._send(response)

    def _send(self, response: Response) -> None:
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in response.chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        # RFC 9110 forbids Content-Length on 204; everything else gets one for keep-alive.
        if response.status != 204:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)


def parse_batch(body: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError("bad JSON") from exc
    contacts = value.get("contacts") if isinstance(value, dict) else None
    if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
        raise ValueError("body must be {'contacts': [{...}, ...]}")
    return contacts


def batch_size(body: bytes) -> int:
    try:
        contacts = json.loads(body).get("contacts")
    except (ValueError, AttributeError):
        return 0
    return len(contacts) if isinstance(contacts, list) else 0
