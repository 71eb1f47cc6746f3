"""The CPU one API call costs a worker, by the path it takes through the HTTP stack.

    .venv/bin/python bench/http_call.py [--calls 3000] [--rounds 5]

A local HTTP/1.1 server (its own process, so it does not share our GIL) answers every
call at once with a small JSON body; this process sends DELETEs through

- ``direct``: ``Transport.send`` as shipped (``ResolvedSession._send_direct``: over
  libcurl, ``cxsweep/platforms/http_curl.py``);
- ``urllib3``: ``Transport.send`` with libcurl off (the direct path to the adapter's
  urllib3 pool, as the transport sent calls before session 6);
- ``prepared``: ``Transport.send`` with the direct path off (the adapter's ``send``);
- ``requests``: ``requests.Session.request``, as the original loop (bench/_baseline.py)
  sends them.

Rounds alternate the four, and each figure is the median over rounds of the process's
CPU seconds per call (``time.process_time``): compare ratios, not absolute figures, on a
shared machine. Target: the direct path at most 0.75x the CPU of ``Session.request``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cxsweep.platforms import http, http_curl, http_session  # noqa: E402
from cxsweep.settings import load_settings  # noqa: E402

SERVER = textwrap.dedent(
    """
    import sys
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            size = int(self.headers.get("Content-Length") or 0)
            if size:
                self.rfile.read(size)
            body = b'{"ok": true}'
            # One write: headers and body in one segment (no delayed-ACK stall).
            self.wfile.write(
                b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
                b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body)
            )

        do_GET = do_DELETE = do_PATCH = do_POST = answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


def cpu_per_call(send: Callable[[int], Any], calls: int) -> float:
    for i in range(100):  # connections open, caches warm
        send(i)
    started = time.process_time()
    for i in range(calls):
        send(i)
    return (time.process_time() - started) / calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{server.stdout.readline().strip()}/lists/L1/contacts/c"
        settings = load_settings({"CXSWEEP_ENV_FILE": "/dev/null"})
        transport = http.Transport(settings, session=http_session.ResolvedSession(4))
        plain = requests.Session()
        headers = {"Accept": "application/json", "Authorization": "Bearer bench"}

        def direct(i: int) -> None:
            answer = transport.send("write", "DELETE", "DELETE", f"{base}{i}", token="bench")
            assert answer.status_code == 200

        def over_urllib3(i: int) -> None:
            real = http_curl.available
            http_curl.available = lambda: False
            try:
                direct(i)
            finally:
                http_curl.available = real

        def prepared(i: int) -> None:
            real = http_session._direct_ok
            http_session._direct_ok = lambda url, kwargs: False
            try:
                direct(i)
            finally:
                http_session._direct_ok = real

        def original(i: int) -> None:
            answer = plain.request("DELETE", f"{base}{i}", headers=headers, timeout=60)
            assert answer.status_code == 200 and answer.content

        paths = {
            "direct": direct,
            "urllib3": over_urllib3,
            "prepared": prepared,
            "requests": original,
        }
        figures: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(args.rounds):
            for name, send in paths.items():
                figures[name].append(cpu_per_call(send, args.calls))
    finally:
        server.kill()

    medians = {name: statistics.median(values) for name, values in figures.items()}
    print(f"CPU per DELETE, median of {args.rounds} rounds of {args.calls:,} calls:")
    for name, value in medians.items():
        spread = ", ".join(f"{v * 1e6:.0f}" for v in figures[name])
        ratio = value / medians["requests"]
        print(f"  {name:9s} {value * 1e6:6.0f} us  ({ratio:.2f}x requests; rounds: {spread})")
    ratio = medians["direct"] / medians["requests"]
    verdict = "PASS" if ratio <= 0.75 else "FAIL"
    print(f"{verdict}  direct path CPU {ratio:.2f}x Session.request's <= 0.75x")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
