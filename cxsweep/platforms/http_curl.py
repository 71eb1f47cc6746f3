"""Our plain API calls over libcurl (pycurl): the same request on the wire as requests
would send, sent once, its answer read at a fraction of urllib3's CPU.

A fleet sweeping at the platform's pace is CPU-bound on the requests themselves: per
call, requests' ``Session.request`` costs ~1.3 ms of CPU here, urllib3's pool ~0.3 to
0.6 ms, libcurl ~0.1 ms (bench/http_call.py, bench/PROFILE.md session 6).

Only the calls ``http_session`` already sends without requests' preparation come here:
no proxy, no Basic auth, no form, a plain URL, the answer read at once. What requests
and urllib3 did for them is done as they did it, and checked (tests/test_http.py):

- a write sent once. libcurl sends a request again by itself, on a new connection, when
  a kept one breaks before any answer came, even if the server had it
  (``Curl_retry_request``; no option turns it off): a second write behind one permit.
  ``PREREQFUNCTION`` refuses the second send, and the call fails as urllib3's does
  (``max_retries=0``: a retry is the task's, with a new permit). A connection the server
  closed while it was idle is not used for a write (as urllib3 checks), so that rarely
  costs a retry. A read may go twice: that does no harm;
- the same request line, headers and body (curl adds none of its own: no ``Accept: */*``,
  no ``Expect``, no form ``Content-Type``; HTTP/1.1 only; ``Accept-Encoding`` as the
  caller's, the body decoded as requests decodes it) and path (dot segments as given);
- a header value with a line break, NUL or non-ASCII character is refused, not sent
  (a token from the platform cannot add headers or smuggle a request), and the refusal
  does not show the value;
- TLS verified against the same CA bundle (a directory: only it, not the system's as
  well) unless ``verify`` is False; a certificate that does not verify is an
  ``ssl.SSLCertVerificationError`` inside requests' ``SSLError``, as with urllib3, so
  ``certificate_refused`` tells it from a handshake cut short;
- the connect time-out as given. A read's time-out is no byte moving for that long,
  counted from the request's send (checked by the progress callback, which libcurl
  calls about once a second when nothing arrives: a stall is noticed up to ~1 s after
  the read time-out). A write's whole call is limited to connect + read, stricter than
  urllib3's per-read limit, so it is over within the budget the watchdog fences writes
  on (connect + read + 1 s). No redirect followed; no proxy from the environment (the
  session decided there is none for this origin);
- the answer's body read at most ``cap + 1`` bytes: an endless answer cannot fill the
  worker's memory (the transport then refuses it, as before);
- an exception a signal handler raises during the call (Celery's soft time limit,
  Ctrl-C) stops it within about a second and is raised again after it, not turned into
  a connection error that the task would retry.

A connection is kept per thread (a pycurl handle is not shared between threads), made
anew in a forked child. Every handle stays referenced for the process's life: a child
that freed the handles it inherited would close its parent's TLS connections.
"""

from __future__ import annotations

import io
import os
import select
import ssl
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

try:
    import pycurl
except ImportError:  # a platform without its wheels: urllib3 sends every call
    pycurl = None

_local = threading.local()
# Never freed (see the module's docstring): a handle per thread that ever read.
_handles: list[Any] = []
_handles_lock = threading.Lock()

# libcurl's error codes (curl/curl.h): a certificate that did not verify; a time-out;
# the transfer stopped by our write callback (the cap); a TLS handshake that failed.
_CERT_ERRORS = frozenset({51, 60, 77, 83, 90, 91})
_TIMEOUT = 28
_WRITE_ABORTED = 23
_SSL_CONNECT = 35


def available() -> bool:
    return pycurl is not None


class BodyTooLarge(Exception):
    """The answer went past the cap while it was read."""


def _handle() -> Any:
    """This thread's handle (its connection kept alive between calls)."""
    found = getattr(_local, "handle", None)
    if found is None or _local.pid != os.getpid():
        found = pycurl.Curl()
        _local.handle, _local.pid = found, os.getpid()
        with _handles_lock:
            _handles.append(found)
    return found


