"""The v2 contract's routes (docs/cxone-api.md section 1): client-credentials token,
the list of lists, cursor-paged reads, PATCH of phones, create and DELETE of contacts."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from devtools.simulator.config import E164_RE, MAX_BATCH
from devtools.simulator.state import SimulatorState
from devtools.simulator.store import decode_cursor, encode_cursor
from devtools.simulator.wire import (
    Request,
    Response,
    empty_response,
    error_response,
    invalid_client,
    json_response,
    parse_batch,
)


class V2Routes(SimulatorState):
    """The v2 campaign contact-list API."""

    def _api_token(self, params: dict[str, str], req: Request) -> Response:
        form = parse_qs(req.body.decode("utf-8", "replace"))
        client_id = (form.get("client_id") or [""])[0]
        secret = (form.get("client_secret") or [""])[0]
        header = req.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
                client_id, _, secret = decoded.partition(":")
                client_id, secret = unquote(client_id), unquote(secret)
            except (binascii.Error, UnicodeDecodeError):
                return invalid_client()
        if (form.get("grant_type") or [""])[0] != "client_credentials":
            return json_response(400, {"error": "unsupported_grant_type"})
        with self._lock:
            cfg = self._config
            expected = cfg.clients.get(client_id)
            if expected is None or not secrets.compare_digest(expected, secret):
                return invalid_client()
            token = self._grant(cfg)
            self._stats["token_grants"] += 1
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
        }
        if form.get("scope"):
            payload["scope"] = form["scope"][0]
        return json_response(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _next_uri(self, req: Request, payload: Mapping[str, Any]) -> str:
        return f"http://{req.host}{req.path}?cursor={quote(encode_cursor(payload))}"

    def _cursor(self, req: Request, kind: str, list_id: str | None = None) -> dict[str, Any]:
        raw = (req.query.get("cursor") or [""])[0]
        if not raw:
            return {}
        cursor = decode_cursor(raw)
        if cursor.get("k") != kind or cursor.get("l") != list_id:
            raise ValueError("invalid cursor")
        if not isinstance(cursor.get("p"), int) or cursor["p"] < 0:
            raise ValueError("invalid cursor")
        return cursor

    def _api_read(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("read", 401)
        list_id = params["list"]
        try:
            cursor = self._cursor(req, "read", list_id)
        except ValueError:
            return json_response(400, {"error": "invalid_cursor"})
        with self._lock:
            cfg = self._config
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return json_response(404, {"error": "not_found"})
            if cursor and cursor.get("g") != contact_list.generation:
                # The list was replaced under the cursor: its positions mean nothing now.
                return json_response(400, {"error": "stale_cursor"})
            page, next_pos = contact_list.page(cursor.get("p", 0), cfg.page_size)
            total = len(contact_list.contacts)
            generation = contact_list.generation
        payload: dict[str, Any] = {"contacts": page}
        if next_pos is not None:
            payload["nextPageUri"] = self._next_uri(
                req, {"k": "read", "l": list_id, "g": generation, "p": next_pos}
            )
        else:
            payload["nextPageUri"] = None
        if cfg.total_records:
            payload["totalRecords"] = total
        return json_response(200, payload)

    def _api_lists(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("lists", 401)
        try:
            cursor = self._cursor(req, "lists")
        except ValueError:
            return json_response(400, {"error": "invalid_cursor"})
        start = cursor.get("p", 0)
        with self._lock:
            cfg = self._config
            ordered = sorted(
                (cl for cl in self._lists.values() if cl.rank >= start), key=lambda c: c.rank
            )
            total = len(self._lists)
        page = ordered[: cfg.page_size]
        payload: dict[str, Any] = {
            "contactLists": [{"id": cl.list_id, "name": cl.name} for cl in page],
            "nextPageUri": None,
        }
        if len(ordered) > cfg.page_size:
            payload["nextPageUri"] = self._next_uri(
                req, {"k": "lists", "l": None, "p": ordered[cfg.page_size].rank}
            )
        if cfg.total_records:
            payload["totalRecords"] = total
        return json_response(200, payload)

    def _api_patch(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("patch", 401)
        list_id = params["list"]
        with self._lock:
            known = list_id in self._lists
        if not known:
            return json_response(404, {"error": "not_found"})
        batch = _checked_batch(req.body)
        if isinstance(batch, Response):
            return batch
        with self._lock:
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return json_response(404, {"error": "not_found"})
            invalid: list[str] = []
            reasons: list[str] = []
            for item in batch:
                cid, phone = item.get("id"), item.get("phone")
                if not isinstance(cid, str) or cid not in contact_list.contacts:
                    invalid.append(cid if isinstance(cid, str) else json.dumps(cid))
                    reasons.append("unknown id")
                elif not isinstance(phone, str) or not E164_RE.match(phone):
                    invalid.append(cid)
                    reasons.append("phone is not E.164")
            if invalid:
                summary = ", ".join(sorted(set(reasons)))
                return json_response(
                    400, {"error": f"invalid contacts ({summary})", "invalid": invalid}
                )
            patched = self._stats["patched"]
            for item in batch:
                contact_list.contacts[item["id"]]["phone"] = item["phone"]
                patched[item["id"]] = patched.get(item["id"], 0) + 1
        return json_response(200, {"updated": len(batch)})

    def _api_create(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("create", 401)
        list_id = params["list"]
        batch = _checked_batch(req.body)
        if isinstance(batch, Response):
            return batch
        with self._lock:
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return json_response(404, {"error": "not_found"})
            invalid: list[str] = []
            seen: set[str] = set()
            for item in batch:
                cid = item.get("id")
                if not isinstance(cid, str) or not cid:
                    invalid.append(json.dumps(cid))
                elif cid in contact_list.contacts or cid in seen:
                    invalid.append(cid)
                else:
                    seen.add(cid)
            if invalid:
                return json_response(
                    400, {"error": "ids missing or already present", "invalid": invalid}
                )
            for item in batch:
                contact_list.append(copy.deepcopy(item))
        return json_response(201, {"created": len(batch)})

    def _api_delete(self, params: dict[str, str], req: Request) -> Response:
        if not self._authorized(req):
            return error_response("delete", 401)
        cid = params["contact"]
        with self._lock:
            for contact_list in self._lists.values():
                if contact_list.remove(cid):
                    self._stats["deleted"] += 1
                    return empty_response(204)
            self._stats["delete_404"] += 1
        return json_response(404, {"error": "not_found"})


def _checked_batch(body: bytes) -> list[dict[str, Any]] | Response:
    """A write's contacts, or the 400 the contract gives for bad JSON or over 100."""
    try:
        batch = parse_batch(body)
    except ValueError as exc:
        return json_response(400, {"error": str(exc), "invalid": []})
    if len(batch) > MAX_BATCH:
        return json_response(
            400, {"error": f"too many contacts: {len(batch)} > {MAX_BATCH}", "invalid": []}
        )
    return batch
