"""An HTTP simulator of the v2 campaign contact-list API (docs/cxone-api.md section 1) and
of the NICE CXone Admin API calls cxsweep makes (section 2; docs/cxone.md).

It serves the contract over real sockets so clients are tested with their real HTTP stack
(keep-alive, time-outs, dropped connections), and it can misbehave on purpose: latency, a
token-bucket rate limit, random 503s, and scripted faults. A fake of Twilio Lookup v2 is
served from the same port. A control API under ``/_sim/`` (and the same operations as
methods on ``Simulator``) seeds lists, reconfigures, scripts faults and reads statistics.

The CXone side serves the issuer (``/.well-known/openid-configuration``, ``/auth/token``
with password and refresh-token grants, ``/.well-known/cxone-configuration``) and the Admin
API under ``/inContactAPI/services/vNN.0/`` as NICE's published schema gives it: a calling
list downloads whole in one answer, an upload without ``expirationDate`` is refused, and an
upload job reports only its status (``job_delay`` seconds after submission it is complete);
removeProspects, DNC records and scrubbed skills. NICE's access-key token endpoint is
served too. Per-record failures can be injected with ``fail_records``: a refused upload row
is skipped silently, as a status-only job would.

Fault rules (``add_faults`` or ``POST /_sim/faults {"rules": [...]}``) match requests by
``method`` and a ``path`` regex; ``after`` lets that many matching requests through
first, ``times`` caps how often the rule fires (null: for ever). Actions:

- an HTTP status (429 with ``retry_after``, 401, 5xx): answered instead of the call;
- ``drop`` (connection closed), ``hang`` (``seconds`` of delay, then served);
- ``bad_json``, ``missing_contacts``, ``wrong_types``: answers not in the contract's shape;
- ``foreign_link`` with ``origin`` (``"http://127.0.0.2:9"``): the call is served, but
  the link it announces points at that origin: a v2 read's or list-of-lists'
  ``nextPageUri`` (made up on a last page), a CXone answer's ``_links.next``, the OIDC
  ``token_endpoint``, the discovery ``api_endpoint``;
- ``redirect`` with ``origin``: answered ``307`` to the same path on that origin;
- ``inject_contacts`` with ``contacts`` (objects, ids free: ``""``, ``"."``, ``".."``):
  added in front of the *first* page of a v2 read (or of a CXone list's whole answer);
  later pages do not match the rule. The contacts are not stored: writes to them find nothing;
- ``shift_page``: the page is served, then the list shifts under the reader as offset
  paging does. v2: the page's last contact moves to the end of the list, so it is read
  again on the last page. CXone (answered whole): the list's last record moves to the
  front, so the next read starts with it;
- ``edit_contact`` with ``contact`` (an id or external id) and ``fields`` (``{"phone":
  "+1..."}``; CXone columns by name): a person edits that contact just before the
  matching request is served as usual. With ``"method": "PATCH"`` it happens on the
  first write; with ``"method": "GET"`` and ``after`` N, after N reads;
- ``remove_contact`` with ``contact``: a person deletes that contact, then the request
  is served as usual;
- ``refuse_ids`` with ``ids``: a v2 PATCH (or create) whose batch holds any of them is
  refused, nothing applied, with the contract's 400 ``{"invalid": [those ids]}``;
  batches without them do not match. With ``"always": true`` every matching write is
  refused naming all of ``ids``, in the batch or not (a server naming ids it was not
  sent).
- ``fake_success``: a v2 PATCH answered 200, or a DELETE answered 204, with nothing
  applied (a write that says it landed and did not).

Every request that reaches the server, routed or not, is logged (method, path as sent,
whether it carried an Authorization header): ``requests_seen()``, ``GET /_sim/requests``.

Run it stand-alone with ``python -m devtools.simulator --port 8080 --list demo:10000``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import copy
import csv
import hashlib
import hmac
import io
import json
import logging
import math
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import phonenumbers
from phonenumbers import PhoneNumberType as T

from devtools import seed as seed_data

log = logging.getLogger(__name__)

E164_RE = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BATCH = 100
KINDS = (
    "token",
    "read",
    "lists",
    "patch",
    "delete",
    "create",
    "lookup",
    "oidc",
    "discovery",
    "cxone_token",
    "cxone_lists",
    "cxone_read",
    "remove_prospects",
    "upload",
    "job",
    "dnc",
    "access_key",
    "scrubbed",
    "skill",
)
# Authentication and discovery are spared the random 503s of ``fail_rate``.
_AUTH_KINDS = frozenset({"token", "cxone_token", "oidc", "discovery", "access_key"})
_READ_KINDS = frozenset({"read", "lists", "lookup", "cxone_read", "cxone_lists"})
MAX_REMOVE_PROSPECTS = 1000
CXONE_PHONE_COLUMNS = ("PhoneNumber", "MobileNumber", "WorkNumber")
_CXONE_PHONE_RE = re.compile(r"^\+?\d{7,15}$")
STATUS_ACTIONS = frozenset({500, 502, 503, 504, 429, 401, 400, 403})
NAMED_ACTIONS = frozenset(
    {
        "bad_json",
        "missing_contacts",
        "wrong_types",
        "drop",
        "hang",
        "foreign_link",
        "inject_contacts",
        "shift_page",
        "edit_contact",
        "remove_contact",
        "refuse_ids",
        "redirect",
        "loop_cursor",
        "fake_success",
    }
)
# Requests remembered for ``requests_seen()`` (the newest; a bench sends millions).
REQUEST_LOG_SIZE = 20_000
METHODS = frozenset({"GET", "PATCH", "DELETE", "POST", "PUT", "*"})

_API_PREFIX = "/api/v2/campaigns"
# The CXone Admin API base path; NICE's own examples spell its case both ways.
_CX = r"(?i:/inContactAPI/services/v\d+\.\d+)"
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"^/oauth/token/?$"), "token"),
    ("GET", re.compile(rf"^{_API_PREFIX}/contactlists/?$"), "lists"),
    ("GET", re.compile(rf"^{_API_PREFIX}/contactlists/(?P<list>[^/]+)/?$"), "read"),
    ("PATCH", re.compile(rf"^{_API_PREFIX}/contactlists/(?P<list>[^/]+)/contacts/?$"), "patch"),
    ("POST", re.compile(rf"^{_API_PREFIX}/contactlists/(?P<list>[^/]+)/contacts/?$"), "create"),
    ("DELETE", re.compile(rf"^{_API_PREFIX}/contacts/(?P<contact>[^/]+)/?$"), "delete"),
    ("GET", re.compile(r"^/v2/PhoneNumbers/(?P<number>[^/]+)/?$"), "lookup"),
    ("GET", re.compile(r"^/\.well-known/openid-configuration/?$"), "oidc"),
    ("GET", re.compile(r"^/\.well-known/cxone-configuration/?$"), "discovery"),
    ("POST", re.compile(r"^/auth/token/?$"), "cxone_token"),
    ("POST", re.compile(r"^/authentication/v1/token/access-key/?$"), "access_key"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/?$"), "cxone_lists"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/jobs/(?P<job>[^/]+)/?$"), "job"),
    ("GET", re.compile(rf"^{_CX}/lists/call-lists/(?P<list>[^/]+)/?$"), "cxone_read"),
    ("POST", re.compile(rf"^{_CX}/lists/call-lists/(?P<list>[^/]+)/upload/?$"), "upload"),
    (
        "DELETE",
        re.compile(rf"^{_CX}/lists/call-lists/(?P<name>[^/]+)/removeProspects/?$"),
        "remove_prospects",
    ),
    ("POST", re.compile(rf"^{_CX}/dnc-groups/(?P<group>[^/]+)/records/?$"), "dnc"),
    ("GET", re.compile(rf"^{_CX}/dnc-groups/(?P<group>[^/]+)/scrubbed-skills/?$"), "scrubbed"),
    ("GET", re.compile(rf"^{_CX}/skills/(?P<skill>\d+)/?$"), "skill"),
)


# --- configuration ------------------------------------------------------------------------


@dataclass
class SimConfig:
    """How the simulator behaves; every field can be changed while it runs."""

    page_size: int = 500
    token_lifetime: float = 1800.0
    latency_ms: float = 0.0
    # Requests per second over every API call, token included; 0 means unlimited.
    rate_limit: float = 0.0
    # Bucket size; None means the same as rate_limit (one second's worth).
    rate_burst: float | None = None
    fail_rate: float = 0.0
    total_records: bool = False
    seed: int = 0
    clients: dict[str, str] = field(default_factory=lambda: {"demo-client": "demo-secret"})
    twilio_account_sid: str = "ACsimulator"
    twilio_auth_token: str = "sim-token"
    # CXone: API users' access keys (id -> secret); clients above are the app's.
    access_keys: dict[str, str] = field(default_factory=lambda: {"demo-key-id": "demo-key-secret"})
    tenant_id: str = "11eb0c3a-5ee7-4d1e-9b3a-c0ffee5c0de1"
    area: str = "sim1"
    refresh_token_lifetime: float = 86400.0
    # Seconds an upload job takes to end.
    job_delay: float = 0.5

    def updated(self, changes: Mapping[str, Any]) -> SimConfig:
        """A validated copy with ``changes`` applied; ValueError names a bad field."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        new = replace(self, **dict(changes))
        new.validate()
        return new

    def validate(self) -> None:
        def number(name: str, value: object, *, integer: bool = False) -> None:
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and value >= 0
                and (isinstance(value, int) or not integer)
            )
            if not ok:
                kind = "integer" if integer else "number"
                raise ValueError(f"{name} must be a non-negative {kind}")

        number("page_size", self.page_size, integer=True)
        if self.page_size < 1:
            raise ValueError("page_size must be at least 1")
        number("token_lifetime", self.token_lifetime)
        number("latency_ms", self.latency_ms)
        number("rate_limit", self.rate_limit)
        if self.rate_burst is not None:
            number("rate_burst", self.rate_burst)
        number("fail_rate", self.fail_rate)
        if self.fail_rate > 1:
            raise ValueError("fail_rate must be between 0 and 1")
        number("seed", self.seed, integer=True)
        if not isinstance(self.total_records, bool):
            raise ValueError("total_records must be true or false")
        if not isinstance(self.clients, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.clients.items()
        ):
            raise ValueError("clients must map client ids to secrets (strings)")
        for name in ("twilio_account_sid", "twilio_auth_token", "tenant_id", "area"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string")
        if not isinstance(self.access_keys, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.access_keys.items()
        ):
            raise ValueError("access_keys must map access key ids to secrets (strings)")
        number("refresh_token_lifetime", self.refresh_token_lifetime)
        number("job_delay", self.job_delay)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- fault rules ------------------------------------------------------------------------


@dataclass
class FaultRule:
    method: str
    path: re.Pattern[str]
    action: int | str
    after: int = 0
    times: int | None = None
    retry_after: str | None = None
    seconds: float = 1.0
    origin: str | None = None
    contacts: list[dict[str, Any]] = field(default_factory=list)
    contact: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    always: bool = False
    #: the share of matching requests (after ``after``) the rule fires on, drawn from the seed
    probability: float = 1.0
    matched: int = 0
    fired: int = 0

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> FaultRule:
        if not isinstance(raw, Mapping):
            raise ValueError("a fault rule must be a JSON object")
        allowed = {"method", "path", "action", "after", "times", "retry_after", "seconds"}
        allowed |= {"origin", "contacts", "contact", "fields", "ids", "always", "probability"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {', '.join(unknown)}")
        method = str(raw.get("method", "*")).upper()
        if method not in METHODS:
            raise ValueError(f"fault rule method {method!r} is not one of {sorted(METHODS)}")
        try:
            path = re.compile(str(raw.get("path", "")))
        except re.error as exc:
            raise ValueError(f"fault rule path is not a regex: {exc}") from exc
        action: int | str = raw.get("action", "")
        if isinstance(action, str) and action.isdigit():
            action = int(action)
        if action not in STATUS_ACTIONS and action not in NAMED_ACTIONS:
            raise ValueError(f"fault rule action {action!r} is not supported")
        after = raw.get("after", 0)
        times = raw.get("times")
        if not isinstance(after, int) or after < 0:
            raise ValueError("fault rule 'after' must be a non-negative integer")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("fault rule 'times' must be a positive integer or null")
        retry_after = raw.get("retry_after")
        seconds = raw.get("seconds", 1.0)
        if not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("fault rule 'seconds' must be a non-negative number")
        probability = raw.get("probability", 1.0)
        if (
            not isinstance(probability, int | float)
            or isinstance(probability, bool)
            or not 0 <= probability <= 1
        ):
            raise ValueError("fault rule 'probability' must be a number from 0 to 1")
        return cls(
            method=method,
            path=path,
            action=action,
            after=after,
            times=times,
            retry_after=None if retry_after is None else str(retry_after),
            seconds=float(seconds),
            probability=float(probability),
            **_action_arguments(action, raw),
        )

    def applies(self, req: _Request) -> bool:
        """Whether a request the method and path match is one this rule is about."""
        if self.action == "inject_contacts":
            return not req.query.get("cursor") and (req.query.get("skip") or ["0"])[0] == "0"
        if self.action == "refuse_ids" and not self.always:
            try:
                batch = _parse_batch(req.body)
            except ValueError:
                return False
            return any(item.get("id") in self.ids for item in batch)
        return True

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path.pattern,
            "action": self.action,
            "after": self.after,
            "times": self.times,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "origin": self.origin,
            "contacts": copy.deepcopy(self.contacts),
            "contact": self.contact,
            "fields": copy.deepcopy(self.fields),
            "ids": list(self.ids),
            "always": self.always,
            "probability": self.probability,
            "matched": self.matched,
            "fired": self.fired,
            "spent": self.spent,
        }


def _action_arguments(action: int | str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """The extra fields an action needs, checked; ValueError names what is wrong."""
    out: dict[str, Any] = {}
    if action in ("foreign_link", "redirect"):
        origin = raw.get("origin")
        parts = urlsplit(origin) if isinstance(origin, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{action} needs an 'origin' such as 'http://127.0.0.2:9'")
        out["origin"] = f"{parts.scheme}://{parts.netloc}"
    if action == "inject_contacts":
        contacts = raw.get("contacts")
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise ValueError("inject_contacts needs 'contacts', a list of objects")
        out["contacts"] = copy.deepcopy(contacts)
    if action in ("edit_contact", "remove_contact"):
        contact = raw.get("contact")
        if not isinstance(contact, str):
            raise ValueError(f"{action} needs 'contact', a contact id")
        out["contact"] = contact
    if action == "edit_contact":
        changes = raw.get("fields")
        if not isinstance(changes, dict) or not changes:
            raise ValueError("edit_contact needs 'fields', an object of new values")
        out["fields"] = copy.deepcopy(changes)
    if action == "refuse_ids":
        ids = raw.get("ids")
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            raise ValueError("refuse_ids needs 'ids', a non-empty list of strings")
        always = raw.get("always", False)
        if not isinstance(always, bool):
            raise ValueError("'always' must be true or false")
        out.update(ids=list(ids), always=always)
    return out


# --- contact storage ----------------------------------------------------------------------


class _ContactList:
    """Contacts in insertion order, addressable by id and by position.

    ``order`` is append-only with ``None`` where a contact was removed, so a cursor (a
    position) stays meaningful across deletions and re-creations, and a page costs
    O(page) plus the removed slots it skips.
    """

    __slots__ = ("contacts", "generation", "list_id", "name", "order", "position", "rank")

    def __init__(self, list_id: str, name: str, contacts: Iterable[dict]) -> None:
        self.list_id = list_id
        self.name = name
        # Set when installed: which version of the list a cursor belongs to, and where the
        # list sits in the list of lists.
        self.generation = 0
        self.rank = 0
        self.contacts: dict[str, dict[str, Any]] = {}
        self.position: dict[str, int] = {}
        self.order: list[str | None] = []
        for contact in contacts:
            cid = contact.get("id") if isinstance(contact, dict) else None
            if not isinstance(cid, str) or not cid:
                raise ValueError("every contact needs a non-empty string 'id'")
            if cid in self.contacts:
                raise ValueError(f"duplicate contact id {cid!r}")
            self.append(dict(contact))

    def append(self, contact: dict[str, Any]) -> None:
        cid = contact["id"]
        self.contacts[cid] = contact
        self.position[cid] = len(self.order)
        self.order.append(cid)

    def remove(self, cid: str) -> bool:
        if cid not in self.contacts:
            return False
        del self.contacts[cid]
        self.order[self.position.pop(cid)] = None
        return True

    def page(self, start: int, size: int) -> tuple[list[dict[str, Any]], int | None]:
        order, contacts = self.order, self.contacts
        out: list[dict[str, Any]] = []
        i, end = start, len(order)
        while i < end and len(out) < size:
            cid = order[i]
            if cid is not None:
                out.append(dict(contacts[cid]))
            i += 1
        while i < end and order[i] is None:
            i += 1
        return out, (i if i < end else None)


def _encode_cursor(payload: Mapping[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(token: str) -> dict[str, Any]:
    try:
        padded = token + "=" * (-len(token) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(value, dict):
        raise ValueError("invalid cursor")
    return value


class _CallingList:
    """A CXone calling list: records keyed by the list's external id column."""

    __slots__ = (
        "expiration",
        "external_id_column",
        "list_id",
        "name",
        "phone_columns",
        "records",
        "skill_id",
        "status",
    )

    def __init__(
        self,
        list_id: str,
        name: str,
        records: Iterable[Mapping[str, Any]],
        external_id_column: str = "ExternalId",
        phone_columns: Iterable[str] = CXONE_PHONE_COLUMNS,
        *,
        status: str = "Active",
        skill_id: int = 4001,
        expiration: str | None = None,
    ) -> None:
        self.list_id = list_id
        self.name = name
        self.status = status
        self.skill_id = skill_id
        self.expiration = expiration
        self.external_id_column = external_id_column
        self.phone_columns = tuple(phone_columns)
        self.records: dict[str, dict[str, Any]] = {}
        for record in records:
            key = record.get(external_id_column) if isinstance(record, Mapping) else None
            if not isinstance(key, str) or not key:
                raise ValueError(f"every record needs a non-empty {external_id_column!r}")
            if key in self.records:
                raise ValueError(f"duplicate external id {key!r}")
            self.records[key] = dict(record)

    def summary(self) -> dict[str, Any]:
        return {
            "listId": int(self.list_id) if self.list_id.isdigit() else self.list_id,
            "listName": self.name,
            "status": self.status,
            "totalRecords": len(self.records),
            "validRecords": len(self.records),
            "invalidRecords": 0,
            "finalizedRecords": 0,
            "skills": [{"skillId": self.skill_id}],
        }


def messy_call_records(
    list_id: str, count: int, seed: int = 0, phone_columns: Sequence[str] = CXONE_PHONE_COLUMNS
) -> list[dict[str, Any]]:
    """``count`` calling-list records with several phone columns, from the seed helpers.

    The first column is always filled, the others often; each number is drawn from the
    seeded messy mix, so many records hold one good number beside a bad one.
    """
    columns = tuple(phone_columns)
    base = seed_data.messy_contacts(f"cx{list_id}", count * len(columns), seed)
    rng = random.Random(f"{list_id}:{seed}")
    records: list[dict[str, Any]] = []
    for i in range(count):
        group = base[i * len(columns) : (i + 1) * len(columns)]
        person = group[0]
        record: dict[str, Any] = {"ExternalId": f"{list_id}-{i:06d}"}
        for position, (column, contact) in enumerate(zip(columns, group, strict=True)):
            present = position == 0 or rng.random() < (0.6 if position == 1 else 0.35)
            record[column] = (contact["phone"] or "") if present else ""
        record.update(
            FirstName=person["firstName"],
            LastName=person["lastName"],
            Email=person["email"],
            AccountNumber=person["accountNumber"],
            Notes=person["notes"],
        )
        records.append(record)
    return records


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(claims: Mapping[str, Any], key: bytes) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


# --- requests and responses -------------------------------------------------------------


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    host: str


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    #: a body sent as it is produced (chunked), instead of ``body``
    chunks: Iterable[bytes] | None = None


def _json(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> _Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    merged = {"Content-Type": "application/json"}
    if headers:
        merged.update(headers)
    return _Response(status, body, merged)


def _empty(status: int) -> _Response:
    return _Response(status)


def _twilio_error(status: int, code: int, message: str) -> _Response:
    return _json(
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


def _error_response(kind: str | None, status: int, retry_after: str | None = None) -> _Response:
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    if kind == "lookup":
        code = {401: 20003, 429: 20429}.get(status, 20500)
        resp = _twilio_error(status, code, _STATUS_ERRORS.get(status, "error"))
        resp.headers.update(headers)
        return resp
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return _json(status, {"error": _STATUS_ERRORS.get(status, "error")}, headers)


def _new_stats() -> dict[str, Any]:
    return {
        "requests": dict.fromkeys(KINDS, 0),
        "token_grants": 0,
        "statuses": {},
        "patched": {},
        "max_patch_batch": 0,
        "deleted": 0,
        "delete_404": 0,
        "faults_fired": 0,
        "in_flight_max": 0,
        # CXone
        "password_grants": 0,
        "access_key_grants": 0,
        "refresh_grants": 0,
        "removed_prospects": 0,
        "remove_failed": 0,
        "uploaded": {},
        "upload_failed": 0,
        "jobs_submitted": 0,
        "dnc_added": 0,
    }


# Weighted line types for the Lookup fake, by libphonenumber's own view of the number;
# the weights only need to give a sweep a realistic sprinkle of VoIP and burner lines.
_LTI_TABLES: dict[str, tuple[tuple[str, int], ...]] = {
    "ambiguous": (
        ("mobile", 55),
        ("landline", 27),
        ("fixedVoip", 8),
        ("nonFixedVoip", 6),
        ("unknown", 2),
        ("personal", 1),
        ("voicemail", 1),
    ),
    "mobile": (("mobile", 90), ("nonFixedVoip", 8), ("unknown", 2)),
    "fixed": (("landline", 84), ("fixedVoip", 14), ("unknown", 2)),
    "voip": (("fixedVoip", 50), ("nonFixedVoip", 50)),
}
_LTI_FIXED: dict[int, str] = {
    T.TOLL_FREE: "tollFree",
    T.PREMIUM_RATE: "premium",
    T.SHARED_COST: "sharedCost",
    T.UAN: "uan",
    T.PAGER: "pager",
    T.VOICEMAIL: "voicemail",
    T.PERSONAL_NUMBER: "personal",
}
_CARRIERS: dict[str, tuple[str, ...]] = {
    "mobile": (
        "Verizon Wireless",
        "T-Mobile USA, Inc.",
        "AT&T Wireless",
        "EE Limited",
        "Vodafone UK",
        "Rogers Communications",
        "Bell Mobility",
    ),
    "landline": ("Comcast", "AT&T Local", "Frontier Communications", "BT Group", "Bell Canada"),
    "fixedVoip": ("Vonage", "Comcast Digital Voice", "RingCentral", "Ooma"),
    "nonFixedVoip": (
        "Google (Grand Central) - SVR",
        "Bandwidth/13 - Bandwidth.com - SVR",
        "TextNow - SVR",
        "Twilio - SVR",
    ),
}


def lookup_line_type(e164: str) -> tuple[str, str | None]:
    """The fake's answer for a valid number: (line type, carrier). Pure and deterministic."""
    digest = int.from_bytes(hashlib.sha256(e164.encode()).digest()[:8], "big")
    try:
        number = phonenumbers.parse(e164, None)
        pn_type = phonenumbers.number_type(number)
    except phonenumbers.NumberParseException:
        pn_type = T.UNKNOWN
    if pn_type in _LTI_FIXED:
        line_type = _LTI_FIXED[pn_type]
    else:
        table_name = {
            T.MOBILE: "mobile",
            T.FIXED_LINE: "fixed",
            T.VOIP: "voip",
        }.get(pn_type, "ambiguous")
        table = _LTI_TABLES[table_name]
        slot = digest % sum(w for _, w in table)
        line_type = table[-1][0]
        for name, weight in table:
            if slot < weight:
                line_type = name
                break
            slot -= weight
    carriers = _CARRIERS.get(line_type)
    carrier = carriers[(digest >> 20) % len(carriers)] if carriers else None
    return line_type, carrier


# --- the simulator --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # Benchmarks open many connections at once; the default backlog of 5 drops them.
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK and every response costs ~40 ms.
    disable_nagle_algorithm = True
    server_version = "cxsweep-simulator/1"
    server: _Server

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
            self._send(_json(400, {"error": "unreadable body"}))
            return
        split = urlsplit(self.path)
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        request = _Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query),
            headers=self.headers,
            body=body,
            host=host,
        )
        try:
            response = self.server.sim._handle(request)
        except Exception:
            log.exception("simulator failed on %s %s", self.command, self.path)
            response = _json(500, {"error": "simulator_bug"})
        self._send(response)

    def _send(self, response: _Response) -> None:
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


class Simulator:
    """The v2 contact-list API plus a Twilio Lookup fake, served over HTTP.

    ``Simulator().start()`` serves in a daemon thread on an ephemeral port; ``.url`` says
    where. All state sits behind one lock, never held while sleeping.
    """

    def __init__(
        self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        initial = copy.deepcopy(config) if config is not None else SimConfig()
        initial.validate()
        self._initial = initial
        self._config = copy.deepcopy(initial)
        self._lock = threading.Lock()
        self._lists: dict[str, _ContactList] = {}
        self._tokens: dict[str, float] = {}
        self._faults: list[FaultRule] = []
        self._webhooks: list[dict[str, Any]] = []
        self._seen: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self._stats = _new_stats()
        self._in_flight = 0
        # CXone state
        self._call_lists: dict[str, _CallingList] = {}
        self._refresh_tokens: dict[str, float] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._job_seq = 0
        self._dnc: dict[str, dict[str, dict[str, Any]]] = {}
        self._scrubbed: dict[str, list[int]] = {}
        self._running_skills: set[int] = set()
        self._remove_failures: dict[str, str] = {}
        self._upload_failures: dict[str, str] = {}
        self._jwt_key = secrets.token_bytes(32)
        self._generation = 0
        self._rng = random.Random(initial.seed)
        self._bucket = 0.0
        self._bucket_at = time.monotonic()
        self._reset_bucket()
        self._server = _Server((host, port), self)
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

    # -- in-process control (mirrors /_sim/)

    @property
    def config(self) -> SimConfig:
        return copy.deepcopy(self._config)

    def configure(self, **changes: Any) -> SimConfig:
        with self._lock:
            self._apply_config(self._config.updated(changes))
            return copy.deepcopy(self._config)

    def reset(self, lists: Mapping[str, Mapping[str, Any]] | None = None, **changes: Any) -> None:
        """Back to the constructor's config plus ``changes``; no lists, tokens, faults, stats."""
        new_config = self._initial.updated(changes)
        built = {
            list_id: self._build_list(list_id, spec) for list_id, spec in (lists or {}).items()
        }
        with self._lock:
            self._lists.clear()
            self._tokens.clear()
            self._faults.clear()
            self._call_lists.clear()
            self._refresh_tokens.clear()
            self._jobs.clear()
            self._dnc.clear()
            self._scrubbed.clear()
            self._running_skills.clear()
            self._remove_failures.clear()
            self._upload_failures.clear()
            self._webhooks.clear()
            self._seen.clear()
            self._stats = _new_stats()
            self._apply_config(new_config)
            self._rng = random.Random(new_config.seed)
            for contact_list in built.values():
                self._install_list(contact_list)

    def put_list(
        self,
        list_id: str,
        contacts: Iterable[Mapping[str, Any]] | None = None,
        *,
        count: int | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> int:
        """Create or replace a list from ``contacts`` or ``count`` seeded ones; its size."""
        spec: dict[str, Any] = {"seed": seed}
        if contacts is not None:
            spec["contacts"] = list(contacts)
        if count is not None:
            spec["count"] = count
        if name is not None:
            spec["name"] = name
        built = self._build_list(list_id, spec)
        with self._lock:
            return len(self._install_list(built).contacts)

    def get_list(self, list_id: str) -> list[dict[str, Any]]:
        """A copy of the list's current contacts in order; KeyError if there is none."""
        with self._lock:
            return [dict(c) for c in self._lists[list_id].contacts.values()]

    def list_ids(self) -> list[str]:
        with self._lock:
            return list(self._lists)

    def delete_list(self, list_id: str) -> bool:
        with self._lock:
            return self._lists.pop(list_id, None) is not None

    def add_faults(self, rules: Iterable[Mapping[str, Any]]) -> None:
        parsed = [FaultRule.parse(rule) for rule in rules]
        with self._lock:
            self._faults.extend(parsed)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [rule.to_json() for rule in self._faults]

    def revoke_tokens(self) -> int:
        with self._lock:
            revoked = len(self._tokens)
            self._tokens.clear()
            return revoked

    # -- in-process control of the CXone side

    def put_call_list(
        self,
        list_id: str,
        records: Iterable[Mapping[str, Any]] | None = None,
        *,
        count: int | None = None,
        seed: int = 0,
        name: str | None = None,
        external_id_column: str = "ExternalId",
        phone_columns: Sequence[str] = CXONE_PHONE_COLUMNS,
        status: str = "Active",
        skill_id: int = 4001,
        expiration: str | None = None,
    ) -> int:
        """Create or replace a calling list from ``records`` or ``count`` seeded ones."""
        if records is None:
            if count is None:
                raise ValueError("give records or a count")
            records = messy_call_records(list_id, count, seed, phone_columns)
        built = _CallingList(
            list_id,
            name or f"Calling list {list_id}",
            records,
            external_id_column,
            phone_columns,
            status=status,
            skill_id=skill_id,
            expiration=expiration,
        )
        with self._lock:
            if any(
                cl.name == built.name and cl.list_id != list_id for cl in self._call_lists.values()
            ):
                raise ValueError(f"a calling list is already named {built.name!r}")
            self._call_lists[list_id] = built
            return len(built.records)

    def get_call_list(self, list_id: str) -> list[dict[str, Any]]:
        """The calling list's records now (due upload jobs applied); KeyError if none."""
        with self._lock:
            self._settle_jobs()
            return [dict(r) for r in self._call_lists[list_id].records.values()]

    def fail_records(
        self,
        *,
        remove: Mapping[str, str] | None = None,
        upload: Mapping[str, str] | None = None,
    ) -> None:
        """Make removeProspects / upload jobs refuse these external ids with these codes
        (an empty code: removeProspects names the record in neither of its lists)."""
        with self._lock:
            self._remove_failures.update(remove or {})
            self._upload_failures.update(upload or {})

    def add_dnc_group(self, group_id: str, scrubbed_skills: Iterable[int] = (4001,)) -> None:
        with self._lock:
            self._dnc.setdefault(str(group_id), {})
            self._scrubbed[str(group_id)] = list(scrubbed_skills)

    def set_skill_running(self, skill_id: int, running: bool = True) -> None:
        with self._lock:
            (self._running_skills.add if running else self._running_skills.discard)(skill_id)

    def dnc_numbers(self, group_id: str) -> list[str]:
        with self._lock:
            return list(self._dnc.get(str(group_id), {}))

    def revoke_refresh_tokens(self) -> int:
        with self._lock:
            revoked = len(self._refresh_tokens)
            self._refresh_tokens.clear()
            return revoked

    def jobs(self) -> list[dict[str, Any]]:
        """Upload jobs so far: id, list, rows, done, failed records."""
        with self._lock:
            self._settle_jobs()
            return [
                {
                    "jobId": job["jobId"],
                    "listId": job["listId"],
                    "rows": len(job["rows"]),
                    "isComplete": job["done"],
                    "expirationDate": job["expirationDate"],
                    "failedRecords": list(job["failed"]),
                }
                for job in self._jobs.values()
            ]

    def issue_token(self) -> str:
        """A valid bearer token without a round trip (not counted in stats)."""
        with self._lock:
            return self._grant(self._config)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._stats)

    def requests_seen(self) -> list[dict[str, Any]]:
        """The API requests received (newest last, control calls left out): ``method``,
        ``path`` as sent (query cut off), ``host``, ``authorization`` (whether an
        Authorization header came with it; never its value) and the answer's ``status``
        (0: connection dropped; None: not answered yet)."""
        with self._lock:
            return [dict(seen) for seen in self._seen]

    def webhooks(self) -> list[dict[str, Any]]:
        """What was POSTed to ``/_sim/webhook``: ``{"body", "raw", "headers", "received_at"}``.

        A stand-in for the run-report aggregator, so a sweep's webhook can be checked
        (signature included: ``raw`` is the exact bytes) without another server.
        """
        with self._lock:
            return copy.deepcopy(self._webhooks)

    # -- internals: state

    def _reset_bucket(self) -> None:
        cfg = self._config
        self._bucket = float(cfg.rate_burst if cfg.rate_burst is not None else cfg.rate_limit)
        self._bucket_at = time.monotonic()

    def _apply_config(self, new: SimConfig) -> None:
        old = self._config
        self._config = new
        if (old.rate_limit, old.rate_burst) != (new.rate_limit, new.rate_burst):
            self._reset_bucket()
        if old.seed != new.seed:
            self._rng = random.Random(new.seed)

    @staticmethod
    def _build_list(list_id: str, spec: Mapping[str, Any]) -> _ContactList:
        """Build a list from a spec outside the lock: a million contacts take seconds."""
        if not isinstance(spec, Mapping):
            raise ValueError(f"list {list_id!r}: expected an object")
        name = spec.get("name") or f"Contact list {list_id}"
        if not isinstance(name, str):
            raise ValueError(f"list {list_id!r}: name must be a string")
        if spec.get("contacts") is not None:
            contacts = spec["contacts"]
            if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
                raise ValueError(f"list {list_id!r}: contacts must be a list of objects")
            return _ContactList(list_id, name, contacts)
        count, seed = spec.get("count"), spec.get("seed", 0)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError(f"list {list_id!r}: give 'contacts' or a non-negative 'count'")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"list {list_id!r}: seed must be an integer")
        return _ContactList(list_id, name, seed_data.messy_contacts(list_id, count, seed))

    def _install_list(self, built: _ContactList) -> _ContactList:
        self._generation += 1
        existing = self._lists.get(built.list_id)
        built.generation = self._generation
        built.rank = existing.rank if existing is not None else self._generation
        self._lists[built.list_id] = built
        return built

    def _grant(self, cfg: SimConfig) -> str:
        now = time.monotonic()
        if len(self._tokens) > 10_000:
            self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + float(cfg.token_lifetime)
        return token

    def _take_rate_token(self, cfg: SimConfig) -> int | None:
        """None if the request may proceed, else the Retry-After in whole seconds."""
        if cfg.rate_limit <= 0:
            return None
        burst = float(cfg.rate_burst if cfg.rate_burst is not None else cfg.rate_limit)
        burst = max(burst, 1.0)
        now = time.monotonic()
        self._bucket = min(burst, self._bucket + (now - self._bucket_at) * cfg.rate_limit)
        self._bucket_at = now
        if self._bucket >= 1.0:
            self._bucket -= 1.0
            return None
        return max(1, math.ceil((1.0 - self._bucket) / cfg.rate_limit))

    def _match_fault(self, req: _Request) -> FaultRule | None:
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

    # -- internals: dispatch

    def _handle(self, req: _Request) -> _Response:
        if req.path == "/_sim" or req.path.startswith("/_sim/"):
            try:
                return self._control(req)
            except (ValueError, TypeError) as exc:
                return _json(400, {"error": str(exc)})
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

    def _answer(self, req: _Request) -> _Response:
        route = self._route(req.method, req.path)
        if route is None:
            with self._lock:
                self._count_status(404)
            return _json(404, {"error": "not_found"})
        kind, params, allowed = route
        if kind is None:
            with self._lock:
                self._count_status(405)
            return _json(405, {"error": "method_not_allowed"}, {"Allow": ", ".join(allowed)})
        with self._lock:
            self._stats["requests"][kind] += 1
            self._in_flight += 1
            if self._in_flight > self._stats["in_flight_max"]:
                self._stats["in_flight_max"] = self._in_flight
            if kind == "patch":
                size = _batch_size(req.body)
                if size > self._stats["max_patch_batch"]:
                    self._stats["max_patch_batch"] = size
        response: _Response | None = None
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
        for route_method, pattern, kind in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method == method:
                params = {k: unquote(v) for k, v in match.groupdict().items()}
                return kind, params, [route_method]
            allowed.append(route_method)
        return (None, {}, allowed) if allowed else None

    def _api(self, kind: str, params: dict[str, str], req: _Request) -> _Response:
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
                and kind not in _AUTH_KINDS
                and cfg.fail_rate > 0
                and self._rng.random() < cfg.fail_rate
            )
            fired = rule.fired if rule is not None else 0
        if wait is not None:
            return _error_response(kind, 429, str(wait))
        if rule is not None:
            faulted = self._fault_response(rule, fired, kind, params, req)
            if faulted is not None:
                return faulted
        if fail:
            return _error_response(kind, 503)
        handler: Callable[[dict[str, str], _Request], _Response] = getattr(self, f"_api_{kind}")
        response = handler(params, req)
        if rule is not None and response.status == 200:
            response = self._after_fault(rule, kind, params, response)
        return response

    def _fault_response(
        self, rule: FaultRule, fired: int, kind: str, params: dict[str, str], req: _Request
    ) -> _Response | None:
        action = rule.action
        if isinstance(action, int):
            retry_after = rule.retry_after if action == 429 else None
            return _error_response(kind, action, retry_after)
        if action == "drop":
            return _Response(0, drop=True)
        if action == "loop_cursor" and kind == "read":
            # Paging that loops: the page names itself as the next one.
            response = self._api_read(params, req)
            if response.status == 200:
                body = json.loads(response.body)
                query = urlencode(req.query, doseq=True)
                itself = f"http://{req.host}{req.path}" + (f"?{query}" if query else "")
                body["nextPageUri"] = itself
                return _json(200, body)
            return response
        if action == "hang":
            time.sleep(rule.seconds)
            return None
        if action in ("edit_contact", "remove_contact"):
            self._person_edits(rule)
            return None
        if action == "fake_success":
            if kind == "delete":
                return _empty(204)
            if kind == "patch":
                return _json(200, {"updated": _batch_size(req.body)})
            return None
        if action == "refuse_ids":
            try:
                batch_ids = {item.get("id") for item in _parse_batch(req.body)}
            except ValueError:
                batch_ids = set()
            named = list(rule.ids) if rule.always else [i for i in rule.ids if i in batch_ids]
            return _json(400, {"error": "invalid contacts (refused)", "invalid": named})
        if action == "redirect":
            # 307: a client that follows sends the same method and body over there.
            return _Response(307, b"", {"Location": f"{rule.origin}{req.path}"})
        if action in ("foreign_link", "inject_contacts", "shift_page"):
            return None  # served as usual, then changed by _after_fault
        if action == "missing_contacts":
            if kind.startswith("cxone") or kind in ("remove_prospects", "upload", "job", "dnc"):
                return _json(200, {"_links": {}})
            return _json(200, {"nextPageUri": None})
        if action == "bad_json":
            # Reads show a real page cut short, as when a proxy truncates a response.
            if kind in _READ_KINDS:
                whole = getattr(self, f"_api_{kind}")(params, req)
                body = whole.body or b"".join(whole.chunks or ())
            else:
                body = json.dumps({"contacts": [{"id": "x", "phone": "+1650"}]}).encode()
            cut = body[: max(1, len(body) // 2)]
            return _Response(200, cut, {"Content-Type": "application/json"})
        return _json(200, _wrong_types(kind, fired))

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
        self, rule: FaultRule, kind: str, params: dict[str, str], response: _Response
    ) -> _Response:
        """The actions that serve the call as usual and then misbehave."""
        if rule.action == "shift_page":
            self._shift(kind, params, response)
            return response
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
        return _json(200, body, {k: v for k, v in response.headers.items() if k != "Content-Type"})

    def _shift(self, kind: str, params: dict[str, str], response: _Response) -> None:
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

    # -- internals: the API

    def _authorized(self, req: _Request) -> bool:
        header = req.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self._lock:
            expires = self._tokens.get(token.strip())
            return expires is not None and expires > time.monotonic()

    def _api_token(self, params: dict[str, str], req: _Request) -> _Response:
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
                return self._invalid_client()
        if (form.get("grant_type") or [""])[0] != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        with self._lock:
            cfg = self._config
            expected = cfg.clients.get(client_id)
            if expected is None or not secrets.compare_digest(expected, secret):
                return self._invalid_client()
            token = self._grant(cfg)
            self._stats["token_grants"] += 1
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
        }
        if form.get("scope"):
            payload["scope"] = form["scope"][0]
        return _json(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    @staticmethod
    def _invalid_client() -> _Response:
        return _json(401, {"error": "invalid_client"}, {"WWW-Authenticate": "Basic"})

    def _next_uri(self, req: _Request, payload: Mapping[str, Any]) -> str:
        return f"http://{req.host}{req.path}?cursor={quote(_encode_cursor(payload))}"

    def _cursor(self, req: _Request, kind: str, list_id: str | None = None) -> dict[str, Any]:
        raw = (req.query.get("cursor") or [""])[0]
        if not raw:
            return {}
        cursor = _decode_cursor(raw)
        if cursor.get("k") != kind or cursor.get("l") != list_id:
            raise ValueError("invalid cursor")
        if not isinstance(cursor.get("p"), int) or cursor["p"] < 0:
            raise ValueError("invalid cursor")
        return cursor

    def _api_read(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("read", 401)
        list_id = params["list"]
        try:
            cursor = self._cursor(req, "read", list_id)
        except ValueError:
            return _json(400, {"error": "invalid_cursor"})
        with self._lock:
            cfg = self._config
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return _json(404, {"error": "not_found"})
            if cursor and cursor.get("g") != contact_list.generation:
                # The list was replaced under the cursor: its positions mean nothing now.
                return _json(400, {"error": "stale_cursor"})
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
        return _json(200, payload)

    def _api_lists(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("lists", 401)
        try:
            cursor = self._cursor(req, "lists")
        except ValueError:
            return _json(400, {"error": "invalid_cursor"})
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
        return _json(200, payload)

    def _api_patch(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("patch", 401)
        list_id = params["list"]
        with self._lock:
            known = list_id in self._lists
        if not known:
            return _json(404, {"error": "not_found"})
        batch = _checked_batch(req.body)
        if isinstance(batch, _Response):
            return batch
        with self._lock:
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return _json(404, {"error": "not_found"})
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
                return _json(400, {"error": f"invalid contacts ({summary})", "invalid": invalid})
            patched = self._stats["patched"]
            for item in batch:
                contact_list.contacts[item["id"]]["phone"] = item["phone"]
                patched[item["id"]] = patched.get(item["id"], 0) + 1
        return _json(200, {"updated": len(batch)})

    def _api_create(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("create", 401)
        list_id = params["list"]
        batch = _checked_batch(req.body)
        if isinstance(batch, _Response):
            return batch
        with self._lock:
            contact_list = self._lists.get(list_id)
            if contact_list is None:
                return _json(404, {"error": "not_found"})
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
                return _json(400, {"error": "ids missing or already present", "invalid": invalid})
            for item in batch:
                contact_list.append(copy.deepcopy(item))
        return _json(201, {"created": len(batch)})

    def _api_delete(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("delete", 401)
        cid = params["contact"]
        with self._lock:
            for contact_list in self._lists.values():
                if contact_list.remove(cid):
                    self._stats["deleted"] += 1
                    return _empty(204)
            self._stats["delete_404"] += 1
        return _json(404, {"error": "not_found"})

    def _api_lookup(self, params: dict[str, str], req: _Request) -> _Response:
        cfg = self._config
        header = req.headers.get("Authorization", "")
        ok = False
        if header.lower().startswith("basic "):
            try:
                sid, _, token = base64.b64decode(header[6:].strip()).decode().partition(":")
                ok = secrets.compare_digest(sid, cfg.twilio_account_sid) and (
                    secrets.compare_digest(token, cfg.twilio_auth_token)
                )
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        if not ok:
            return _twilio_error(401, 20003, "Authenticate")
        raw = params["number"]
        wanted = {
            part.strip()
            for value in req.query.get("Fields", [])
            for part in value.split(",")
            if part.strip()
        }
        url = f"https://lookups.twilio.com/v2/PhoneNumbers/{raw}"
        payload: dict[str, Any] = {
            "calling_country_code": None,
            "country_code": None,
            "phone_number": raw,
            "national_format": None,
            "valid": False,
            "validation_errors": [],
            "caller_name": None,
            "sim_swap": None,
            "call_forwarding": None,
            "line_type_intelligence": None,
            "identity_match": None,
            "reassigned_number": None,
            "sms_pumping_risk": None,
            "phone_number_quality_score": None,
            "url": url,
        }
        try:
            number = phonenumbers.parse(raw, (req.query.get("CountryCode") or ["US"])[0])
        except phonenumbers.NumberParseException:
            payload["validation_errors"] = ["NOT_A_NUMBER"]
            return _json(200, payload)
        e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
        payload["phone_number"] = e164
        payload["calling_country_code"] = str(number.country_code)
        payload["country_code"] = phonenumbers.region_code_for_number(number)
        payload["national_format"] = phonenumbers.format_number(
            number, phonenumbers.PhoneNumberFormat.NATIONAL
        )
        if not phonenumbers.is_valid_number(number):
            payload["validation_errors"] = ["INVALID_BUT_POSSIBLE"]
            return _json(200, payload)
        payload["valid"] = True
        if "line_type_intelligence" in wanted:
            line_type, carrier = lookup_line_type(e164)
            payload["line_type_intelligence"] = {
                "type": line_type,
                "carrier_name": carrier,
                "mobile_country_code": None,
                "mobile_network_code": None,
                "error_code": None,
            }
        return _json(200, payload)

    # -- internals: the CXone Admin API

    def _issuer(self, req: _Request) -> str:
        return f"http://{req.host}"

    def _api_oidc(self, params: dict[str, str], req: _Request) -> _Response:
        issuer = self._issuer(req)
        return _json(
            200,
            {
                "issuer": issuer,
                "token_endpoint": f"{issuer}/auth/token",
                "grant_types_supported": ["password", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic"],
                "id_token_signing_alg_values_supported": ["HS256"],
            },
        )

    def _api_discovery(self, params: dict[str, str], req: _Request) -> _Response:
        tenant = (req.query.get("tenantId") or [""])[0]
        cfg = self._config
        if tenant != cfg.tenant_id:
            return _json(404, {"error": "tenant_not_found"})
        host = self._issuer(req)
        return _json(
            200,
            {
                "tenantId": tenant,
                "area": cfg.area,
                "domain": "niceincontact.com",
                "private": False,
                # The simulator is its own API host; a tenant's is https://api-{area}.{domain}.
                "api_endpoint": host,
                "auth_endpoint": host,
                "ui_endpoint": host,
            },
        )

    def _api_cxone_token(self, params: dict[str, str], req: _Request) -> _Response:
        header = req.headers.get("Authorization", "")
        form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        # client_secret_post, unless the app authenticates with HTTP Basic.
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if header.lower().startswith("basic "):
            try:
                client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return self._invalid_client()
        grant_type = form.get("grant_type", "")
        with self._lock:
            cfg = self._config
            expected = cfg.clients.get(client_id)
            if expected is None or not secrets.compare_digest(expected, secret):
                return self._invalid_client()
            now = time.monotonic()
            if grant_type == "password":
                key_secret = cfg.access_keys.get(form.get("username", ""))
                if key_secret is None or not secrets.compare_digest(
                    key_secret, form.get("password", "")
                ):
                    return _json(400, {"error": "invalid_grant"})
                self._stats["password_grants"] += 1
                subject = form["username"]

            elif grant_type == "refresh_token":
                old = form.get("refresh_token", "")
                expires = self._refresh_tokens.pop(old, None)
                if expires is None or expires <= now:
                    return _json(400, {"error": "invalid_grant"})
                self._stats["refresh_grants"] += 1
                subject = ""
            else:
                return _json(400, {"error": "unsupported_grant_type"})
            token = self._grant(cfg)
            if len(self._refresh_tokens) > 10_000:
                self._refresh_tokens = {
                    t: exp for t, exp in self._refresh_tokens.items() if exp > now
                }
            refresh = secrets.token_urlsafe(32)
            self._refresh_tokens[refresh] = now + float(cfg.refresh_token_lifetime)
            self._stats["token_grants"] += 1
        payload: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
            "refresh_token": refresh,
            "refresh_token_expires_in": cfg.refresh_token_lifetime,
        }
        if subject:
            issued = int(time.time())
            payload["id_token"] = _jwt(
                {
                    "iss": self._issuer(req),
                    "aud": client_id,
                    "sub": f"user:{subject}",
                    "tenantId": cfg.tenant_id,
                    "iat": issued,
                    "exp": issued + int(cfg.token_lifetime),
                },
                self._jwt_key,
            )
        return _json(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _api_access_key(self, params: dict[str, str], req: _Request) -> _Response:
        """NICE's access-key token endpoint: JSON in, no registered app."""
        try:
            body = json.loads(req.body)
            key_id, key_secret = body["accessKeyId"], body["accessKeySecret"]
            if not isinstance(key_id, str) or not isinstance(key_secret, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return _json(400, {"error": "body must be {accessKeyId, accessKeySecret}"})
        with self._lock:
            cfg = self._config
            expected = cfg.access_keys.get(key_id)
            if expected is None or not secrets.compare_digest(expected, key_secret):
                return _json(401, {"error": "invalid_access_key"})
            token = self._grant(cfg)
            self._stats["access_key_grants"] += 1
            self._stats["token_grants"] += 1
        issued = int(time.time())
        claims = {
            "iss": self._issuer(req),
            "sub": f"user:{key_id}",
            "tenantId": cfg.tenant_id,
            "iat": issued,
            "exp": issued + int(cfg.token_lifetime),
        }
        payload = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": cfg.token_lifetime,
            "id_token": _jwt(claims, self._jwt_key),
        }
        return _json(200, payload, {"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _api_scrubbed(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("scrubbed", 401)
        with self._lock:
            skills = self._scrubbed.get(params["group"])
        if skills is None:
            return _json(404, {"error": "dnc_group_not_found"})
        rows = [{"skillId": skill, "skillName": f"Skill {skill}"} for skill in skills]
        return _json(200, {"totalRecords": len(rows), "scrubbedSkills": rows})

    def _api_skill(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("skill", 401)
        skill = int(params["skill"])
        with self._lock:
            running = skill in self._running_skills
        row = {"skillId": skill, "skillName": f"Skill {skill}", "isRunning": running}
        return _json(200, {"skills": [row]})

    @staticmethod
    def _skip_top(req: _Request, default_top: int, max_top: int) -> tuple[int, int]:
        def one(name: str, default: int) -> int:
            raw = (req.query.get(name) or [str(default)])[0]
            if not raw.isdigit():
                raise ValueError(f"{name} must be a non-negative integer")
            return int(raw)

        skip, top = one("skip", 0), one("top", default_top)
        if top < 1:
            raise ValueError("top must be at least 1")
        return skip, min(top, max_top)

    def _links(self, req: _Request, skip: int, top: int, total: int) -> dict[str, Any]:
        base = f"http://{req.host}{req.path}"
        extra = {k: v[0] for k, v in req.query.items() if k not in ("skip", "top")}

        def link(at: int) -> str:
            query = "&".join(f"{quote(k)}={quote(v)}" for k, v in {**extra}.items())
            return f"{base}?skip={at}&top={top}" + (f"&{query}" if query else "")

        return {
            "self": link(skip),
            "next": link(skip + top) if skip + top < total else None,
            "previous": link(max(0, skip - top)) if skip > 0 else None,
        }

    def _api_cxone_lists(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("cxone_lists", 401)
        try:
            skip, top = self._skip_top(req, 100, 1000)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})
        with self._lock:
            every = [cl.summary() for cl in self._call_lists.values()]
        return _json(
            200,
            {
                "totalRecords": len(every),
                "_links": self._links(req, skip, top, len(every)),
                "callingLists": every[skip : skip + top],
            },
        )

    def _api_cxone_read(self, params: dict[str, str], req: _Request) -> _Response:
        """The whole list in one answer: the schema has only finalized and includeRecords.

        Sent as it is encoded, a slice of records at a time: half a million records in
        one ``json.dumps`` would hold the GIL (and every other request) for seconds."""
        if not self._authorized(req):
            return _error_response("cxone_read", 401)
        include = (req.query.get("includeRecords") or ["true"])[0].lower() != "false"
        with self._lock:
            self._settle_jobs()
            calling_list = self._call_lists.get(params["list"])
            if calling_list is None:
                return _json(404, {"error": "not_found"})
            # Jobs replace a record's dict, never change it: the dicts can be shared.
            records = list(calling_list.records.values()) if include else []
            result = {**calling_list.summary(), "listExpirationDate": calling_list.expiration}

        def body() -> Iterable[bytes]:
            head = json.dumps({"resultSet": result}, separators=(",", ":"))[:-2]
            yield (head + ',"contactRecords":[').encode()
            for start in range(0, len(records), 2000):
                rows = records[start : start + 2000]
                part = ",".join(json.dumps(r, separators=(",", ":")) for r in rows)
                yield ("," if start else "").encode() + part.encode()
            yield b"]}}"

        return _Response(200, headers={"Content-Type": "application/json"}, chunks=body())

    def _api_remove_prospects(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("remove_prospects", 401)
        try:
            body = json.loads(req.body)
            items = body.get("prospectsToRemove") if isinstance(body, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError
        except ValueError:
            return _json(400, {"error": "body must be {'prospectsToRemove': [{externalId}]}"})
        if len(items) > MAX_REMOVE_PROSPECTS:
            return _json(400, {"error": f"at most {MAX_REMOVE_PROSPECTS} prospects"})
        ok: list[dict[str, str]] = []
        failed: list[dict[str, str]] = []
        with self._lock:
            calling_list = next(
                (cl for cl in self._call_lists.values() if cl.name == params["name"]), None
            )
            if calling_list is None:
                return _json(404, {"error": "source_not_found"})
            for item in items:
                ext = str(item.get("externalId", ""))
                code = self._remove_failures.get(ext)
                if code is None and ext not in calling_list.records:
                    code = "RecordNotFound"
                if code == "":
                    continue  # named in neither list: an ambiguous answer
                if code is not None:
                    failed.append({"externalId": ext, "resultCode": code})
                    self._stats["remove_failed"] += 1
                    continue
                del calling_list.records[ext]
                ok.append({"externalId": ext, "resultCode": "Success"})
                self._stats["removed_prospects"] += 1
        return _json(200, {"successfulRecords": ok, "failedRecords": failed})

    def _api_upload(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("upload", 401)
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict) or not isinstance(body.get("listFile"), str):
                raise ValueError("body must carry 'listFile' (base64 CSV)")
            # The fields NICE's schema requires next to listFile.
            for required, kind in (
                ("forceOverwrite", bool),
                ("expirationDate", str),
                ("startSkill", bool),
                ("sendEmail", bool),
            ):
                if not isinstance(body.get(required), kind) or body.get(required) == "":
                    raise ValueError(f"'{required}' is required")
            raw = base64.b64decode(body["listFile"], validate=True).decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(raw, newline="")))
        except (ValueError, binascii.Error, UnicodeDecodeError, csv.Error) as exc:
            return _json(400, {"error": f"bad upload: {exc}"})
        force = body["forceOverwrite"]
        with self._lock:
            calling_list = self._call_lists.get(params["list"])
            if calling_list is None:
                return _json(404, {"error": "not_found"})
            if rows and calling_list.external_id_column not in rows[0]:
                return _json(400, {"error": f"no {calling_list.external_id_column} column"})
            self._job_seq += 1
            job_id = str(self._job_seq)
            self._jobs[job_id] = {
                "jobId": int(job_id),
                "listId": calling_list.list_id,
                "listName": calling_list.name,
                "rows": rows,
                "force": force,
                "expirationDate": body["expirationDate"],
                "submitDate": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "due": time.monotonic() + self._config.job_delay,
                "done": False,
                "failed": [],
            }
            self._stats["jobs_submitted"] += 1
        return _json(200, {"jobId": int(job_id)})

    def _settle_jobs(self) -> None:
        """Apply every upload job whose time has come (caller holds the lock)."""
        now = time.monotonic()
        for job in self._jobs.values():
            if job["done"] or job["due"] > now:
                continue
            job["done"] = True
            job["completedDate"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            calling_list = self._call_lists.get(job["listId"])
            for row in job["rows"]:
                ext = (row.get(calling_list.external_id_column) if calling_list else "") or ""
                code = self._upload_failures.get(ext)
                if calling_list is None:
                    code = "ListNotFound"
                elif code is None and not ext:
                    code = "MissingExternalId"
                elif code is None and any(
                    # A blank cell (whitespace too) is an empty phone, not a bad one.
                    (row.get(c) or "").strip()
                    and not _CXONE_PHONE_RE.match((row.get(c) or "").strip())
                    for c in calling_list.phone_columns
                ):
                    code = "InvalidPhoneNumber"
                elif code is None and ext in calling_list.records and not job["force"]:
                    code = "DuplicateExternalId"
                if code is not None:
                    job["failed"].append({"externalId": ext, "resultCode": code})
                    self._stats["upload_failed"] += 1
                    continue
                assert calling_list is not None
                # An upload overwrites the whole record with the file's columns.
                calling_list.records[ext] = {k: (v or "") for k, v in row.items() if k}
                uploaded = self._stats["uploaded"]
                uploaded[ext] = uploaded.get(ext, 0) + 1

    def _api_job(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("job", 401)
        with self._lock:
            self._settle_jobs()
            job = self._jobs.get(params["job"])
            if job is None:
                return _json(404, {"error": "job_not_found"})
            payload = {
                "jobId": job["jobId"],
                "listId": int(job["listId"]) if job["listId"].isdigit() else job["listId"],
                "listName": job["listName"],
                "submitDate": job["submitDate"],
                "startDate": job["submitDate"],
                "isComplete": job["done"],
                "isCancelled": False,
                "completedDate": job.get("completedDate"),
            }
        # Status only: what each row did is not in the answer (NICE's schema).
        return _json(200, {"uploadJobs": [payload]})

    def _api_dnc(self, params: dict[str, str], req: _Request) -> _Response:
        if not self._authorized(req):
            return _error_response("dnc", 401)
        try:
            body = json.loads(req.body)
            items = body.get("dncGroupRecords") if isinstance(body, dict) else None
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise ValueError
        except ValueError:
            return _json(400, {"error": "body must be {'dncGroupRecords': [{phoneNumber}]}"})
        results: list[dict[str, Any]] = []
        with self._lock:
            group = self._dnc.get(params["group"])
            if group is None:
                return _json(404, {"error": "dnc_group_not_found"})
            for item in items:
                phone = str(item.get("phoneNumber", ""))
                if not phone.isdigit() or not 7 <= len(phone) <= 15:
                    results.append(
                        {"success": False, "error": "InvalidPhone", "formattedPhone": phone}
                    )
                    continue
                group[phone] = {"expiredDate": item.get("expiredDate")}
                self._stats["dnc_added"] += 1
                results.append({"success": True, "error": None, "formattedPhone": phone})
        errors = sum(1 for r in results if not r["success"])
        return _json(200, {"resultSet": {"errorCount": errors, "recordResults": results}})

    # -- internals: control API

    def _control(self, req: _Request) -> _Response:
        parts = [unquote(p) for p in req.path.split("/")[2:] if p]
        method = req.method
        body = {} if parts == ["webhook"] else _parse_json_object(req.body)
        if parts == ["reset"] and method == "POST":
            lists = body.pop("lists", None) or {}
            if not isinstance(lists, dict):
                raise ValueError("lists must map list ids to specs")
            self.reset(lists, **body)
            with self._lock:
                sizes = {lid: len(cl.contacts) for lid, cl in self._lists.items()}
            return _json(200, {"config": self._config.to_json(), "lists": sizes})
        if parts == ["lists"] and method == "GET":
            with self._lock:
                summary = [
                    {"id": cl.list_id, "name": cl.name, "count": len(cl.contacts)}
                    for cl in sorted(self._lists.values(), key=lambda c: c.rank)
                ]
            return _json(200, {"lists": summary})
        if len(parts) == 2 and parts[0] == "lists":
            list_id = parts[1]
            if method == "PUT":
                built = self._build_list(list_id, body)
                with self._lock:
                    size = len(self._install_list(built).contacts)
                return _json(200, {"id": list_id, "count": size})
            if method == "GET":
                with self._lock:
                    contact_list = self._lists.get(list_id)
                    if contact_list is None:
                        return _json(404, {"error": "not_found"})
                    # Shallow copies under the lock (PATCH mutates the live dicts); the slow
                    # part, serialising, happens after it is released.
                    payload = {
                        "id": list_id,
                        "name": contact_list.name,
                        "contacts": [dict(c) for c in contact_list.contacts.values()],
                    }
                return _json(200, payload)
            if method == "DELETE":
                return _empty(204) if self.delete_list(list_id) else _json(404, {})
        if parts == ["config"]:
            if method == "POST":
                return _json(200, self.configure(**body).to_json())
            if method == "GET":
                return _json(200, self._config.to_json())
        if parts == ["faults"]:
            if method == "POST":
                rules = body.get("rules")
                if not isinstance(rules, list):
                    raise ValueError("expected {'rules': [...]}")
                self.add_faults(rules)
                return _json(200, {"rules": self.faults()})
            if method == "DELETE":
                self.clear_faults()
                return _empty(204)
            if method == "GET":
                return _json(200, {"rules": self.faults()})
        if parts == ["webhook"] and method == "POST":
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
            return _json(200, {"received": received})
        if parts == ["webhooks"] and method == "GET":
            hooks = [
                {**hook, "raw": hook["raw"].decode("utf-8", "replace")} for hook in self.webhooks()
            ]
            return _json(200, {"webhooks": hooks})
        if len(parts) == 2 and parts[0] == "call-lists":
            if method == "PUT":
                size = self.put_call_list(
                    parts[1],
                    body.get("records"),
                    count=body.get("count"),
                    seed=int(body.get("seed", 0)),
                    name=body.get("name"),
                )
                return _json(200, {"id": parts[1], "count": size})
            if method == "GET":
                try:
                    return _json(200, {"id": parts[1], "records": self.get_call_list(parts[1])})
                except KeyError:
                    return _json(404, {"error": "not_found"})
        if parts == ["record-failures"] and method == "POST":
            self.fail_records(remove=body.get("remove"), upload=body.get("upload"))
            return _empty(204)
        if len(parts) == 2 and parts[0] == "dnc-groups":
            if method == "PUT":
                self.add_dnc_group(parts[1])
                return _empty(204)
            if method == "GET":
                return _json(200, {"numbers": self.dnc_numbers(parts[1])})
        if parts == ["revoke"] and method == "POST":
            return _json(200, {"revoked": self.revoke_tokens()})
        if parts == ["stats"] and method == "GET":
            return _json(200, self.stats())
        if parts == ["requests"] and method == "GET":
            return _json(200, {"requests": self.requests_seen()})
        return _json(404, {"error": "no such control endpoint"})


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


def _parse_batch(body: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise ValueError("bad JSON") from exc
    contacts = value.get("contacts") if isinstance(value, dict) else None
    if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
        raise ValueError("body must be {'contacts': [{...}, ...]}")
    return contacts


def _checked_batch(body: bytes) -> list[dict[str, Any]] | _Response:
    """A write's contacts, or the 400 the contract gives for bad JSON or over 100."""
    try:
        batch = _parse_batch(body)
    except ValueError as exc:
        return _json(400, {"error": str(exc), "invalid": []})
    if len(batch) > MAX_BATCH:
        return _json(
            400, {"error": f"too many contacts: {len(batch)} > {MAX_BATCH}", "invalid": []}
        )
    return batch


def _foreign_links(kind: str, body: dict[str, Any], origin: str) -> dict[str, Any]:
    """``body`` with the link(s) it announces moved to ``origin`` (path and query kept)."""

    def moved(url: Any, fallback_path: str) -> str:
        parts = urlsplit(url) if isinstance(url, str) and url else None
        path = parts.path if parts is not None else fallback_path
        query = parts.query if parts is not None else "cursor=foreign"
        return f"{origin}{path}" + (f"?{query}" if query else "")

    if kind in ("read", "lists"):
        body["nextPageUri"] = moved(body.get("nextPageUri"), f"{_API_PREFIX}/contactlists")
    elif kind == "oidc":
        body["token_endpoint"] = moved(body.get("token_endpoint"), "/auth/token")
    elif kind == "discovery":
        body["api_endpoint"] = origin
    elif isinstance(body.get("_links"), dict):
        body["_links"]["next"] = moved(body["_links"].get("next"), "/")
    return body


def _batch_size(body: bytes) -> int:
    try:
        contacts = json.loads(body).get("contacts")
    except (ValueError, AttributeError):
        return 0
    return len(contacts) if isinstance(contacts, list) else 0


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the cxsweep contact-list simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--list",
        action="append",
        default=[],
        metavar="ID:COUNT[:SEED]",
        help="seed a list of COUNT messy contacts (repeatable)",
    )
    parser.add_argument(
        "--call-list",
        action="append",
        default=[],
        metavar="ID:COUNT[:SEED]",
        help="seed a CXone calling list of COUNT multi-phone records (repeatable)",
    )
    parser.add_argument("--job-delay", type=float, default=0.5)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--rate-limit", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-rate", type=float, default=0.0)
    parser.add_argument("--total-records", action="store_true")
    args = parser.parse_args(argv)
    config = SimConfig(
        page_size=args.page_size,
        rate_limit=args.rate_limit,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        total_records=args.total_records,
        job_delay=args.job_delay,
    )
    sim = Simulator(config, host=args.host, port=args.port)
    for spec in args.list:
        list_id, _, rest = spec.partition(":")
        count, _, seed = rest.partition(":")
        sim.put_list(list_id, count=int(count or 1000), seed=int(seed or 0))
    for spec in args.call_list:
        list_id, _, rest = spec.partition(":")
        count, _, seed = rest.partition(":")
        sim.put_call_list(list_id, count=int(count or 1000), seed=int(seed or 0))
    print(
        f"cxsweep simulator on {sim.url} (client demo-client / demo-secret;"
        " CXone access key demo-key-id / demo-key-secret)",
        flush=True,
    )
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