def send(
    method: str,
    url: str,
    headers: Mapping[str, str | bytes],
    body: bytes | None,
    *,
    timeout: tuple[float, float],
    verify: bool,
    ca_bundle: str,
    ca_is_dir: bool,
    cap: int | None,
) -> requests.Response:
    """Send one request, once, and read its answer (at most ``cap`` + 1 bytes of body)."""
    lines = [_header_line(name, value) for name, value in headers.items()]
    sent = {name.lower() for name in headers}
    # "Name:" with nothing after it removes a header curl would add on its own.
    for own in ("Accept", "User-Agent", "Expect", "Content-Type"):
        if own.lower() not in sent:
            lines.append(f"{own}:")
    encodings = headers_get(headers, "accept-encoding")
    curl = _handle()
    # A write is sent once (``_Watch.before_sending``), so, as urllib3 checks before it
    # reuses a connection, one the server closed while it was idle (readable now) is not
    # used for it: a new one is made. (A read may be sent again: libcurl does that.)
    writes = method not in ("GET", "HEAD")
    kept = curl.getinfo(pycurl.ACTIVESOCKET) if writes else -1
    closed = False
    if kept != -1:
        poller = select.poll()  # not select(): a descriptor may be past 1024
        poller.register(kept, select.POLLIN)
        closed = bool(poller.poll(0))
    curl.reset()  # options only: the kept connection stays
    if closed:
        curl.setopt(pycurl.FRESH_CONNECT, 1)
    curl.setopt(pycurl.URL, url)
    # One kept connection a thread: the one the check above looks at.
    curl.setopt(pycurl.MAXCONNECTS, 1)
    curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
    curl.setopt(pycurl.PATH_AS_IS, 1)
    curl.setopt(pycurl.PROXY, "")  # not from the environment: the session decided
    curl.setopt(pycurl.FOLLOWLOCATION, 0)
    curl.setopt(pycurl.NOSIGNAL, 1)
    if method == "GET":
        curl.setopt(pycurl.HTTPGET, 1)
    elif method == "HEAD":
        curl.setopt(pycurl.NOBODY, 1)
    else:
        curl.setopt(pycurl.CUSTOMREQUEST, method)
        curl.setopt(pycurl.POSTFIELDS, body or b"")
    if encodings:
        # requests asks for gzip and deflate and hands the body over decoded: libcurl
        # sends the header itself then, and decodes what comes back.
        lines = [line for line in lines if not line.lower().startswith("accept-encoding:")]
        curl.setopt(pycurl.ENCODING, encodings)
    else:
        curl.setopt(pycurl.HTTP_CONTENT_DECODING, 0)
    curl.setopt(pycurl.HTTPHEADER, lines)
    connect, read = timeout
    curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, int(connect * 1000)))
    if writes:
        # A write is over within connect + read, whatever the answer's pace: the
        # watchdog fences a run's writes on that budget and one second more
        # (tasks/record.py), which libcurl's once-a-second stall check could use up.
        curl.setopt(pycurl.TIMEOUT_MS, max(1, int((connect + read) * 1000)))
    if url.startswith("https"):
        if not verify:
            curl.setopt(pycurl.SSL_VERIFYPEER, 0)
            curl.setopt(pycurl.SSL_VERIFYHOST, 0)
        elif ca_is_dir:
            # Only the directory: with CAINFO left at its default, libcurl would trust
            # the system's bundle as well.
            curl.setopt(pycurl.CAPATH, ca_bundle)
            curl.unsetopt(pycurl.CAINFO)
        else:
            curl.setopt(pycurl.CAINFO, ca_bundle)
    watch = _Watch(read, once=writes)
    received = io.BytesIO()
    size = 0

    def write(chunk: bytes) -> int | None:
        nonlocal size
        size += len(chunk)
        received.write(chunk)
        if cap is not None and size > cap:
            return 0  # libcurl stops the transfer (E_WRITE_ERROR)
        return None

    header_lines: list[bytes] = []

    def header(line: bytes) -> None:
        watch.moved = time.monotonic()  # header bytes are bytes moving too
        header_lines.append(line)

    # Calls into Python cost a request's CPU: a write gets no stall check (its whole
    # call is limited, above); a read is let be sent again (reading twice does no harm).
    curl.setopt(pycurl.PREREQFUNCTION, watch.before_sending)
    if writes:
        curl.setopt(pycurl.HEADERFUNCTION, header_lines.append)
    else:
        curl.setopt(pycurl.NOPROGRESS, 0)
        curl.setopt(pycurl.XFERINFOFUNCTION, watch.progress)
        curl.setopt(pycurl.HEADERFUNCTION, header)
    curl.setopt(pycurl.WRITEFUNCTION, write)
    # An exception raised in a callback (a signal handler's: Celery's soft time limit,
    # Ctrl-C) is printed by pycurl, kept as sys.last_value, and the call aborted.
    printed = getattr(sys, "last_value", None)
    try:
        curl.perform()
    except pycurl.error as exc:
        last = getattr(sys, "last_value", None)
        if last is not printed and isinstance(last, BaseException):
            raise last from None
        if watch.raised is not None:
            raise watch.raised from None
        raise _as_requests_error(exc, watch, size, cap) from None
    return _response(curl, url, header_lines, received.getvalue())


