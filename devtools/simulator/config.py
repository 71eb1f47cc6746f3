"""The simulator's knobs: its configuration, the fault rules a test scripts, and the
contract's constants every route shares."""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

from devtools.simulator.wire import Request, parse_batch

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
    "jobs",
    "dnc",
    "dnc_search",
    "access_key",
    "scrubbed",
    "skill",
)
# Authentication and discovery are spared the random 503s of ``fail_rate``.
AUTH_KINDS = frozenset({"token", "cxone_token", "oidc", "discovery", "access_key"})
READ_KINDS = frozenset({"read", "lists", "lookup", "cxone_read", "cxone_lists"})
MAX_REMOVE_PROSPECTS = 1000
CXONE_PHONE_COLUMNS = ("PhoneNumber", "MobileNumber", "WorkNumber")
CXONE_PHONE_RE = re.compile(r"^\+?\d{7,15}$")
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
        "lose_answer",
    }
)
# Requests remembered for ``requests_seen()`` (the newest; a bench sends millions).
REQUEST_LOG_SIZE = 20_000
METHODS = frozenset({"GET", "PATCH", "DELETE", "POST", "PUT", "*"})

API_PREFIX = "/api/v2/campaigns"


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

    def applies(self, req: Request) -> bool:
        """Whether a request the method and path match is one this rule is about."""
        if self.action == "inject_contacts":
            return not req.query.get("cursor") and (req.query.get("skip") or ["0"])[0] == "0"
        if self.action == "refuse_ids" and not self.always:
            try:
                batch = parse_batch(req.body)
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
