"""The Simulator: the route mixins composed over one state, the v2/CXone/look-up route
table, and the dispatch every API call goes through (rate limit, faults, statistics)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any
from urllib.parse import unquote

from devtools.simulator.config import API_PREFIX, AUTH_KINDS, SimConfig
from devtools.simulator.control import ControlRoutes
from devtools.simulator.cxone import CxoneRoutes
from devtools.simulator.faults import FaultRoutes
from devtools.simulator.lookup import LookupRoutes
from devtools.simulator.state import AnswerHook
from devtools.simulator.v2 import V2Routes
from devtools.simulator.wire import (
    Request,
    Response,
    Server,
    batch_size,
    error_response,
    json_response,
)

# The CXone Admin API base path; NICE's own examples spell its case both ways.
_CX = r"(?i:/inContactAPI/services/v\d+\.\d+)"
ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/oauth/token/?$"), "token"),
    ("GET", re.compile(rf"^{API_PREFIX}/contactlists/?$"), "lists"),
    ("GET", re.compile(rf"^{API_PREFIX}/contactlists/(?P<list>[^/]+)/?$"), "read"),
    ("PATCH", re.compile(rf"^{API_PREFIX}/contactlists/(?P<list>[^/]+)/contacts/?$"), "patch"),
    ("POST", re.compile(rf"^{API_PREFIX}/contactlists/(?P<list>[^/]+)/contacts/?$"), "create"),
    ("DELETE", re.compile(rf"^{API_PREFIX}/contacts/(?P<contact>[^/]+)/?$"), "delete"),
    ("GET", re.compile(r"^/v2/PhoneNumbers/(?P<number>[^/]+)/?$"), "lookup"),
    ("GET", re.compile(r"^/\.well-known/openid-configuration/?$"), "oidc"),
    ("GET", re.compile(r"^/\.well-known/cxone-configuration/?$"), "discovery"),
    ("POST", re.compile(r"^/auth/token/?$"), "cxone_token"),
    ("POST", re.compile(r"^/authentication/v1/token/access-key/?$"), "access_key"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/?$"), "cxone_lists"),
    # Before the list route: "jobs" is not a list id.
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/jobs/?$"), "jobs"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/jobs/(?P<job>[^/]+)/?$"), "job"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/(?P<list>[^/]+)/?$"), "cxone_read"),
    ("POST", re.compile(rf"^{_CX}/lists/call-lists/(?P<list>[^/]+)/upload/?$"), "upload"),
    (
        "DELETE",
        re.compile(rf"^{_CX}/lists/call-lists/(?P<name>[^/]+)/removeProspects/?$"),
        "remove_prospects",
    ),
    ("POST", re.compile(rf"^{_CX}/dnc-groups/search/?$"), "dnc_search"),
    ("POST", re.compile(rf"^{_CX}/dnc-groups/(?P<group>[^/]+)/records/?$"), "dnc"),
    ("GET", re.compile(rf"^{_CX}/dnc-groups/(?P<group>[^/]+)/scrubbed-skills/?$"), "scrubbed"),
    ("GET", re.compile(rf"^{_CX}/skills/(?P<skill>\d+)/?$"), "skill"),
)


# --- configuration ------------------------------------------------------------------------


class Simulator(V2Routes, CxoneRoutes, LookupRoutes, FaultRoutes, ControlRoutes):
    """The v2 contact-list API, the CXone Admin API and a Twilio Lookup fake, over HTTP.

    ``Simulator().start()`` serves in a daemon thread on an ephemeral port; ``.url`` says
    where. All state sits behind one lock, never held while sleeping.
    """

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        super().__init__(config)
        self._server = Server((host, port), self._handle)
        self._thread: threading.Thread | None = None
        self._serving = False

    # -- lifecycle

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Simulator:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name=f"cxsweep-simulator:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve on the calling thread until ``stop()`` (from another thread) or Ctrl-C."""
        self._serving = True
        try:
            self._server.serve_forever(poll_interval=0.25)
        finally:
            self._serving = False

    def stop(self) -> None:
        if self._thread is not None or self._serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def on_answer(self, hook: AnswerHook) -> None:
        """Call ``hook(kind, params, request, response)`` each time a route serves a call
        itself (not when a fault rule, the rate limit or ``fail_rate`` answers instead),
        before the answer is sent. Kept across ``reset()``; runs outside the lock."""
        with self._lock:
            self._answer_hooks.append(hook)

    # -- internals: dispatch

    def _handle(self, req: Request) -> Response:
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            try:
                return self._control(req)
            except (ValueError, TypeError) as exc:
                return json_response(400, {"error": str(exc)})
        seen: dict[str, Any] = {
            "method": req.method,
            "path": req.path,
            "host": req.host,
            "authorization": "Authorization" in req.headers,
            "status": None,
        }
        with self._lock:
            self._seen.append(seen)
        answer = self._answer(req)
        with self._lock:
            seen["status"] = 0 if answer.drop else answer.status
        return answer

    def _answer(self, req: Request) -> Response:
        route = self._route(req.method, req.path)
        if route is None:
            with self._lock:
                self._count_status(404)
            return json_response(404, {"error": "not_found"})
        kind, params, allowed = route
        if kind is None:
            with self._lock:
                self._count_status(405)
            return json_response(
                405, {"error": "method_not_allowed"}, {"Allow": ", ".join(allowed)}
            )
        with self._lock:
            self._stats["requests"][kind] += 1
            self._in_flight += 1
            if self._in_flight > self._stats["in_flight_max"]:
                self._stats["in_flight_max"] = self._in_flight
            if kind == "patch":
                size = batch_size(req.body)
                if size > self._stats["max_patch_batch"]:
                    self._stats["max_patch_batch"] = size
        response: Response | None = None
        try:
            response = self._api(kind, params, req)
            return response
        finally:
            with self._lock:
                self._in_flight -= 1
                if response is not None and not response.drop:
                    self._count_status(response.status)

    def _count_status(self, status: int) -> None:
        statuses = self._stats["statuses"]
        statuses[str(status)] = statuses.get(str(status), 0) + 1

    @staticmethod
    def _route(method: str, path: str) -> tuple[str | None, dict[str, str], list[str]] | None:
        allowed: list[str] = []
        for route_method, pattern, kind in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method == method:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                return kind, params, [route_method]
            allowed.append(route_method)
        return (None, {}, allowed) if allowed else None

    def _api(self, kind: str, params: dict[str, str], req: Request) -> Response:
        cfg = self._config
        if cfg.latency_ms > 0:
            time.sleep(cfg.latency_ms / 1000.0)
        with self._lock:
            cfg = self._config
            wait = self._take_rate_token(cfg)
            rule = None if wait is not None else self._match_fault(req)
            fail = (
                wait is None
                and rule is None
                and kind not in AUTH_KINDS
                and cfg.fail_rate > 0
                and self._rng.random() < cfg.fail_rate
            )
            fired = rule.fired if rule is not None else 0
        if wait is not None:
            return error_response(kind, 429, str(wait))
        if rule is not None:
            faulted = self._fault_response(rule, fired, kind, params, req)
            if faulted is not None:
                return faulted
        if fail:
            return error_response(kind, 503)
        response = self._route_handler(kind)(params, req)
        with self._lock:
            hooks = list(self._answer_hooks)
        for hook in hooks:
            hook(kind, params, req, response)
        if rule is not None and response.status == 200:
            response = self._after_fault(rule, kind, params, response)
        return response