class _Watch:
    """libcurl's callbacks for one request: a write is sent once (``before_sending``:
    libcurl would send it again by itself on a new connection when the kept one broke
    before an answer, even if the server had it); a read that stalls ``read`` seconds is
    stopped, as urllib3's read time-out would (``progress``, called at least once a
    second); an exception raised meanwhile in this thread (a Celery soft time limit) is
    kept."""

    def __init__(self, read: float, *, once: bool) -> None:
        self.read = read
        self.once = once
        self.sends = 0
        self.moved = time.monotonic()
        self.seen = -1
        self.stalled = False
        self.resend_refused = False
        self.raised: BaseException | None = None

    def before_sending(self, *_: Any) -> int:
        self.sends += 1
        if self.sends > 1 and self.once:
            self.resend_refused = True
            return int(pycurl.PREREQFUNC_ABORT)
        # Connected: from here the read time-out counts (before, the connect time-out).
        self.moved = time.monotonic()
        return int(pycurl.PREREQFUNC_OK)

    def progress(self, _dltotal: int, dlnow: int, _ultotal: int, ulnow: int) -> int:
        try:
            now = time.monotonic()
            if not self.sends:
                pass  # still connecting: CONNECTTIMEOUT's to stop
            elif dlnow + ulnow != self.seen:
                self.seen, self.moved = dlnow + ulnow, now
            elif now - self.moved > self.read:
                self.stalled = True
                return 1  # libcurl stops (E_ABORTED_BY_CALLBACK)
        except BaseException as exc:  # re-raised after perform()
            self.raised = exc
            return 1
        return 0


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _header_line(name: str, value: str | bytes) -> str:
    """``Name: value``, or refused: a line break or NUL would end the header early (a
    second header, or a second request, from a value the platform gave us: the token)."""
    shown = _text(value)
    if not (shown.isascii() and shown.isprintable() and name.isascii() and name.isprintable()):
        raise requests.exceptions.InvalidHeader(
            f"the {name!r} header holds a control or non-ASCII character: not sent"
        )
    return f"{name}: {shown}"


def headers_get(headers: Mapping[str, str | bytes], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return _text(value)
    return ""


def _response(curl: Any, url: str, lines: list[bytes], content: bytes) -> requests.Response:
    status = int(curl.getinfo(pycurl.RESPONSE_CODE))
    fields: list[tuple[str, str]] = []
    reason = ""
    ended = False
    for raw in lines:
        line = raw.decode("latin-1").rstrip("\r\n")
        if line.startswith("HTTP/"):
            # A 100 Continue or another interim answer came first: the last block counts.
            fields, ended = [], False
            parts = line.split(" ", 2)
            reason = parts[2] if len(parts) > 2 else ""
        elif not line or ended:
            # The block's end; what follows it (a chunked answer's trailer) is not a
            # header of the answer.
            ended = True
        elif line[:1] in (" ", "\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
        elif ":" in line:
            name, _, value = line.partition(":")
            fields.append((name.strip(), value.strip()))
    # Repeated fields joined with ", ", as urllib3's HTTPHeaderDict hands them to requests.
    joined: dict[str, tuple[str, str]] = {}
    for name, value in fields:
        key = name.lower()
        if key in joined:
            joined[key] = (joined[key][0], f"{joined[key][1]}, {value}")
        else:
            joined[key] = (name, value)
    response = requests.Response()
    response.status_code = status
    response.headers = CaseInsensitiveDict(dict(joined.values()))
    response.encoding = get_encoding_from_headers(response.headers)
    response.reason = reason
    response.url = url
    response._content = content
    response._content_consumed = True  # type: ignore[attr-defined]  # not in the stubs
    return response


def _as_requests_error(exc: Any, watch: _Watch, size: int, cap: int | None) -> Exception:
    """libcurl's failure as requests would have raised it for urllib3's."""
    code = exc.args[0] if exc.args else 0
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    if watch.stalled:
        return requests.exceptions.ReadTimeout(f"no data for {watch.read:g} s")
    if watch.resend_refused:
        return requests.ConnectionError(
            "the connection broke before the answer; not sent again (a retry is the task's)"
        )
    if code == _WRITE_ABORTED and cap is not None and size > cap:
        return BodyTooLarge(f"answer exceeds the {cap} byte cap")
    if code in _CERT_ERRORS:
        return requests.exceptions.SSLError(ssl.SSLCertVerificationError(1, message))
    if code == _SSL_CONNECT:
        return requests.exceptions.SSLError(message)
    if code == _TIMEOUT:
        # Sent (a write's whole-call limit) or still connecting.
        if watch.sends:
            return requests.exceptions.ReadTimeout(message)
        return requests.exceptions.ConnectTimeout(message)
    return requests.ConnectionError(message)
