"""The shared HTTP transport against real servers: TLS verification and its one exception,
the operator's proxy and CA bundle read once per session."""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from requests import sessions as requests_sessions

from console import cli
from cxsweep.errors import (
    ApiError,
    MalformedResponse,
    RetryableApiError,
    SettingsError,
    TlsRefused,
)
from cxsweep.platforms import http_curl
from cxsweep.platforms.http import (
    Transport,
    bearer_token_problem,
    parse_json,
    raise_for_status,
)
from cxsweep.platforms.http_session import ResolvedSession
from cxsweep.runs import webhook
from cxsweep.settings import Secret, get_settings, load_settings


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://localhost:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_unless_the_host_is_named(self_signed_server: str) -> None:
    verified = Transport(load_settings({"CXSWEEP_ENV_FILE": "/dev/null"}))
    # Not transient: a retry would meet the same certificate, so the step fails at once.
    with pytest.raises(TlsRefused, match=r"TLS certificate of https://localhost:\d+ did not"):
        verified.send("read", "GET /", "GET", self_signed_server)
    assert not issubclass(TlsRefused, RetryableApiError)

    trusting = Transport(
        load_settings({"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_TLS_INSECURE_HOSTS": "localhost"})
    )
    assert trusting.send("read", "GET /", "GET", self_signed_server).status_code == 200

    other = Transport(
        load_settings(
            {"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_TLS_INSECURE_HOSTS": "lab.example"}
        )
    )
    with pytest.raises(TlsRefused):
        other.send("read", "GET /", "GET", self_signed_server)


@pytest.mark.parametrize(
    "entry", ["localhost:8443", "https://lab.example", "lab.example/api", "*.lab.example", "*"]
)
def test_insecure_hosts_must_be_bare_host_names(entry: str) -> None:
    with pytest.raises(SettingsError, match=r"^CXSWEEP_TLS_INSECURE_HOSTS: .* bare host name"):
        load_settings({"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_TLS_INSECURE_HOSTS": entry})


def test_insecure_hosts_take_names_and_addresses() -> None:
    hosts = "Lab.Example, 10.0.0.5 ,[::1],,localhost"
    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_TLS_INSECURE_HOSTS": hosts})
    assert settings.tls_insecure_hosts == {"lab.example", "10.0.0.5", "::1", "localhost"}


