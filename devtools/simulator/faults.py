"""Scripted faults: matching a request to a fault rule, answering in its place, or serving
the call and then misbehaving (foreign links, injected contacts, shifting pages, edits)."""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from devtools.simulator.config import API_PREFIX, READ_KINDS, FaultRule
from devtools.simulator.state import SimulatorState
from devtools.simulator.wire import (
    Request,
    Response,
    batch_size,
    empty_response,
    error_response,
    json_response,
    parse_batch,
)


class FaultRoutes(SimulatorState):
    """What the fault rules do to a call; ``Simulator._api`` asks before serving it."""

    def _match_fault(self, req: Request) -> FaultRule | None:
        for rule in self._faults:
            if rule.spent or rule.method not in ("*", req.method):
                continue
            if not rule.path.search(req.path) or not rule.applies(req):
                continue
            rule.matched += 1
            if rule.matched <= rule.after:
                continue
            if rule.probability < 1 and self._rng.random() >= rule.probability:
                continue
            rule.fired += 1
            self._stats["faults_fired"] += 1
            return rule
        return None

    def _fault_response(
        self, rule: FaultRule, fired: int, kind: str, params: dict[str, str], req: Request
    ) -> Response | None:
        action = rule.action
        if isinstance(action, int):
            retry_after = rule.retry_after if action == 429 else None
            return error_response(kind, action, retry_after)
        if action == "drop":
            return Response(0, drop=True)
        if action == "loop_cursor" and kind == "read":
            # Paging that loops: the page names itself as the next one.
            response = self._route_handler("read")(params, req)
            if response.status == 200:
                body = json.loads(response.body)
                query = urlencode(req.query, doseq=True)
                itself = f"http://{req.host}{req.path}" + (f"?{query}" if query else "")
                body["nextPageUri"] = itself
                return json_response(200, body)
            return response
        if action == "hang":
            time.sleep(rule.seconds)
            return None
        if action in ("edit_contact", "remove_contact"):
            self._person_edits(rule)
            return None
        if action == "fake_success":
            if kind == "delete":
                return empty_response(204)
            if kind == "patch":
                return json_response(200, {"updated": batch_size(req.body)})
            return None
        if action == "refuse_ids":
            try:
                batch_ids = {item.get("id") for item in parse_batch(req.body)}
            except ValueError:
                batch_ids = set()
            named = list(rule.ids) if rule.always else [i for i in rule.ids if i in batch_ids]
            return json_response(400, {"error": "invalid contacts (refused)", "invalid": named})
        if action == "redirect":
            # 307: a client that follows sends the same method and body over there.
            return Response(307, b"", {"Location": f"{rule.origin}{req.path}"})
        if action in ("foreign_link", "inject_contacts", "shift_page", "lose_answer"):
            return None  # served as usual, then changed by _after_fault
        if action == "missing_contacts":
            if kind.startswith("cxone") or kind in (
                "remove_prospects",
                "upload",
                "job",
                "jobs",
                "dnc",
                "dnc_search",
            ):
                return json_response(200, {"_links": {}})
            return json_response(200, {"nextPageUri": None})
        if action == "bad_json":
            # Reads show a real page cut short, as when a proxy truncates a response.
            if kind in READ_KINDS:
                whole = self._route_handler(kind)(params, req)
                body = whole.body or b"".join(whole.chunks or ())
            else:
                body = json.dumps({"contacts": [{"id": "x", "phone": "+1650"}]}).encode()
            cut = body[: max(1, len(body) // 2)]
            return Response(200, cut, {"Content-Type": "application/json"})
        return json_response(200, _wrong_types(kind, fired))

    def _person_edits(self, rule: FaultRule) -> None:
        """Someone changes (or deletes) a contact by hand, on whichever list holds it."""
        cid = rule.contact or ""
        with self._lock:
            for contact_list in self._lists.values():
                if cid in contact_list.contacts:
                    if rule.action == "remove_contact":
                        contact_list.remove(cid)
                    else:
                        contact_list.contacts[cid].update(copy.deepcopy(rule.fields))
                    return
            self._settle_jobs()
            for calling_list in self._call_lists.values():
                if cid in calling_list.records:
                    if rule.action == "remove_contact":
                        del calling_list.records[cid]
                    else:
                        calling_list.records[cid].update(copy.deepcopy(rule.fields))
                    return

    def _after_fault(
        self, rule: FaultRule, kind: str, params: dict[str, str], response: Response
    ) -> Response:
        """The actions that serve the call as usual and then misbehave."""
        if rule.action == "shift_page":
            self._shift(kind, params, response)
            return response
        if rule.action == "lose_answer":
            # The call took effect (an upload made its job) but its answer never arrives.
            return Response(0, drop=True)
        if rule.action not in ("foreign_link", "inject_contacts"):
            return response
        if response.chunks is not None:  # a CXone list answer, sent as encoded
            response = replace(response, body=b"".join(response.chunks), chunks=None)
        try:
            body = json.loads(response.body)
        except ValueError:
            return response
        if not isinstance(body, dict):
            return response
        if rule.action == "inject_contacts":
            injected = copy.deepcopy(rule.contacts)
            if kind == "read":
                body["contacts"] = injected + list(body.get("contacts") or [])
            elif kind == "cxone_read" and isinstance(body.get("resultSet"), dict):
                result = body["resultSet"]
                result["contactRecords"] = injected + list(result.get("contactRecords") or [])
        else:
            body = _foreign_links(kind, body, rule.origin or "")
        return json_response(
            200, body, {k: v for k, v in response.headers.items() if k != "Content-Type"}
        )

    def _shift(self, kind: str, params: dict[str, str], response: Response) -> None:
        with self._lock:
            if kind == "read":
                contact_list = self._lists.get(params.get("list", ""))
                served = json.loads(response.body).get("contacts") or []
                if contact_list is not None and served:
                    last = contact_list.contacts.get(served[-1].get("id"))
                    if last is not None:
                        contact_list.remove(last["id"])
                        contact_list.append(last)
            elif kind == "cxone_read":
                calling_list = self._call_lists.get(params.get("list", ""))
                if calling_list is not None and len(calling_list.records) > 1:
                    key, record = calling_list.records.popitem()
                    calling_list.records = {key: record, **calling_list.records}


def _foreign_links(kind: str, body: dict[str, Any], origin: str) -> dict[str, Any]:
    """``body`` with the link(s) it announces moved to ``origin`` (path and query kept)."""

    def moved(url: Any, fallback_path: str) -> str:
        parts = urlsplit(url) if isinstance(url, str) and url else None
        path = parts.path if parts is not None else fallback_path
        query = parts.query if parts is not None else "cursor=foreign"
        return f"{origin}{path}" + (f"?{query}" if query else "")

    if kind in ("read", "lists"):
        body["nextPageUri"] = moved(body.get("nextPageUri"), f"{API_PREFIX}/contactlists")
    elif kind == "oidc":
        body["token_endpoint"] = moved(body.get("token_endpoint"), "/auth/token")
    elif kind == "discovery":
        body["api_endpoint"] = origin
    elif isinstance(body.get("_links"), dict):
        body["_links"]["next"] = moved(body["_links"].get("next"), "/")
    return body


def _wrong_types(kind: str, fired: int) -> dict[str, Any]:
    # Alternate between the two shapes (string first) so times=2 exercises both.
    flip = fired % 2 == 1
    if kind == "read":
        if flip:
            return {"contacts": "contacts unavailable", "nextPageUri": None}
        return {"contacts": [{"id": {"value": 1}, "phone": 16502530000}], "nextPageUri": None}
    if kind == "lists":
        if flip:
            return {"contactLists": "none", "nextPageUri": None}
        return {"contactLists": [{"id": {"value": 1}, "name": 7}], "nextPageUri": None}
    if kind == "token":
        return {"access_token": 12345, "token_type": ["Bearer"], "expires_in": "soon"}
    if kind == "lookup":
        return {"phone_number": 16502530000, "valid": "yes", "line_type_intelligence": "mobile"}
    if kind == "cxone_token":
        return {"access_token": 12345, "expires_in": "soon", "refresh_token": ["x"]}
    if kind == "cxone_read":
        if flip:
            return {"resultSet": {"contactRecords": "none", "totalRecords": 3}}
        return {"resultSet": {"contactRecords": [{"ExternalId": {"v": 1}}], "totalRecords": "1"}}
    if kind == "cxone_lists":
        return {"callingLists": [{"listId": {"v": 1}}], "_links": {}}
    if kind == "remove_prospects":
        return {"successfulRecords": "all", "failedRecords": {"x": 1}}
    if kind == "upload":
        return {"jobId": ["1"]}
    if kind == "job":
        return {"uploadJobs": "done"}
    return {"updated": "all", "invalid": {"id": {"value": 1}}}
