"""The control API under ``/_sim/``: a route table of (method, path) to the endpoint, each
endpoint a thin layer over the in-process methods of the same name on ``Simulator``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from devtools.simulator.state import SimulatorState
from devtools.simulator.wire import Request, Response, empty_response, json_response

#: an endpoint: (simulator, request, JSON body, the path's item or "") -> response
Endpoint = Callable[["ControlRoutes", Request, dict[str, Any], str], Response]


class ControlRoutes(SimulatorState):
    """``/_sim/*``: seed lists, reconfigure, script faults, read statistics and webhooks."""

    def _control(self, req: Request) -> Response:
        parts = [unquote(p) for p in req.path.split("/")[2:] if p]
        # ``/_sim/lists/{id}`` is looked up as ``lists/*``, its id handed to the endpoint.
        pattern = parts[0] + ("/*" if len(parts) == 2 else "") if 1 <= len(parts) <= 2 else ""
        item = parts[1] if len(parts) == 2 else ""
        # A webhook's body is kept as sent, whatever it is; every other body is an object.
        body = {} if parts == ["webhook"] else _parse_json_object(req.body)
        endpoint = CONTROL_ROUTES.get((req.method, pattern))
        if endpoint is None:
            return json_response(404, {"error": "no such control endpoint"})
        return endpoint(self, req, body, item)

    def _reset_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        lists = body.pop("lists", None) or {}
        if not isinstance(lists, dict):
            raise ValueError("lists must map list ids to specs")
        self.reset(lists, **body)
        with self._lock:
            sizes = {lid: len(cl.contacts) for lid, cl in self._lists.items()}
        return json_response(200, {"config": self._config.to_json(), "lists": sizes})

    def _lists_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        with self._lock:
            summary = [
                {"id": cl.list_id, "name": cl.name, "count": len(cl.contacts)}
                for cl in sorted(self._lists.values(), key=lambda c: c.rank)
            ]
        return json_response(200, {"lists": summary})

    def _put_list_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        built = self._build_list(item, body)
        with self._lock:
            size = len(self._install_list(built).contacts)
        return json_response(200, {"id": item, "count": size})

    def _get_list_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        with self._lock:
            contact_list = self._lists.get(item)
            if contact_list is None:
                return json_response(404, {"error": "not_found"})
            # Shallow copies under the lock (PATCH mutates the live dicts); the slow
            # part, serialising, happens after it is released.
            payload = {
                "id": item,
                "name": contact_list.name,
                "contacts": [dict(c) for c in contact_list.contacts.values()],
            }
        return json_response(200, payload)

    def _delete_list_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return empty_response(204) if self.delete_list(item) else json_response(404, {})

    def _configure_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, self.configure(**body).to_json())

    def _config_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, self._config.to_json())

    def _add_faults_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        rules = body.get("rules")
        if not isinstance(rules, list):
            raise ValueError("expected {'rules': [...]}")
        self.add_faults(rules)
        return json_response(200, {"rules": self.faults()})

    def _clear_faults_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        self.clear_faults()
        return empty_response(204)

    def _faults_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, {"rules": self.faults()})

    def _webhook_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        try:
            parsed: Any = json.loads(req.body)
        except ValueError:
            parsed = None
        hook = {
            "body": parsed,
            "raw": req.body,
            "headers": dict(req.headers.items()),
            "received_at": time.time(),
        }
        with self._lock:
            self._webhooks.append(hook)
            received = len(self._webhooks)
        return json_response(200, {"received": received})

    def _webhooks_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        hooks = [
            {**hook, "raw": hook["raw"].decode("utf-8", "replace")} for hook in self.webhooks()
        ]
        return json_response(200, {"webhooks": hooks})

    def _put_call_list_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        size = self.put_call_list(
            item,
            body.get("records"),
            count=body.get("count"),
            seed=int(body.get("seed", 0)),
            name=body.get("name"),
        )
        return json_response(200, {"id": item, "count": size})

    def _get_call_list_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        try:
            return json_response(200, {"id": item, "records": self.get_call_list(item)})
        except KeyError:
            return json_response(404, {"error": "not_found"})

    def _fail_records_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        self.fail_records(remove=body.get("remove"), upload=body.get("upload"))
        return empty_response(204)

    def _add_dnc_group_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        self.add_dnc_group(item)
        return empty_response(204)

    def _dnc_numbers_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, {"numbers": self.dnc_numbers(item)})

    def _revoke_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, {"revoked": self.revoke_tokens()})

    def _stats_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, self.stats())

    def _requests_endpoint(self, req: Request, body: dict[str, Any], item: str) -> Response:
        return json_response(200, {"requests": self.requests_seen()})


# (method, path under /_sim/ with ``*`` for one item) -> endpoint; anything else is a 404.
CONTROL_ROUTES: dict[tuple[str, str], Endpoint] = {
    ("POST", "reset"): ControlRoutes._reset_endpoint,
    ("GET", "lists"): ControlRoutes._lists_endpoint,
    ("PUT", "lists/*"): ControlRoutes._put_list_endpoint,
    ("GET", "lists/*"): ControlRoutes._get_list_endpoint,
    ("DELETE", "lists/*"): ControlRoutes._delete_list_endpoint,
    ("POST", "config"): ControlRoutes._configure_endpoint,
    ("GET", "config"): ControlRoutes._config_endpoint,
    ("POST", "faults"): ControlRoutes._add_faults_endpoint,
    ("DELETE", "faults"): ControlRoutes._clear_faults_endpoint,
    ("GET", "faults"): ControlRoutes._faults_endpoint,
    ("POST", "webhook"): ControlRoutes._webhook_endpoint,
    ("GET", "webhooks"): ControlRoutes._webhooks_endpoint,
    ("PUT", "call-lists/*"): ControlRoutes._put_call_list_endpoint,
    ("GET", "call-lists/*"): ControlRoutes._get_call_list_endpoint,
    ("POST", "record-failures"): ControlRoutes._fail_records_endpoint,
    ("PUT", "dnc-groups/*"): ControlRoutes._add_dnc_group_endpoint,
    ("GET", "dnc-groups/*"): ControlRoutes._dnc_numbers_endpoint,
    ("POST", "revoke"): ControlRoutes._revoke_endpoint,
    ("GET", "stats"): ControlRoutes._stats_endpoint,
    ("GET", "requests"): ControlRoutes._requests_endpoint,
}


def _parse_json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError("body must be a JSON object")
    return value