def test_a_run_against_a_bad_certificate_stops_at_once_with_one_line(
    self_signed_server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CXSWEEP_API_URL", self_signed_server.rstrip("/"))
    monkeypatch.delenv("CXSWEEP_TOKEN_URL", raising=False)
    started = time.monotonic()
    try:
        code = cli.main(["run", "any-list"])
    finally:
        get_settings.cache_clear()
    assert code == cli.EXIT_RUN_FAILED
    assert time.monotonic() - started < 5  # no retries, no backoff
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "POST /oauth/token: the TLS certificate of https://localhost:" in err


def test_a_webhook_receiver_with_a_bad_certificate_is_refused(self_signed_server: str) -> None:
    with pytest.raises(webhook.WebhookRefused, match="certificate did not verify"):
        webhook.post(self_signed_server, {"run_id": "r"}, Secret("k"))


class _DeepHandler(http.server.BaseHTTPRequestHandler):
    """Answers 400 KB of ``[[[...]]]``: valid JSON, nested deeper than Python decodes."""

    def do_GET(self) -> None:
        depth = 200_000
        body = b"[" * depth + b"]" * depth
        self.send_response(200 if self.path == "/ok" else 400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_deeply_nested_json_is_a_malformed_response() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DeepHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        transport = Transport(load_settings({"CXSWEEP_ENV_FILE": "/dev/null"}))
        response = transport.send("read", "GET /ok", "GET", f"{base}/ok")
        assert len(response.content) == 400_000
        with pytest.raises(MalformedResponse, match="nests too deep"):
            parse_json("GET /ok", response)
        # An error answer's body is read for its message too: a plain ApiError, no crash.
        refused = transport.send("read", "GET /refused", "GET", f"{base}/refused")
        with pytest.raises(ApiError, match="400"):
            raise_for_status("GET /refused", refused)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def localhost_tls(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https server for localhost and the certificate (its own CA) that verifies it."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    new_cert = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subject = ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
    subprocess.run(
        [*new_cert, *subject, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}/", cert
    server.shutdown()
    server.server_close()


class _TunnelProxy(socketserver.ThreadingTCPServer):
    """An HTTP proxy that only tunnels (CONNECT), remembering each target."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TunnelHandler)
        self.targets: list[str] = []


class _TunnelHandler(socketserver.StreamRequestHandler):
    server: _TunnelProxy

    def handle(self) -> None:
        request_line = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        method, target, _ = request_line.split(" ", 2)
        self.server.targets.append(f"{method} {target}")
        host, port = target.rsplit(":", 1)
        address = "127.0.0.1" if host == "localhost" else host
        upstream = socket.create_connection((address, int(port)))
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()

        def pump(source: socket.socket, sink: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(upstream, self.connection), daemon=True)
        back.start()
        pump(self.connection, upstream)
        back.join(timeout=10)
        upstream.close()


@pytest.fixture
def tunnel_proxy() -> Iterator[_TunnelProxy]:
    proxy = _TunnelProxy()
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def test_the_session_keeps_https_proxy_and_ca_bundle_read_once(
    localhost_tls: tuple[str, Path],
    tunnel_proxy: _TunnelProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, cert = localhost_tls
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{tunnel_proxy.server_address[1]}")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null"})
    transport = Transport(settings, session=ResolvedSession(2))
    # Read at the session's creation: what an operator exports before starting workers.
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")

    # No per-call look-up of the environment (netrc, proxy variables, CA variables).
    looked_up: list[str] = []
    monkeypatch.setattr(requests_sessions, "get_netrc_auth", lambda *a: looked_up.append("netrc"))
    monkeypatch.setattr(
        requests_sessions, "get_environ_proxies", lambda *a, **k: looked_up.append("proxies")
    )
    for _ in range(3):
        # Verified against the operator's bundle, through the operator's proxy.
        assert transport.send("read", "GET /", "GET", url).status_code == 200
    assert tunnel_proxy.targets[0] == f"CONNECT localhost:{url.rsplit(':', 1)[1].rstrip('/')}"
    assert looked_up == []

    # Without the bundle, the same certificate does not verify (certifi's bundle).
    with pytest.raises(TlsRefused):
        Transport(settings, session=ResolvedSession(2)).send("read", "GET /", "GET", url)


def test_no_proxy_sends_an_origin_direct(
    localhost_tls: tuple[str, Path], tunnel_proxy: _TunnelProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, cert = localhost_tls
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{tunnel_proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    session = ResolvedSession(2)
    transport = Transport(load_settings({"CXSWEEP_ENV_FILE": "/dev/null"}), session=session)
    assert transport.send("read", "GET /", "GET", url).status_code == 200
    assert tunnel_proxy.targets == []
    assert session.proxies_for("https://api.example:8443/x") == {
        "https": f"http://127.0.0.1:{tunnel_proxy.server_address[1]}"
    }


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers 200 and keeps each request's line, headers and body, as they arrived."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def _record(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else b""
        self.seen.append((self.requestline, dict(self.headers.items()), body))
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_DELETE = do_PATCH = do_POST = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_direct_path_sends_what_requests_would_send(
    recorder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our plain calls skip requests' preparation (``ResolvedSession._send_direct``); the
    server must not be able to tell: same request line, headers and body as requests'
    own path sends for the same call. Calls it cannot send as they are (a URL requests
    re-quotes) still take requests' path, and arrive the same."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null"})
    session = ResolvedSession(2)
    transport = Transport(settings, session=session)
    calls: list[tuple[str, str, dict[str, object]]] = [
        ("GET", f"{recorder}/lists/L1/contacts?cursor=a%3D%3D&top=500", {}),
        ("GET", f"{recorder}/lists/L1/contacts", {"params": {"top": 500, "q": "a b&c"}}),
        ("DELETE", f"{recorder}/lists/L1/contacts/c-1", {}),
        ("PATCH", f"{recorder}/lists/L1/contacts", {"json_body": {"contacts": [{"id": "é"}]}}),
        ("POST", f"{recorder}/dnc", {"json_body": [1, 2.5, None]}),
    ]
    prepared: list[str] = []
    real_prepared = ResolvedSession._send_prepared

    def spy(self: ResolvedSession, method: str, url: str, **kwargs: object) -> object:
        prepared.append(url)
        return real_prepared(self, method, url, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ResolvedSession, "_send_prepared", spy)
    over_curl: list[str] = []
    real_curl = http_curl.send

    def curl_spy(method: str, url: str, *args: object, **kwargs: object) -> object:
        over_curl.append(url)
        return real_curl(method, url, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(http_curl, "send", curl_spy)
    for method, url, extra in calls:
        assert transport.send("write", method, method, url, token="t", **extra).ok  # type: ignore[arg-type]
    assert prepared == []  # every one of them went the direct way
    # ... over libcurl where it is installed (it is a dependency: everywhere we ship).
    assert len(over_curl) == (len(calls) if http_curl.available() else 0)
    sent = transport.send("read", "GET", "GET", f"{recorder}/x?a=1", params={"b": "2 3"})
    assert sent.url == f"{recorder}/x?a=1&b=2+3"  # the URL asked, as requests names it
    _Recorder.seen.pop()
    direct = list(_Recorder.seen)
    _Recorder.seen.clear()

    # The same calls through requests' own Session.request, on a session with the
    # same defaults: what requests would have put on the wire.
    plain = requests_sessions.Session()
    plain.trust_env = False
    for method, url, extra in calls:
        headers = {"Accept": "application/json", "Authorization": "Bearer t"}
        plain.request(
            method,
            url,
            headers=headers,
            params=extra.get("params"),  # type: ignore[arg-type]
            json=extra.get("json_body"),
            allow_redirects=False,
            timeout=(5, 5),
        ).close()
    assert direct == _Recorder.seen
    _Recorder.seen.clear()

    # URLs requests would re-quote are prepared by requests, and arrive as they would.
    for odd, line in [
        (f"{recorder}/lists/L 1/contacts/ü", "/lists/L%201/contacts/%C3%BC"),
        (f"{recorder}/lists/L1/contacts/50%off", "/lists/L1/contacts/50%25off"),
    ]:
        _Recorder.seen.clear()
        assert transport.send("write", "DELETE", "DELETE", odd, token="t").ok
        assert prepared[-1] == odd
        assert _Recorder.seen[0][0] == f"DELETE {line} HTTP/1.1"


class _Misbehaving(http.server.BaseHTTPRequestHandler):
    """``/endless``: a chunked answer that never ends; ``/stall``: headers, then nothing."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if self.path == "/endless":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"[" * 65536
            with contextlib.suppress(OSError):
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        else:
            # Some of the answer (libcurl's own low-speed check averages over seconds:
            # after data moved it would notice the stall late), then nothing.
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            self.wfile.write(b"[" * 40_000)
            self.wfile.flush()
            time.sleep(30)

    def do_PATCH(self) -> None:
        """An answer that keeps coming, a byte at a time, well past the read time-out."""
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(100):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.3)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def misbehaving() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Misbehaving)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_an_endless_answer_stops_at_the_cap(misbehaving: str) -> None:
    """The answer is read where it is received (libcurl), at most the cap and a byte:
    an answer that never ends fails the call at once instead of filling the worker."""
    settings = load_settings(
        {"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_MAX_RESPONSE_BYTES": "200000"}
    )
    transport = Transport(settings, session=ResolvedSession(2))
    raised: list[BaseException] = []

    def call() -> None:
        try:
            transport.send("read", "GET /endless", "GET", f"{misbehaving}/endless")
        except BaseException as exc:  # looked at below
            raised.append(exc)

    # In a thread: without the cap the call would read for ever, and this test would hang.
    reader = threading.Thread(target=call, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "the endless answer was still being read after 10 s"
    assert len(raised) == 1 and isinstance(raised[0], MalformedResponse)
    assert "exceeds the 200000 byte cap" in str(raised[0])


def test_an_answer_that_stalls_times_out(misbehaving: str) -> None:
    """A read time-out is a stall that long (libcurl counts whole seconds), retryable."""
    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_READ_TIMEOUT": "1"})
    transport = Transport(settings, session=ResolvedSession(2))
    started = time.monotonic()
    with pytest.raises(RetryableApiError, match="timed out"):
        transport.send("read", "GET /stall", "GET", f"{misbehaving}/stall")
    assert time.monotonic() - started < 3.5


class _DropsWrites(http.server.BaseHTTPRequestHandler):
    """Answers GETs (keep-alive); reads a DELETE whole, counts it, and closes the
    connection without an answer: the server had it, the client never hears."""

    protocol_version = "HTTP/1.1"
    deletes = 0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_DELETE(self) -> None:
        type(self).deletes += 1
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_write_is_sent_once_when_its_answer_is_lost() -> None:
    """libcurl would send the DELETE again on a new connection by itself (the kept one
    broke before an answer): a second write behind one permit. It is sent once, and the
    call fails as urllib3's does; a retry is the task's, with a new permit."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _DropsWrites)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        transport = Transport(
            load_settings({"CXSWEEP_ENV_FILE": "/dev/null"}), session=ResolvedSession(2)
        )
        for _ in range(3):  # a kept connection, as between a task's calls
            assert transport.send("read", "GET /", "GET", f"{base}/").ok
        with pytest.raises(RetryableApiError, match="connection failed"):
            transport.send("write", "DELETE /c/1", "DELETE", f"{base}/c/1", token="t")
        assert _DropsWrites.deletes == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_header_with_a_line_break_is_not_sent(recorder: str) -> None:
    """A token is the platform's: one holding a line break would add headers, or a whole
    second request, to ours. Refused before anything is sent, without showing it."""
    _Recorder.seen.clear()
    transport = Transport(
        load_settings({"CXSWEEP_ENV_FILE": "/dev/null"}), session=ResolvedSession(2)
    )
    smuggled = "abc\r\nContent-Length: 0\r\n\r\nDELETE /c/victim HTTP/1.1\r\nX: y"
    with pytest.raises(RetryableApiError) as refused:
        transport.send("read", "GET /lists", "GET", f"{recorder}/lists", token=smuggled)
    assert "victim" not in str(refused.value) and "abc" not in str(refused.value)
    assert _Recorder.seen == []


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_~+/==", None),
        ("abc\r\nX-Evil: 1", "characters a bearer token may not"),
        ("abc def", "characters a bearer token may not"),
        ("", "no access_token"),
        (12345, "no access_token"),
    ],
)
def test_a_granted_token_must_be_a_bearer_token(token: object, problem: str | None) -> None:
    found = bearer_token_problem(token)
    assert (found is None) if problem is None else (problem in str(found))


class _TimeUp(Exception):
    pass


def test_a_time_limit_met_during_a_call_is_raised_not_retried(misbehaving: str) -> None:
    """Celery's soft time limit is an exception raised by a signal handler wherever the
    task is: met inside a call (in libcurl's callbacks) it must come out as itself, not
    as a connection error the task would retry."""
    import signal

    def time_up(*_: object) -> None:
        raise _TimeUp

    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null", "CXSWEEP_READ_TIMEOUT": "20"})
    transport = Transport(settings, session=ResolvedSession(2))
    previous = signal.signal(signal.SIGALRM, time_up)
    started = time.monotonic()
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(_TimeUp):
            transport.send("read", "GET /stall", "GET", f"{misbehaving}/stall")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 5


def test_a_write_is_over_within_connect_and_read_time(misbehaving: str) -> None:
    """The watchdog fences a run's writes on connect + read + 1 s (tasks/record.py): a
    write whose answer trickles in forever is cut at connect + read, not let run."""
    if not http_curl.available():
        pytest.skip("urllib3's read time-out is per read: a trickle is not cut there")
    settings = load_settings(
        {
            "CXSWEEP_ENV_FILE": "/dev/null",
            "CXSWEEP_CONNECT_TIMEOUT": "1",
            "CXSWEEP_READ_TIMEOUT": "1",
        }
    )
    transport = Transport(settings, session=ResolvedSession(2))
    started = time.monotonic()
    with pytest.raises(RetryableApiError, match="timed out"):
        transport.send(
            "write", "PATCH /c", "PATCH", f"{misbehaving}/c", token="t", json_body={"a": 1}
        )
    assert time.monotonic() - started < 2.9


def test_an_interim_answer_is_never_a_success() -> None:
    """103 Early Hints then 500: urllib3 hands over the 103 as the answer. A DELETE must
    not count as done on it; over libcurl the 500 comes through. Either way, retryable."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
                    )

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/v2/campaigns/contacts/c-1"
    settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null"})
    try:
        for session in (requests_sessions.Session(), ResolvedSession(2)):  # urllib3, libcurl
            transport = Transport(settings, session=session)
            answer = transport.send("delete", "DELETE /c-1", "DELETE", url, token="t")
            with pytest.raises(RetryableApiError):
                raise_for_status("DELETE /c-1", answer)
    finally:
        listener.close()
